"""Kernel attention module (KAM, eq. (7) of Fang et al., CVPR 2023) and the one kernel-guidance mechanism.

KAM, for features X (N, c, h, w) and the per-pixel kernel map K (N, L, h, w), L = K*K taps:

    F_att = sigmoid(Conv3(concat[Conv1(X), Conv2(K)]))                                                 (eq. (7))
    f(X) = F_att * Conv1(X) + X

with Conv1 = conv3x3 (c -> c) + GELU, Conv2 = conv3x3 (L -> c) + GELU + conv3x3 (c -> c) + GELU, Conv3 = conv3x3
(2c -> c). The map of a coarser level comes from the finer one by a learned stride-2 2x2 convolution (L -> L).

:class:`KernelGuidedMixin` is the single mechanism that turns an encoder-decoder backbone into its kernel-guided
("KE") variant (UFPNet = NAFNet + KE; ``MPRNetKE``, ``MIMOUNetKE``). Mixed in front of the backbone class, it adds
the uncertain kernel estimator and flow prior (``kernel_extra``, ``flow``), the map down-sampling convs
(``kernel_down``) and one KAM per *site*, registered as ``<site>.kernel_attention`` and applied by a forward
pre-hook, so the backbone's own code and parameter names stay untouched (published checkpoints keep loading by
name). Where the site block accepts a branch input (``accepts_branch_input``, e.g. NAFBlock), the KAM sits *inside*
it as in the published UFPNet: the block's residual branch reads ``KAM(inp, K)`` while its residual stays on the
original ``inp`` (``y = inp + beta * branch(KAM(inp, K))``); other blocks get ``KAM(inp, K)`` as their input (KAM in
front of the block). A site is ``(module path, level, channels)`` or ``(module path, level, channels, (rows,
cols))`` for backbones that run a module on a grid of image tiles, one call per tile in row-major order (MPRNet's
stage-1 quarters and stage-2 halves): the i-th call of the module in one forward gets tile ``i % (rows * cols)`` of
the level's map.

The forward pads the image to a multiple that every level and tile divides (reflection, as published), estimates the
kernels once on the padded image, runs the backbone, crops every output back (and clamps it to [0, 1] when
``clamp_output``, as the published UFPNet) and, with ``return_field=True``, also returns the field of the unpadded
image (``estimates_field = True`` for the deblurring model's re-blur loss, eq. (8)). The attention modules get the
flow's decoded kernels as they are (not renormalised, as published; ``renormalize_kernels=True`` projects them onto
the simplex first); the returned field is always projected (non-negative, summing to 1: the field contract).

Reference: Fang et al., CVPR 2023, §3.3, eq. (7), Fig. 3 and Table 6. Written from the paper and DESIGN.md.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from basicsr_blurfield.archs.arch_util import crop_scaled, crop_to, pad_to_multiple
from basicsr_blurfield.archs.kernel_estimator_arch import LatentKernelEstimation
from basicsr_blurfield.fields import KernelField, normalize_kernels

__all__ = ['KernelAttention', 'KernelGuidedMixin']


class KernelAttention(nn.Module):
    """Kernel attention module of eq. (7): ``sigmoid(Conv3([Conv1(X), Conv2(K)])) * Conv1(X) + X``.

    Args:
        channels (int): c, channels of the features.
        kernel_taps (int): L = K*K, channels of the kernel map. Default: 361 (K = 19).

    Shape:
        x (N, c, h, w), kernel_map (N, L, h, w) -> (N, c, h, w).
    """

    def __init__(self, channels: int, kernel_taps: int = 361):
        super().__init__()
        self.conv_1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())
        self.conv_kernel = nn.Sequential(
            nn.Conv2d(kernel_taps, channels, 3, padding=1), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU())
        self.conv_2 = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, kernel_map: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != kernel_map.shape[0] or x.shape[-2:] != kernel_map.shape[-2:]:
            raise ValueError(f'KernelAttention: features {tuple(x.shape)} and kernel map {tuple(kernel_map.shape)} '
                             'must agree in N, H and W')
        features = self.conv_1(x)
        # Conv3 on the concatenation as the sum of its two halves: no (N, 2c, h, w) copy (and in place without
        # autograd), which lowers the peak memory of the full-resolution level
        conv = self.conv_2[0]
        channels = features.shape[1]
        logits = F.conv2d(features, conv.weight[:, :channels], conv.bias, padding=1)
        kernel_logits = F.conv2d(self.conv_kernel(kernel_map), conv.weight[:, channels:], None, padding=1)
        if torch.is_grad_enabled():
            return features * torch.sigmoid(logits + kernel_logits) + x
        return logits.add_(kernel_logits).sigmoid_().mul_(features).add_(x)


def _clamp_unit(output):
    """Clamps a tensor, or each tensor of a list / tuple, to [0, 1]."""
    if torch.is_tensor(output):
        return output.clamp(0, 1)
    return type(output)(_clamp_unit(item) for item in output)


def _parse_site(site) -> tuple:
    if not isinstance(site, (tuple, list)) or len(site) not in (3, 4):
        raise ValueError(f'kernel attention site: expected (path, level, channels) or (path, level, channels, '
                         f'(rows, cols)), got {site!r}')
    tiles = tuple(int(t) for t in site[3]) if len(site) == 4 else (1, 1)
    if len(tiles) != 2 or min(tiles) < 1:
        raise ValueError(f'kernel attention site {site[0]!r}: tiles must be two positive ints, got {site[3]!r}')
    return str(site[0]), int(site[1]), int(site[2]), tiles


class KernelGuidedMixin(LatentKernelEstimation):
    """Adds the KE module (estimator, flow prior, kernel attention) to an encoder-decoder backbone class.

    Use as ``class XKE(KernelGuidedMixin, X)``: call ``X.__init__`` and then :meth:`_build_kernel_guidance`. The
    backbone's ``forward(image)`` must take one image; its size multiple is read from ``size_multiple``.
    """

    estimates_field = True
    guidance_pad_mode = 'reflect'  # how the input is padded to the guidance multiple (published UFPNet: reflect)

    def _build_kernel_guidance(self, sites: tuple, img_channel: int = 3, kernel_size: int = 19,
                               num_kernel_down: Optional[int] = None, estimator_feat: int = 64,
                               flow_num_block: int = 5, flow_hidden_size: int = 25, sample_at_test: bool = False,
                               freeze_estimator: bool = True, padding: str = 'replicate',
                               renormalize_kernels: bool = False, clamp_output: bool = False) -> None:
        """Builds the estimator, ``kernel_down`` and the KAMs and hooks them to the sites.

        Args:
            sites (tuple): ``(path, level, channels[, (rows, cols)])`` per KAM; level 0 is the input resolution.
            img_channel (int): image channels of the estimator. Default: 3.
            kernel_size (int): K. Default: 19.
            num_kernel_down (int, optional): number of map down-sampling convs; at least the deepest site level.
                Convs beyond the deepest level are kept for a published layout and frozen. Default: deepest level.
            estimator_feat (int): U-Net width of the estimator. Default: 64.
            flow_num_block (int), flow_hidden_size (int): flow prior size. Defaults: 5, 25.
            sample_at_test (bool): keep the uncertainty noise in eval mode. Default: False.
            freeze_estimator (bool): no gradients to ``kernel_extra`` (the prior is always frozen). Default: True.
            padding (str): boundary mode of the returned field. Default: 'replicate'.
            renormalize_kernels (bool): project the kernels onto the simplex before the attention modules; the
                published network feeds the flow's raw output (False). Default: False.
            clamp_output (bool): clamp the restored output(s) to [0, 1] (published UFPNet). Default: False.
        """
        self._build_kernel_estimation(img_channel, kernel_size, estimator_feat, flow_num_block, flow_hidden_size,
                                      sample_at_test, True, padding)
        self.freeze_estimator = bool(freeze_estimator)
        self.renormalize_kernels = bool(renormalize_kernels)
        self.clamp_output = bool(clamp_output)
        if self.freeze_estimator:
            self.kernel_extra.requires_grad_(False)
        parsed = [_parse_site(site) for site in sites]
        if not parsed:
            raise ValueError('kernel guidance needs at least one site, got none')
        deepest = max(level for _, level, _, _ in parsed)
        num_kernel_down = deepest if num_kernel_down is None else int(num_kernel_down)
        if num_kernel_down < deepest:
            raise ValueError(f'num_kernel_down: expected at least the deepest site level {deepest}, got '
                             f'{num_kernel_down}')
        taps = int(kernel_size)**2
        self.kernel_down = nn.ModuleList(nn.Conv2d(taps, taps, 2, stride=2) for _ in range(num_kernel_down))
        for conv in self.kernel_down[deepest:]:
            conv.requires_grad_(False)
        multiple = 4
        for path, level, channels, tiles in parsed:
            block = self.get_submodule(path)
            if isinstance(block, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                raise ValueError(f'kernel attention site {path!r}: expected a block module, got a container '
                                 f'({type(block).__name__}); name its first block instead, e.g. {path + ".0"!r}')
            block.add_module('kernel_attention', KernelAttention(channels, taps))
            block.kernel_attention_site = (level, tiles)
            block.register_forward_pre_hook(self._apply_kernel_attention, with_kwargs=True)
            multiple = math.lcm(multiple, tiles[0] * 2**level, tiles[1] * 2**level)
        self.kernel_guidance_multiple = math.lcm(multiple, int(getattr(self, 'size_multiple', 1)))
        # KAM calls per level in one forward: once a level and all finer ones are done, its map is released
        self._calls_per_level = [sum(tiles[0] * tiles[1] for _, lvl, _, tiles in parsed if lvl == level)
                                 for level in range(deepest + 1)]
        self._kernel_maps = None
        self._site_calls = {}
        self._level_calls = []

    def _kernel_map(self, level: int) -> torch.Tensor:
        while len(self._kernel_maps) <= level:
            self._kernel_maps.append(self.kernel_down[len(self._kernel_maps) - 1](self._kernel_maps[-1]))
        assert self._kernel_maps[level] is not None, f'kernel map of level {level} used after its release'
        return self._kernel_maps[level]

    def _release_finished_maps(self) -> None:
        """Drops the maps no later KAM call needs (the coarser map is made first): at 720p the full-resolution
        map alone is 1.3 GB, and the deep levels and the decoder run without it."""
        for level, expected in enumerate(self._calls_per_level):
            if self._level_calls[level] < expected:
                return
            if level < len(self._kernel_maps) and self._kernel_maps[level] is not None:
                if level + 1 < len(self._calls_per_level):
                    self._kernel_map(level + 1)
                self._kernel_maps[level] = None

    def _apply_kernel_attention(self, block: nn.Module, args: tuple, kwargs: dict) -> tuple:
        """Forward pre-hook of a site: KAM(x, kernel map of the site's tile) becomes the block's branch input
        (``accepts_branch_input``: the residual stays on x) or else replaces the block's input x."""
        if self._kernel_maps is None:
            raise RuntimeError(f'{type(self).__name__}: a kernel-guided block ran outside the network\'s forward; '
                               'call the network itself')
        level, (rows, cols) = block.kernel_attention_site
        kernel_map = self._kernel_map(level)
        if rows * cols > 1:
            call = self._site_calls.get(id(block), 0)
            self._site_calls[id(block)] = call + 1
            row, col = divmod(call % (rows * cols), cols)
            height, width = kernel_map.shape[-2] // rows, kernel_map.shape[-1] // cols
            kernel_map = kernel_map[..., row * height:(row + 1) * height, col * width:(col + 1) * width]
        attended = block.kernel_attention(args[0], kernel_map)
        del kernel_map
        self._level_calls[level] += 1
        self._release_finished_maps()
        if getattr(block, 'accepts_branch_input', False):
            return args, {**kwargs, 'branch': attended}
        return (attended, ) + tuple(args[1:]), kwargs

    def forward(self, lq: torch.Tensor, return_field: bool = False, sample: Optional[bool] = None,
                generator: Optional[torch.Generator] = None):
        """Restores ``lq`` with kernel guidance.

        Args:
            lq (Tensor): (N, C, H, W) blurry image, any H, W.
            return_field (bool): also return the estimated field. Default: False.
            sample (bool, optional): uncertainty noise; None: while training or if ``sample_at_test``.
            generator (torch.Generator, optional): source of that noise.

        Returns:
            The backbone's output (tensor or list, cropped to H, W), and with ``return_field`` a tuple
            ``(output, KernelField)`` with kernels (N, K*K, H, W).
        """
        if lq.dim() != 4:
            raise ValueError(f'{type(self).__name__}: expected (N, C, H, W), got shape {tuple(lq.shape)}')
        padded, size = pad_to_multiple(lq, self.kernel_guidance_multiple, mode=self.guidance_pad_mode)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_estimator):
            kernels, _ = self.estimate_kernels(padded, sample, generator, normalize=self.renormalize_kernels)
        self._kernel_maps, self._site_calls, self._level_calls = [kernels], {}, [0] * len(self._calls_per_level)
        if not return_field:
            del kernels  # the maps are released during the backbone's forward once used
        try:
            output = super().forward(padded)
        finally:
            self._kernel_maps, self._site_calls, self._level_calls = None, {}, []
        output = crop_scaled(output, size, padded.shape[-2])
        if self.clamp_output:
            output = _clamp_unit(output)
        if not return_field:
            return output
        kernels = crop_to(kernels, size)
        kernels = kernels.contiguous() if self.renormalize_kernels else normalize_kernels(kernels, dim=1)
        return output, KernelField(kernels, padding=self.field_padding, check=False)  # normalised just above

