"""DMPHN(1-2-4) of Zhang et al., CVPR 2019, "Deep Stacked Hierarchical Multi-patch Network for Image Deblurring",
and the motion-aware DMPHN of Zhang et al., "Self-supervised Exposure Trajectory Recovery for Dynamic Blur
Estimation" (Motion-ETR), §5.1, eq. (16).

DMPHN(1-2-4): three encoder-decoder pairs without shared weights. Level 3 cuts the image into 4 quarters (top/bottom
halves, each cut into left/right), level 2 into 2 halves, level 1 keeps it whole. Each encoder is a 3x3 conv to
``num_feat`` channels, two residual pairs, a stride-2 conv doubling the width, two pairs, a stride-2 conv, two pairs
(residual pair: ``x + conv3x3(relu(conv3x3(x)))``, no other activation); each decoder mirrors it with 4x4 stride-2
transposed convs and ends in a 3x3 conv to 3 channels. With B the image shifted by -0.5::

    F3 = [enc3(quarters)] (tiled back),   R3 = dec3(top half of F3), dec3(bottom half of F3)
    F2 = [enc2(halves + R3)] + F3,        R2 = dec2(F2)
    F1 = enc1(B + R2) + F2,               output = dec1(F1) + 0.5 (no clamp, no global skip).

Parameter names and order are those of the authors' six per-module files ``encoder_lv1..3.pkl`` /
``decoder_lv1..3.pkl`` (bare state dicts): 5,424,393 parameters. A folder holding them loads with
:func:`load_dmphn_folder` (or as ``path.pretrain_network_g`` of any basicsr_blurfield model).

Motion-aware DMPHN (eq. 16): ``y(p0) = sum_n w(p_n) x(p0 + alpha * dp^{t_n}(p0))``. In every decoder the two
full-resolution residual pairs (``layer21``, ``layer22``, 32 channels) become 3x3 deformable convolutions (mask 1,
:func:`basicsr_blurfield.fields.deform_conv2d`) whose tap ``k = 3 i + j`` (row-major) samples at the trajectory point
of instant ``T // 2 - 4 + k``: the 9 points centred on the middle instant (0, 0), scaled by ``alpha = 0.1``; so
the tap offset is ``alpha * dp^{t} - (i - 1, j - 1)``. The offsets come from a :class:`MotionOffsetNet` inside the
network, computed once on the input; decoder lv3 (run on the top and bottom halves) gets the offsets of each half.
Input in [0, 1], output = input + dec1(F1) (global residual, as released). ``ma_layout='released'`` instead builds
the offsets as the authors' code does, so their weights (one file, ``latest_net_deblur.pth``) can be evaluated:
storage vectors 3..11 of their 30-channel offset map (not centred in time), scale 0.08, and the 18 DCN channels in
component-major order, which the DCN reads as scrambled (dy, dx) pairs (see :func:`released_tap_source`).

Reference: Zhang et al., CVPR 2019 (DMPHN, §3); Zhang et al., Motion-ETR, §5.1 eq. (16). Written from the papers and
the published layouts (tests/fixtures/published_layouts/dmphn_1_2_4_state_dict.json,
motion_etr_ma_dmphn_state_dict.json).
"""
import os
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_to, pad_to_multiple
from basicsr_blurfield.archs.checkpoints import load_published_weights, unwrap_state_dict
from basicsr_blurfield.fields import OffsetField, deform_conv2d

__all__ = [
    'DMPHN', 'MA_LAYOUTS', 'MotionAwareDMPHN', 'load_dmphn_folder', 'load_offset_net', 'motion_aware_offsets',
    'released_offset_map', 'released_tap_source', 'remap_official_keys'
]

