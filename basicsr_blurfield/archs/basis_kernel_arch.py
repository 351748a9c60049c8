"""Two-headed basis-kernel network of Carbajal et al., eq. (2): per-pixel kernels k_p = sum_b m_b[p] k^b.

A shared U-Net encoder feeds two decoders (Fig. 1 of the paper):
- the *kernel head* decodes globally average-pooled encoder features (pooled multi-scale skips, repeated over a
  2x2, 4x4, ... grid) from a 1x1 seed up to a (2**L + 1) x (2**L + 1) map with B channels: the B global basis kernels
  k^b, each normalised by a softmax over its K*K entries (non-negative, sums to 1);
- the *mixing head* is a U-Net decoder back to full resolution giving B maps m^b, normalised by a softmax over B at
  every pixel. The per-pixel kernel is then a convex combination and conserves energy (§3.1).
The input is linearised as ``x ** 2.2 - 0.5`` before the first convolution, as in the authors' released code.
With ``input_cues='autocorrelation'`` (an option of ours, not in the paper or the released network) the input
convolution also reads :class:`~basicsr_blurfield.archs.blur_cues.DerivativeAutocorrelation` of the image (177
channels by default), computed from the image as given (in [0, 1], before the linearisation) and concatenated after it.
The output is a :class:`~basicsr_blurfield.fields.BasisField` in gather (correlation) form.

Sizes that are not multiples of ``2**L`` (L encoder stages), ``size_handling``:
- ``'official'`` (default): the released network's function at every size. The max-pools floor, and each decoder
  stage zero-pads its upsampled map to the skip's size (``diff // 2`` before, the rest after) before the concat, so a
  released checkpoint gives the released kernels and mixing maps. Needs H, W >= 2**L.
- ``'pad_crop'``: the input is padded (reflect) to a multiple of ``2**L`` and the mixing maps cropped back; any size,
  but away from multiples of ``2**L`` it is not the released function (the pooled skips of the kernel head then also
  see the padded border). Both agree at multiples of ``2**L`` (e.g. 256 px training crops).

Reference: Carbajal, Vitoria, Delbracio, Musé, Lezama, "Single Image Non-uniform Blur Kernel Estimation via Adaptive
Basis Decomposition", eq. (2), §3.1. Written from the paper and the published layout (``TwoHeadsNetwork``, B=25, K=33,
79,829,298 parameters including the unused grey-input convolution); :func:`remap_official_keys` loads its weights.
"""
import re
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_to, pad_to_multiple
from basicsr_blurfield.archs.blur_cues import DerivativeAutocorrelation
from basicsr_blurfield.archs.kernel_estimator_arch import INPUT_CUES
from basicsr_blurfield.fields import BasisField

__all__ = ['BasisKernelNet', 'SIZE_HANDLING', 'remap_official_keys']

SIZE_HANDLING = ('official', 'pad_crop')


def _conv_act(in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1) -> list:
    return [nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding), nn.LeakyReLU(0.01, inplace=True)]


