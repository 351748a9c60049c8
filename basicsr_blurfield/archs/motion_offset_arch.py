"""Motion-offset (exposure-trajectory) estimator of Zhang et al., Table 1, with the constraints of eq. (12)-(14).

A blurry image goes through a space-to-depth by 2, three 5x5 encoder stages (16, 32, 64 channels at H/2, H/4, H/8,
each conv followed by three residual blocks), a decoder of bottlenecks (1x1 to twice the width, LeakyReLU 0.2, 3x3,
LeakyReLU 0.2) and 4x4 stride-2 transposed convolutions whose outputs are concatenated with the encoder skips, and a
5x5 output convolution at full resolution. The output is a per-pixel motion description turned into an
:class:`~basicsr_blurfield.fields.OffsetField` ``(N, T, 2, H, W)``, offsets ``(dx, dy)`` in pixels, time ordered:

- ``'quadratic'`` (eq. 14) and ``'bilinear'`` (eq. 13): 4 channels, the start S (first instant) and end E (last
  instant); the T instants come from ``OffsetField.from_endpoints`` and pass through (0, 0) at the middle one;
- ``'linear'`` (eq. 12): 2 channels, S; the end is ``-S``;
- ``'zero'`` (free offsets, §4.2 "zero constraint"): ``2 * T`` channels, the T offsets themselves. The weights then
  depend on T, which is fixed by the constructor's ``num_steps`` (a call with another T is refused).

For the constrained modes the weights do not depend on T: ``forward(lq, num_steps=T)`` evaluates the same curve at
any odd T >= 3. Any H, W: the input is padded (reflect) to a multiple of 8 (at least 16) and the field cropped back.
The field's boundary mode is ``padding`` ('replicate' by default, the project's convention); ``'zeros'`` is what the
authors' blur module does (a bilinear corner outside the image counts 0).

Reference: Zhang, Wang, Maybank, Tao, "Self-supervised Exposure Trajectory Recovery for Dynamic Blur Estimation",
Table 1, eq. (12)-(14). Written from the paper and the published layout (``OffsetNet_quad``, nf = 16, 1,129,604
parameters); :func:`remap_official_keys` loads the authors' weights.
"""
import re
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_to, pad_to_multiple
from basicsr_blurfield.fields import PADDING_MODES, OffsetField

__all__ = ['MotionOffsetNet', 'remap_official_keys', 'MOTION_CONSTRAINTS']

MOTION_CONSTRAINTS = ('zero', 'linear', 'bilinear', 'quadratic')
_MULTIPLE = 8
_MIN_SIZE = 16


class _ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 5x5 convs, each after a replication pad of 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 5)
        self.conv2 = nn.Conv2d(channels, channels, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.pad(x, (2, 2, 2, 2), mode='replicate'))
        return x + self.conv2(F.pad(F.relu(y), (2, 2, 2, 2), mode='replicate'))


class _EncoderStage(nn.Module):
    """Reflection pad, 5x5 conv (stride 1 or 2), ReLU, three residual blocks.

    Stride 1 pads 2 on every side; stride 2 pads (left 1, right 2, top 1, bottom 2) so that H, W halve exactly.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, num_block: int = 3):
        super().__init__()
        self.pad = (2, 2, 2, 2) if stride == 1 else (1, 2, 1, 2)
        self.conv = nn.Conv2d(in_ch, out_ch, 5, stride=stride)
        self.blocks = nn.Sequential(*(_ResBlock(out_ch) for _ in range(num_block)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(F.relu(self.conv(F.pad(x, self.pad, mode='reflect'))))


class _Bottleneck(nn.Module):
    """1x1 conv to ``hidden`` channels, LeakyReLU 0.2, 3x3 conv (zero pad 1) to ``out_ch``, LeakyReLU 0.2."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)