DMPHN_FILES = tuple(f'{part}_lv{level}' for part in ('encoder', 'decoder') for level in (1, 2, 3))
MA_LAYOUTS = ('paper', 'released')
_DEFAULT_ALPHA = {'paper': 0.1, 'released': 0.08}
_RELEASED_DCN_NAMES = {'dcn_5_0': 'layer21.0', 'dcn_5_1': 'layer21.2', 'dcn_6_0': 'layer22.0', 'dcn_6_1': 'layer22.2'}


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class _ResPair(nn.Sequential):
    """``x + conv3x3(relu(conv3x3(x)))``; keys ``0.*`` and ``2.*`` as in the published files."""

    def __init__(self, channels: int):
        super().__init__(_conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class _MotionAwarePair(_ResPair):
    """The residual pair with both convs motion-aware (eq. 16): same parameters, taps moved by ``offset``.

    Shape: x (N, C, H, W), offset (N, 18, H, W) as (dy, dx) per tap -> (N, C, H, W).
    """

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        first, second = self[0], self[2]
        y = F.relu(deform_conv2d(x, offset, first.weight, first.bias, padding=1))
        return x + deform_conv2d(y, offset, second.weight, second.bias, padding=1)


class _Encoder(nn.Module):
    """3 -> c -> 2c (stride 2) -> 4c (stride 2), two residual pairs per width. (N, 3, H, W) -> (N, 4c, H/4, W/4)."""

    def __init__(self, num_feat: int = 32, in_channels: int = 3):
        super().__init__()
        c = num_feat
        self.layer1, self.layer2, self.layer3 = _conv(in_channels, c), _ResPair(c), _ResPair(c)
        self.layer5, self.layer6, self.layer7 = _conv(c, 2 * c, 2), _ResPair(2 * c), _ResPair(2 * c)
        self.layer9, self.layer10, self.layer11 = _conv(2 * c, 4 * c, 2), _ResPair(4 * c), _ResPair(4 * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.layer7(self.layer6(self.layer5(x)))
        return self.layer11(self.layer10(self.layer9(x)))


class _Decoder(nn.Module):
    """4c -> 2c -> c (4x4 stride-2 transposed convs) -> 3. (N, 4c, h, w) -> (N, 3, 4h, 4w).

    With ``motion_aware`` the two full-resolution pairs (``layer21``, ``layer22``) are motion-aware and ``forward``
    takes their tap offsets (N, 18, 4h, 4w).
    """

    def __init__(self, num_feat: int = 32, out_channels: int = 3, motion_aware: bool = False):
        super().__init__()
        c = num_feat
        pair = _MotionAwarePair if motion_aware else _ResPair
        self.motion_aware = motion_aware
        self.layer13, self.layer14 = _ResPair(4 * c), _ResPair(4 * c)
        self.layer16 = nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1)
        self.layer17, self.layer18 = _ResPair(2 * c), _ResPair(2 * c)
        self.layer20 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.layer21, self.layer22 = pair(c), pair(c)
        self.layer24 = _conv(c, out_channels)

    def forward(self, x: torch.Tensor, offset: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.layer20(self.layer18(self.layer17(self.layer16(self.layer14(self.layer13(x))))))
        if self.motion_aware:
            x = self.layer22(self.layer21(x, offset), offset)
        else:
            x = self.layer22(self.layer21(x))
        return self.layer24(x)


def _halves(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Splits dim 2 (rows) or 3 (cols) in two and stacks the halves along the batch: (N, ...) -> (2N, ...)."""
    return torch.cat(x.chunk(2, dim=dim), dim=0)


def _join(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_halves`: (2N, ...) -> (N, ...) with the two batch halves joined along ``dim``."""
    return torch.cat(x.chunk(2, dim=0), dim=dim)


@ARCH_REGISTRY.register()
class DMPHN(nn.Module):
    """DMPHN(1-2-4) (module docstring). Defaults are the published configuration (5,424,393 parameters).

    Args:
        num_feat (int): channels of the first encoder width (then x2, x4); published 32. Default: 32.
        img_channel (int): image channels. Default: 3.

    Attributes:
        size_multiple (int): 8 (halves of halves through two stride-2 convs); inputs are padded (reflection) to it
            and the output cropped back, so any size works.

    Shape:
        (N, img_channel, H, W) in [0, 1] -> (N, img_channel, H, W), not clamped.
    """

    size_multiple = 8
    input_shift = 0.5  # the published network sees B - 0.5 and outputs dec1 + 0.5
    motion_aware = False  # decoder pairs layer21 / layer22 are plain convs

    def __init__(self, num_feat: int = 32, img_channel: int = 3):
        super().__init__()
        for level in (1, 2, 3):
            setattr(self, f'encoder_lv{level}', _Encoder(num_feat, img_channel))
        for level in (1, 2, 3):
            setattr(self, f'decoder_lv{level}', _Decoder(num_feat, img_channel, self.motion_aware))

    def _hierarchy(self, images: torch.Tensor, offset: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Levels 3, 2, 1 on ``images`` (N, C, H, W), H and W divisible by 8; returns dec1's output (N, C, H, W).

        ``offset`` (N, 18, H, W): tap offsets of the motion-aware pairs (decoder lv3 gets each half's rows).
        """
        halves = _halves(images, 2)  # top, bottom
        quarters = _halves(halves, 3)  # top-left, bottom-left, top-right, bottom-right
        feature_lv3 = _join(self.encoder_lv3(quarters), 3)  # (2N, 4c, H/8, W/4): top and bottom rows
        offset_lv3 = None if offset is None else _halves(offset, 2)
        residual_lv3 = self.decoder_lv3(feature_lv3, offset_lv3)
        feature_lv2 = self.encoder_lv2(halves + residual_lv3) + feature_lv3
        feature_lv2 = _join(feature_lv2, 2)
        residual_lv2 = self.decoder_lv2(feature_lv2, offset)
        feature_lv1 = self.encoder_lv1(images + residual_lv2) + feature_lv2
        return self.decoder_lv1(feature_lv1, offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__}: expected (N, C, H, W), got shape {tuple(x.shape)}')
        padded, size = pad_to_multiple(x, self.size_multiple)
        return crop_to(self._hierarchy(padded - self.input_shift) + self.input_shift, size)

    def load_checkpoint_folder(self, folder: str, strict: bool = True) -> None:
        """Loads the authors' six per-module files from ``folder`` (see :func:`load_dmphn_folder`), in place.

        Motion-aware variants load them into their DMPHN backbone (the offset net is left unchanged); that is an
        initialisation only, since the motion-aware network sees its input unshifted and adds it back at the end.
        """
        state = load_dmphn_folder(folder)
        own = set(self.state_dict())
        missing = sorted(own - set(state) - {key for key in own if key.startswith('offset_net.')})
        unexpected = sorted(set(state) - own)
        if strict and (missing or unexpected):
            raise RuntimeError(f'{folder}: DMPHN files do not match {type(self).__name__}: missing {missing[:5]}, '
                               f'unexpected {unexpected[:5]} (strict load; set strict_load_g: false to skip them)')
        self.load_state_dict(state, strict=False)


def motion_aware_offsets(offsets: torch.Tensor, alpha: Optional[float] = None, layout: str = 'paper') -> torch.Tensor:
    """Tap offsets of the motion-aware 3x3 convolution (eq. 16) from an exposure trajectory.

    ``'paper'``: tap ``k = 3 i + j`` samples at ``p0 + alpha * dp^{t}``, ``t = T // 2 - 4 + k`` (the 9 instants
    centred on the middle one), i.e. channel ``2k = alpha * dy_t - (i - 1)``, ``2k + 1 = alpha * dx_t - (j - 1)``.
    ``'released'``: channel ``c = alpha * O[src[c]] - grid[c]`` with the authors' 30-channel map O and the
    :func:`released_tap_source` tables (T must be 15).

    Args:
        offsets (Tensor): (N, T, 2, H, W), (dx, dy) in pixels, time ordered (an ``OffsetField``'s offsets); T odd,
            >= 9 (paper) or 15 (released).
        alpha (float | None): modulation scale; None: 0.1 (paper) / 0.08 (released).
        layout (str): one of :data:`MA_LAYOUTS`.

    Returns:
        Tensor: (N, 18, H, W) offsets for :func:`basicsr_blurfield.fields.deform_conv2d` ((dy, dx) per tap).
    """
    if layout not in MA_LAYOUTS:
        raise ValueError(f'layout: expected one of {MA_LAYOUTS}, got {layout!r}')
    if offsets.dim() != 5 or offsets.shape[2] != 2:
        raise ValueError(f'offsets: expected (N, T, 2, H, W) as (dx, dy), got {tuple(offsets.shape)}')
    steps = offsets.shape[1]
    scale = _DEFAULT_ALPHA[layout] if alpha is None else float(alpha)
    grid = torch.tensor([[i - 1, j - 1] for i in range(3) for j in range(3)], dtype=offsets.dtype,
                        device=offsets.device)
    if layout == 'paper':
        if steps < 9 or steps % 2 == 0:
            raise ValueError(f'offsets: the motion-aware conv takes the 9 instants centred on the middle one; '
                             f'expected an odd T >= 9, got T={steps}')
        middle = steps // 2
        points = offsets[:, middle - 4:middle + 5].flip(2)  # (N, 9, 2, H, W) as (dy, dx)
        return (scale * points - grid.view(1, 9, 2, 1, 1)).flatten(1, 2)
    if steps != 15:
        raise ValueError(f"offsets: ma_layout='released' needs the authors' T=15 trajectory, got T={steps}")
    source, constant = released_tap_source()
    released = released_offset_map(offsets)
    return scale * released[:, list(source)] - torch.tensor(constant, dtype=offsets.dtype,
                                                            device=offsets.device).view(1, -1, 1, 1)


def released_offset_map(offsets: torch.Tensor) -> torch.Tensor:
    """The authors' 30-channel offset map O from a time-ordered T=15 trajectory.

    Their storage vector ``v_s = O[:, 2s:2s+2]`` holds (dy, dx) of time step ``tau(s)``: ``v_0`` the start point,
    ``v_1..v_6`` the start side from the centre outwards (``tau = 7 - s``), ``v_7`` the middle (zero) and
    ``v_8..v_14`` the end side in time order (``tau = s``).

    Shape: offsets (N, 15, 2, H, W) as (dx, dy) -> (N, 30, H, W).
    """
    order = [0] + [7 - s for s in range(1, 7)] + list(range(7, 15))
    return offsets[:, order].flip(2).flatten(1, 2)


def released_tap_source() -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Where the released code's 18 DCN offset channels come from: ``dcn[c] = r * O[src[c]] - grid[c]``.

    It takes storage vectors 3..11, concatenates their component 0 then their component 1 (not interleaved per
    vector) and subtracts ``meshgrid(arange(-1, 2), arange(-1, 2), indexing='ij')`` flattened as (rows, then
    cols); the DCN reads channel ``2k`` as dy and ``2k + 1`` as dx of tap k, so most taps mix two vectors.

    Returns:
        tuple: ``src`` (18 channel indices of O) and ``grid`` (18 subtracted integers).
    """
    vectors = range(3, 12)
    source = tuple(2 * v for v in vectors) + tuple(2 * v + 1 for v in vectors)
    grid = tuple(i - 1 for i in range(3) for _ in range(3)) + tuple(j - 1 for _ in range(3) for j in range(3))
    return source, grid


@ARCH_REGISTRY.register()
class MotionAwareDMPHN(DMPHN):
    """DMPHN(1-2-4) with motion-aware convs in the full-resolution decoder pairs (eq. 16) and an offset net inside.

    Args:
        num_feat (int): DMPHN width (published 32). Default: 32.
        img_channel (int): image channels. Default: 3.
        offset_feat (int): ``MotionOffsetNet`` width (published 16). Default: 16.
        constraint (str): trajectory constraint of the offset net (published 'quadratic'). Default: 'quadratic'.
        num_steps (int): trajectory instants T (published 15). Default: 15.
        alpha (float | None): modulation scale; None: 0.1 (paper) / 0.08 (released). Default: None.
        ma_layout (str): 'paper' (eq. 16, default) or 'released' (the authors' offsets, for their weights).
        freeze_offset_net (bool): keep the offset net fixed (eval mode, no gradients); the authors fine-tune it
            jointly (False). Default: False.
        offset_net_path (str | None): checkpoint of a trained ``MotionOffsetNet`` (ours or the released
            ``latest_net_offset.pth``) loaded at construction. Default: None.

    Attributes:
        estimates_field (bool): True; ``forward(lq, return_field=True)`` also returns the ``OffsetField``.

    Shape:
        (N, img_channel, H, W) in [0, 1] -> (N, img_channel, H, W) (input + residual, not clamped).
    """

    motion_aware = True
    estimates_field = True

    def __init__(self,
                 num_feat: int = 32,
                 img_channel: int = 3,
                 offset_feat: int = 16,
                 constraint: str = 'quadratic',
                 num_steps: int = 15,
                 alpha: Optional[float] = None,
                 ma_layout: str = 'paper',
                 freeze_offset_net: bool = False,
                 offset_net_path: Optional[str] = None):
        from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet

        if ma_layout not in MA_LAYOUTS:
            raise ValueError(f'ma_layout: expected one of {MA_LAYOUTS}, got {ma_layout!r}')
        if ma_layout == 'released' and num_steps != 15:
            raise ValueError(f"num_steps: ma_layout='released' needs the authors' T=15, got {num_steps}")
        if ma_layout == 'paper' and (num_steps < 9 or num_steps % 2 == 0):
            raise ValueError(f'num_steps: eq. 16 takes the 9 instants centred on the middle one; expected an odd '
                             f'T >= 9, got {num_steps}')
        super().__init__(num_feat, img_channel)
        self.offset_net = MotionOffsetNet(in_channels=img_channel, num_feat=offset_feat, constraint=constraint,
                                          num_steps=num_steps)
        self.alpha = _DEFAULT_ALPHA[ma_layout] if alpha is None else float(alpha)
        self.ma_layout = ma_layout
        self.freeze_offset_net = bool(freeze_offset_net)
        if offset_net_path is not None:
            load_offset_net(self.offset_net, offset_net_path)
        if self.freeze_offset_net:
            self.offset_net.requires_grad_(False)
            self.offset_net.eval()
        self.register_load_state_dict_pre_hook(_rename_released_keys)

    def train(self, mode: bool = True) -> 'MotionAwareDMPHN':
        super().train(mode)
        if self.freeze_offset_net:
            self.offset_net.eval()
        return self

    def estimate_field(self, x: torch.Tensor) -> OffsetField:
        """The offset net's exposure trajectory of ``x`` (N, C, H, W) -> ``OffsetField`` (N, T, 2, H, W)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_offset_net):
            return self.offset_net(x)

    def forward(self, x: torch.Tensor, return_field: bool = False):
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__}: expected (N, C, H, W), got shape {tuple(x.shape)}')
        field = self.estimate_field(x)
        padded, size = pad_to_multiple(x, self.size_multiple)
        offset = motion_aware_offsets(field.offsets, self.alpha, self.ma_layout)
        offset = F.pad(offset, (0, padded.shape[-1] - size[1], 0, padded.shape[-2] - size[0]), mode='replicate')
        restored = crop_to(padded + self._hierarchy(padded, offset), size)
        return (restored, field) if return_field else restored


def _rename_released_keys(module, state_dict, prefix, *args) -> None:
    """Load pre-hook: converts a released MA-DMPHN state dict (``deblur_net.*``, ``offset_net.*``) in place, so
    ``latest_net_deblur.pth`` loads through BasicSR's ``load_network`` (``param_key_g: ~``) without conversion."""
    keys = [key for key in state_dict if key.startswith(prefix)]
    if not any(key.startswith(prefix + 'deblur_net.') for key in keys):
        return
    released = {key[len(prefix):]: state_dict.pop(key) for key in keys}
    state_dict.update({prefix + key: value for key, value in remap_official_keys(released).items()})


def load_offset_net(net: nn.Module, path: str) -> nn.Module:
    """Loads a ``MotionOffsetNet`` checkpoint into ``net`` (strict): ours (``{'params': ...}``, our names) or the
    authors' ``latest_net_offset.pth``, through ``checkpoints.load_published_weights`` (its remap passes our names).

    Raises:
        FileNotFoundError: when ``path`` is not a file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'offset_net_path: no MotionOffsetNet checkpoint at {path!r}')
    return load_published_weights(net, path, arch='MotionOffsetNet')


def load_dmphn_folder(folder: str) -> dict:
    """Reads the authors' DMPHN(1-2-4) checkpoint folder into one state dict with our names.

    Args:
        folder (str): holds ``encoder_lv1.pkl`` .. ``encoder_lv3.pkl`` and ``decoder_lv1.pkl`` .. ``decoder_lv3.pkl``
            (bare state dicts, as ``DMPHN_1_2_4.py`` saves them; CUDA tensors are mapped to the CPU).

    Returns:
        dict: ``'<module>.<key>'`` -> tensor, e.g. ``'encoder_lv1.layer1.weight'``.

    Raises:
        FileNotFoundError: when the folder or any of the six files is missing (the message lists them).
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'DMPHN checkpoint folder not found: {folder!r}')
    paths = {name: os.path.join(folder, f'{name}.pkl') for name in DMPHN_FILES}
    missing = [os.path.basename(path) for path in paths.values() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f'{folder}: missing DMPHN files {missing}; expected all of '
                                f'{[f"{name}.pkl" for name in DMPHN_FILES]}')
    state = {}
    for name, path in paths.items():
        part = unwrap_state_dict(torch.load(path, map_location='cpu', weights_only=True))
        state.update({f'{name}.{key}': value for key, value in part.items()})
    return state


def remap_official_keys(state: dict) -> dict:
    """Maps published DMPHN / MA-DMPHN weights to our names.

    Accepted: a DMPHN state dict with our names (returned unwrapped); the six per-module dicts as
    ``{'encoder_lv1': {...}, ...}``; a released MA-DMPHN ``latest_net_deblur.pth`` (``deblur_net.*``:
    ``dcn_5_0/5_1/6_0/6_1`` -> ``layer21.0/21.2/22.0/22.2``, the fixed ``ratio_3`` (0.08) dropped - it is the
    ``alpha`` option; ``offset_net.*`` through ``motion_offset_arch.remap_official_keys``).

    Args:
        state (dict): one of the above (a ``params`` wrapper is removed).

    Returns:
        dict: parameter name -> tensor.
    """
    if set(state) <= set(DMPHN_FILES) and all(isinstance(value, dict) for value in state.values()):
        return {
            f'{name}.{key}': value
            for name, part in state.items() for key, value in unwrap_state_dict(part).items()
        }
    state = unwrap_state_dict(state)
    if not any(key.startswith('deblur_net.') for key in state):
        return state
    out, offset_state = {}, {}
    for key, value in state.items():
        if key.startswith('offset_net.'):
            offset_state[key[len('offset_net.'):]] = value
        elif key.startswith('deblur_net.'):
            name = key[len('deblur_net.'):]
            if name.endswith('.ratio_3'):
                continue
            module, layer, rest = name.split('.', 2)
            out[f'{module}.{_RELEASED_DCN_NAMES.get(layer, layer)}.{rest}'] = value
        else:
            raise ValueError(f'remap_official_keys: unexpected key {key!r} in a released MA-DMPHN state dict '
                             "(expected 'deblur_net.*' and 'offset_net.*')")
    if offset_state:
        from basicsr_blurfield.archs.motion_offset_arch import remap_official_keys as remap_offset_keys
        out.update({f'offset_net.{key}': value for key, value in remap_offset_keys(offset_state).items()})
    return out