class _DownStage(nn.Module):
    """Two 3x3 conv + LeakyReLU at the current scale; returns the features (skip) and their 2x max-pooled copy."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_act(in_ch, out_ch), *_conv_act(out_ch, out_ch))

    def forward(self, x: torch.Tensor) -> tuple:
        feat = self.body(x)
        return feat, F.max_pool2d(feat, 2)


class _UpStage(nn.Module):
    """2x transposed-conv upsampling, two 3x3 conv, zero padding to the skip's size (when a floored max-pool made the
    skip larger: ``diff // 2`` before, the rest after, as the released code), then concat [skip, x] and a fusing 3x3
    conv.

    With ``skip_ch = 0`` the stage only upsamples (used to grow the kernel head past the encoder depth).
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, in_ch, kernel_size=2, stride=2)
        self.body = nn.Sequential(*_conv_act(in_ch, out_ch), *_conv_act(out_ch, out_ch))
        self.fuse = nn.Sequential(*_conv_act(skip_ch + out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor = None) -> torch.Tensor:
        x = self.body(self.up(x))
        if skip is not None:
            diff_h, diff_w = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
            if diff_h or diff_w:
                x = F.pad(x, (diff_w // 2, diff_w - diff_w // 2, diff_h // 2, diff_h - diff_h // 2))
            x = torch.cat([skip, x], dim=1)
        return self.fuse(x)


@ARCH_REGISTRY.register()
class BasisKernelNet(nn.Module):
    """Adaptive basis-kernel estimator: blurry image -> ``BasisField(basis, mixing)``.

    Args:
        num_basis (int): B, number of basis kernels. Default: 25.
        kernel_size (int): K, side of each kernel; must be 2**m + 1 with m >= len(enc_channels). Default: 33.
        num_feat (int): width of the input convolution and of the mixing head's last stage. Default: 64.
        enc_channels (tuple): output widths of the encoder stages (L = len stages, input multiple 2**L).
            Default: (64, 128, 256, 512, 1024).
        kernel_channels (tuple): output widths of the kernel-head stages, one per encoder stage.
            Default: (512, 256, 256, 128, 64).
        in_channels (tuple): channel counts accepted at the input; one input convolution each (the published
            network has an RGB and a grey one). Default: (3, 1).
        linearize (bool): apply ``x ** 2.2 - 0.5`` to the input (authors' code). Default: True.
        padding (str): boundary mode of the returned field ('replicate', 'reflect' or 'zeros'). Default: 'replicate'.
        size_handling (str): ``'official'`` (the released function at every size; H, W >= 2**L) or ``'pad_crop'``
            (pad to a multiple of 2**L, crop back; any size). See the module docstring. Default: 'official'.
        input_cues (str | None): None (the published network) or ``'autocorrelation'``: each input convolution
            also reads the derivative autocorrelation cues of the image (C + ``cues.channels`` input channels; the
            cue module is the submodule ``cues``, whose ``cues.lag_table`` buffer marks such a checkpoint). An option
            of ours, not published. Default: None.

    Shape:
        x (N, C, H, W) in [0, 1], C in ``in_channels``, H, W >= K (the field's own limit) -> BasisField with basis
        (N, B, K, K) (each sums to 1) and mixing (N, B, H, W) (sums to 1 over B).
    """

    def __init__(self,
                 num_basis: int = 25,
                 kernel_size: int = 33,
                 num_feat: int = 64,
                 enc_channels: tuple = (64, 128, 256, 512, 1024),
                 kernel_channels: tuple = (512, 256, 256, 128, 64),
                 in_channels: tuple = (3, 1),
                 linearize: bool = True,
                 padding: str = 'replicate',
                 size_handling: str = 'official',
                 input_cues: Optional[str] = None):
        super().__init__()
        if size_handling not in SIZE_HANDLING:
            raise ValueError(f'size_handling: expected one of {SIZE_HANDLING}, got {size_handling!r}')
        if input_cues not in INPUT_CUES:
            raise ValueError(f'input_cues: expected one of {INPUT_CUES}, got {input_cues!r}')
        enc_channels, kernel_channels, in_channels = tuple(enc_channels), tuple(kernel_channels), tuple(in_channels)
        levels = len(enc_channels)
        if levels < 1 or len(kernel_channels) != levels:
            raise ValueError(f'kernel_channels: expected one width per encoder stage ({levels}), '
                             f'got {len(kernel_channels)}')
        extra = (kernel_size - 1).bit_length() - 1
        if kernel_size < 3 or 2**extra + 1 != kernel_size or extra < levels:
            raise ValueError(f'kernel_size: expected 2**m + 1 with m >= {levels} (e.g. {2**levels + 1}), '
                             f'got {kernel_size}')
        if not in_channels or len(set(in_channels)) != len(in_channels):
            raise ValueError(f'in_channels: expected distinct channel counts such as (3, 1), got {in_channels}')
        self.num_basis, self.kernel_size, self.multiple = num_basis, kernel_size, 2**levels
        self.in_channels, self.linearize, self.padding = in_channels, linearize, padding
        self.size_handling = size_handling

        self.cues = DerivativeAutocorrelation() if input_cues == 'autocorrelation' else None  # None: published keys
        cue_channels = 0 if self.cues is None else self.cues.channels
        self.conv_in = nn.ModuleList(nn.Sequential(*_conv_act(c + cue_channels, num_feat)) for c in in_channels)
        widths = (num_feat, ) + enc_channels
        self.encoder = nn.ModuleList(_DownStage(widths[i], widths[i + 1]) for i in range(levels))
        self.bottleneck = nn.Sequential(*_conv_act(enc_channels[-1], enc_channels[-1]))

        mix_out = tuple(reversed(widths[1:-1])) + (num_feat, )
        mix_in = (enc_channels[-1], ) + mix_out[:-1]
        skips = tuple(reversed(enc_channels))
        self.mixing_decoder = nn.ModuleList(_UpStage(mix_in[i], skips[i], mix_out[i]) for i in range(levels))
        self.mixing_out = nn.Sequential(*_conv_act(num_feat, num_feat), *_conv_act(num_feat, num_feat),
                                        nn.Conv2d(num_feat, num_basis, 3, padding=1))

        ker_in = (enc_channels[-1], ) + kernel_channels[:-1]
        stages = [_UpStage(ker_in[i], skips[i], kernel_channels[i]) for i in range(levels)]
        stages += [_UpStage(kernel_channels[-1], 0, kernel_channels[-1]) for _ in range(extra - levels)]
        self.kernel_decoder = nn.ModuleList(stages)
        hidden = kernel_channels[-1]
        self.kernel_out = nn.Sequential(*_conv_act(hidden, hidden, kernel_size=2, padding=1),
                                        *_conv_act(hidden, hidden), nn.Conv2d(hidden, num_basis, 3, padding=1))

    def forward(self, x: torch.Tensor) -> BasisField:
        if x.dim() != 4 or x.shape[1] not in self.in_channels:
            raise ValueError(f'BasisKernelNet: expected (N, C, H, W) with C in {self.in_channels}, '
                             f'got {tuple(x.shape)}')
        branch = self.conv_in[self.in_channels.index(x.shape[1])]
        cues = None if self.cues is None else self.cues(x)  # from the image in [0, 1], before the linearisation
        if self.linearize:
            x = x.clamp_min(0)**2.2 - 0.5
        if cues is not None:
            x = torch.cat([x, cues], 1)
        size = tuple(x.shape[2:])
        if self.size_handling == 'pad_crop':
            x, size = pad_to_multiple(x, self.multiple)
        elif min(size) < self.multiple:
            raise ValueError(f'BasisKernelNet: size_handling=\'official\' needs H, W >= {self.multiple} (2**L for '
                             f'{len(self.encoder)} max-pools), got {size}; use size_handling=\'pad_crop\'')
        feat = branch(x)
        skips = []
        for stage in self.encoder:
            skip, feat = stage(feat)
            skips.append(skip)
        feat = self.bottleneck(feat)
        skips = skips[::-1]

        kernel = feat.mean((2, 3), keepdim=True)
        for i, stage in enumerate(self.kernel_decoder):
            if i < len(skips):
                side = 2**(i + 1)
                kernel = stage(kernel, skips[i].mean((2, 3), keepdim=True).expand(-1, -1, side, side))
            else:
                kernel = stage(kernel)
        kernel = self.kernel_out(kernel)
        n = kernel.shape[0]
        basis = torch.softmax(kernel.reshape(n, self.num_basis, -1), dim=2).reshape(kernel.shape)

        mix = feat
        for stage, skip in zip(self.mixing_decoder, skips):
            mix = stage(mix, skip)
        mixing = torch.softmax(crop_to(self.mixing_out(mix), size), dim=1)
        return BasisField(basis, mixing, padding=self.padding, check=False)  # softmax outputs: normalised already


_OFFICIAL_RULES = (
    (r'^inc_rgb\.0\.', 'conv_in.0.0.'),
    (r'^inc_gray\.0\.', 'conv_in.1.0.'),
    (r'^down(\d)\.double_conv\.', lambda m: f'encoder.{int(m.group(1)) - 1}.body.'),
    (r'^feat\.0\.', 'bottleneck.0.'),
    (r'^up(\d)\.(up|double_conv|feat)\.', lambda m: f'mixing_decoder.{int(m.group(1)) - 1}.{_PART[m.group(2)]}.'),
    (r'^kernel_up(\d)\.(up|double_conv|feat)\.',
     lambda m: f'kernel_decoder.{int(m.group(1)) - 1}.{_PART[m.group(2)]}.'),
    (r'^masks_end\.', 'mixing_out.'),
    (r'^kernels_end\.', 'kernel_out.'),
)
_PART = {'up': 'up', 'double_conv': 'body', 'feat': 'fuse'}


def remap_official_keys(state: dict) -> dict:
    """Renames a published ``TwoHeadsNetwork`` state dict to :class:`BasisKernelNet` names (defaults B=25, K=33).

    The released file is a bare state dict; a ``module.`` prefix (DataParallel) and a ``params`` wrapper are also
    accepted. Load with ``net.load_state_dict(remap_official_keys(torch.load(path)))`` (strict).

    Args:
        state (dict): published keys such as ``down1.double_conv.0.weight`` or ``kernel_up3.feat.0.bias``.

    Returns:
        dict: same tensors under our keys (``encoder.0.body.0.weight``, ``kernel_decoder.2.fuse.0.bias``).

    Raises:
        ValueError: a key that belongs to no known module of the published network.
    """
    state = state.get('params', state)
    remapped = {}
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        for pattern, replacement in _OFFICIAL_RULES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                remapped[new_key] = value
                break
        else:
            raise ValueError(f'remap_official_keys: unexpected key {key!r}; expected keys of TwoHeadsNetwork '
                             '(inc_rgb, inc_gray, down1-5, feat, up1-5, masks_end, kernel_up1-5, kernels_end)')
    return remapped