def check_num_steps(num_steps) -> int:
    """Returns ``num_steps`` if it is an odd int >= 3 (the middle instant is the sharp image), raises otherwise."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 3 or num_steps % 2 == 0:
        raise ValueError(f'num_steps: expected an odd int >= 3 (the middle instant is the sharp image), '
                         f'got {num_steps!r}')
    return num_steps


@ARCH_REGISTRY.register()
class MotionOffsetNet(nn.Module):
    """Offset network of Table 1: blurry image -> ``OffsetField`` of T instants.

    Args:
        in_channels (int): C of the input image. Default: 3.
        num_feat (int): nf, width of the first encoder stage (then 2 nf, 4 nf). Default: 16 (published).
        constraint (str): ``'zero'``, ``'linear'``, ``'bilinear'`` or ``'quadratic'`` (default), eq. (12)-(14).
        num_steps (int): default T, odd and >= 3. Default: 15. For ``'zero'`` it fixes the output width (2 T).
        padding (str): boundary mode of the returned field: ``'replicate'`` (default), ``'reflect'`` or ``'zeros'``
            (the authors' blur module).

    Weights are initialised as in §6.1 (Xavier-uniform, zero biases).

    Shape:
        lq (N, C, H, W) in [0, 1], any H, W >= 2 -> OffsetField with offsets (N, T, 2, H, W), (dx, dy) in pixels,
        time ordered; for the constrained modes offsets[:, T // 2] == 0.
    """

    def __init__(self,
                 in_channels: int = 3,
                 num_feat: int = 16,
                 constraint: str = 'quadratic',
                 num_steps: int = 15,
                 padding: str = 'replicate'):
        super().__init__()
        if constraint not in MOTION_CONSTRAINTS:
            raise ValueError(f'constraint: expected one of {MOTION_CONSTRAINTS}, got {constraint!r}')
        if padding not in PADDING_MODES:
            raise ValueError(f'padding: expected one of {PADDING_MODES}, got {padding!r}')
        self.in_channels, self.constraint = int(in_channels), constraint
        self.num_steps, self.padding = check_num_steps(num_steps), padding
        out_ch = {'zero': 2 * num_steps, 'linear': 2}.get(constraint, 4)
        nf = num_feat
        self.enc1 = _EncoderStage(4 * self.in_channels, nf, 1)
        self.enc2 = _EncoderStage(nf, 2 * nf, 2)
        self.enc3 = _EncoderStage(2 * nf, 4 * nf, 2)
        self.dec1 = _Bottleneck(4 * nf, 8 * nf, 4 * nf)
        self.up1 = nn.ConvTranspose2d(4 * nf, 2 * nf, 4, stride=2, padding=1)
        self.dec2 = _Bottleneck(4 * nf, 8 * nf, 4 * nf)
        self.up2 = nn.ConvTranspose2d(4 * nf, nf, 4, stride=2, padding=1)
        self.dec3 = _Bottleneck(2 * nf, 4 * nf, 2 * nf)
        self.up3 = nn.ConvTranspose2d(2 * nf, 2 * nf, 4, stride=2, padding=1)
        self.head = nn.Conv2d(2 * nf, out_ch, 5, padding=2)
        for module in self.modules():  # §6.1: Xavier weights, zero biases
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def raw(self, lq: Tensor) -> Tensor:
        """The output convolution's map (N, O, H, W): O = 4 (S, E as (dx, dy)), 2 (S) or 2 T (offsets, (dx, dy))."""
        if not isinstance(lq, Tensor) or lq.dim() != 4 or lq.shape[1] != self.in_channels:
            got = tuple(lq.shape) if isinstance(lq, Tensor) else type(lq).__name__
            raise ValueError(f'MotionOffsetNet: expected lq (N, {self.in_channels}, H, W), got {got}')
        x, size = pad_to_multiple(lq, _MULTIPLE)
        short_h, short_w = max(0, _MIN_SIZE - x.shape[-2]), max(0, _MIN_SIZE - x.shape[-1])
        if short_h or short_w:  # the H/4 stage's reflection pad of 2 needs H/4 >= 3
            x = F.pad(x, (0, short_w, 0, short_h), mode='replicate')
        skip1 = self.enc1(F.pixel_unshuffle(x, 2))
        skip2 = self.enc2(skip1)
        y = F.leaky_relu(self.up1(self.dec1(self.enc3(skip2))), 0.2)
        y = F.leaky_relu(self.up2(self.dec2(torch.cat((y, skip2), 1))), 0.2)
        y = F.relu(self.up3(self.dec3(torch.cat((y, skip1), 1))))
        return crop_to(self.head(y), size)

    def endpoints(self, lq: Tensor) -> Tuple[Tensor, Tensor]:
        """Start and end offsets of the constrained trajectories.

        Args:
            lq (Tensor): (N, C, H, W).

        Returns:
            tuple[Tensor, Tensor]: start S (first instant) and end E (last instant), each (N, 2, H, W) as (dx, dy);
            for ``'linear'`` E = -S.

        Raises:
            ValueError: for ``constraint='zero'`` (free offsets have no endpoints that define the curve).
        """
        if self.constraint == 'zero':
            raise ValueError("endpoints: constraint='zero' predicts free offsets, not endpoints; "
                             'use forward(lq).offsets (N, T, 2, H, W) instead')
        out = self.raw(lq)
        start = out[:, :2]
        return start, (-start if self.constraint == 'linear' else out[:, 2:4])

    def forward(self, lq: Tensor, num_steps: Optional[int] = None) -> OffsetField:
        """Estimates the exposure trajectories of ``lq``.

        Args:
            lq (Tensor): (N, C, H, W) in [0, 1].
            num_steps (int | None): T, odd >= 3; None uses the constructor's. For ``'zero'`` it must equal it.

        Returns:
            OffsetField: offsets (N, T, 2, H, W), (dx, dy), time ordered.
        """
        steps = self.num_steps if num_steps is None else check_num_steps(num_steps)
        if self.constraint == 'zero':
            if steps != self.num_steps:
                raise ValueError(f"num_steps: constraint='zero' predicts exactly the {self.num_steps} offsets it was "
                                 f'built with (2 * T output channels), got num_steps={steps}; build the network '
                                 f'with num_steps={steps} or use a constrained mode')
            out = self.raw(lq)
            offsets = out.reshape(out.shape[0], steps, 2, *out.shape[2:])
            return OffsetField(offsets, self.padding)
        out = self.raw(lq)
        if self.constraint == 'linear':
            return OffsetField.from_endpoints(out[:, :2], None, steps, 'linear', self.padding)
        return OffsetField.from_endpoints(out[:, :2], out[:, 2:4], steps, self.constraint, self.padding)


_OFFICIAL_RULES = (
    (r'^conv_(\d)\.1\.', lambda m: f'enc{m.group(1)}.conv.'),
    (r'^conv_(\d)\.3\.(\d)\.conv_block\.([14])\.',
     lambda m: f'enc{m.group(1)}.blocks.{m.group(2)}.conv{1 if m.group(3) == "1" else 2}.'),
    (r'^bottleneck_(\d)\.(conv[12])\.', lambda m: f'dec{m.group(1)}.{m.group(2)}.'),
    (r'^uconv_(\d)\.', lambda m: f'up{m.group(1)}.'),
    (r'^conv_out_0\.', 'head.'),
)
_ALIAS = re.compile(r'^bottleneck_(\d)\.model\.([02])\.(weight|bias)$')
_OURS = re.compile(r'^(enc\d\.(conv|blocks)|dec\d\.conv[12]|up\d|head)\.')


def _swap_pairs(value: Tensor) -> Tensor:
    """Reorders the output rows (dy, dx, dy, dx, ...) -> (dx, dy, dx, dy, ...)."""
    if value.shape[0] % 2:
        raise ValueError(f'conv_out_0: expected an even number of output channels ((dy, dx) pairs), '
                         f'got {value.shape[0]}')
    return value.reshape(-1, 2, *value.shape[1:]).flip(1).reshape(value.shape)


def remap_official_keys(state: dict) -> dict:
    """Converts the authors' ``OffsetNet_quad`` state dict (or their linear / bi-linear variants) to ours.

    What changes at this boundary:
    - names: ``conv_K.1`` -> ``encK.conv``, ``conv_K.3.i.conv_block.{1,4}`` -> ``encK.blocks.i.conv{1,2}``,
      ``bottleneck_K.conv{1,2}`` -> ``decK.conv{1,2}``, ``uconv_K`` -> ``upK``, ``conv_out_0`` -> ``head``;
    - aliases: every bottleneck tensor is stored twice (``bottleneck_K.convJ.*`` and ``bottleneck_K.model.{0,2}.*``,
      the same tensor); the ``model`` spelling is checked equal and dropped;
    - space-to-depth: their channel order is ``(dy * 2 + dx) * C + c``, ``F.pixel_unshuffle``'s is
      ``c * 4 + dy * 2 + dx``, so the input channels of ``conv_1.1.weight`` are permuted;
    - axis order: their output channels are (dy, dx) pairs [S_dy, S_dx, E_dy, E_dx]; ours (dx, dy): the rows of the
      output weight and bias are swapped pairwise. S is their tau = -1 and E their tau = +1, so the trajectory built
      by ``OffsetField.from_endpoints`` is already in time order (their 30-channel storage order [S, S-side, 0,
      E-side, E] is never materialised).

    A state dict that already has our names (a checkpoint of :class:`MotionOffsetNet`) is returned unchanged, so
    ``checkpoints.load_published_weights(MotionOffsetNet(), path)`` takes ours and theirs alike.

    Args:
        state (dict): the published state dict, or one with our names; a ``params`` wrapper or ``module.`` prefixes
            are accepted.

    Returns:
        dict: tensors under :class:`MotionOffsetNet` names (load strictly into ``MotionOffsetNet()``).

    Raises:
        ValueError: a key that is no part of ``OffsetNet_quad`` (another network's checkpoint), or aliases that differ.
    """
    state = state.get('params', state)
    state = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state.items()}
    if state and all(_OURS.match(key) for key in state):
        return state
    remapped = {}
    for key, value in state.items():
        alias = _ALIAS.match(key)
        if alias:
            twin = f'bottleneck_{alias.group(1)}.conv{1 if alias.group(2) == "0" else 2}.{alias.group(3)}'
            if twin in state and not torch.equal(state[twin], value):
                raise ValueError(f'{key}: expected the same tensor as its alias {twin} (OffsetNet_quad stores each '
                                 'bottleneck conv twice), got different values')
            if twin not in state:
                remapped[f'dec{alias.group(1)}.{twin.split(".", 1)[1]}'] = value
            continue
        for pattern, replacement in _OFFICIAL_RULES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                break
        else:
            raise ValueError(f"{key}: not a key of the authors' OffsetNet_quad (expected conv_1..3, bottleneck_1..3, "
                             'uconv_1..3, conv_out_0, e.g. conv_1.1.weight); is this the checkpoint of another '
                             'network?')
        if key == 'conv_1.1.weight':
            out_ch, in_ch = value.shape[:2]
            if in_ch % 4:
                raise ValueError(f'conv_1.1.weight: expected 4 * C input channels (space-to-depth by 2), got {in_ch}')
            value = value.reshape(out_ch, 4, in_ch // 4, *value.shape[2:]).transpose(1, 2).reshape(value.shape)
        elif key.startswith('conv_out_0.'):
            value = _swap_pairs(value)
        remapped[new_key] = value
    return remapped
