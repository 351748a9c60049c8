"""Deformable convolution (Dai et al., ICCV 2017; modulated form of Zhu et al., CVPR 2019) in pure torch.

``out[n, o, p] = bias[o] + sum_k sum_c weight[o, c, k] * mask[n, g, k, p] * input[n, c, p_k + offset_k(p)]`` with
``p_k = p * stride - padding + k * dilation`` and ``input`` read by bilinear interpolation with zeros outside the
image (a sample at or beyond one pixel outside reads 0). It drives the motion-aware convolution of Zhang et al.
(eq. 16). Offsets are laid out as in ``torchvision.ops.deform_conv2d``: channel ``2 * (g * kh * kw + k)`` is the
row (y) shift and ``+ 1`` the column (x) shift of tap ``k = i * kw + j`` in offset group ``g``.

:func:`deform_conv2d` calls torchvision's compiled op when ``torchvision.extension._has_ops()`` is true and the pure
path :func:`deform_conv2d_torch` otherwise. The pure path loops over the ``kh * kw`` taps (one ``grid_sample`` and
one grouped 1x1 convolution each), so it never builds the ``C * kh * kw``-times-output column tensor.
"""
import functools
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_tensor

IntPair = Union[int, Tuple[int, int]]


def _pair(name: str, value: IntPair, minimum: int) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise ValueError(f'{name}: expected an int or a pair of ints >= {minimum}, got {value!r}')
    return pair


@functools.lru_cache(maxsize=None)
def torchvision_deform_conv2d():
    """torchvision's compiled ``deform_conv2d`` when its C++ ops load, else None."""
    try:
        import torchvision.extension
        from torchvision.ops import deform_conv2d as compiled
        return compiled if torchvision.extension._has_ops() else None
    except Exception:  # a broken torchvision build (CUDA wheel on a CPU machine) raises various errors
        return None


def deform_conv2d(input: Tensor,
                  offset: Tensor,
                  weight: Tensor,
                  bias: Optional[Tensor] = None,
                  stride: IntPair = 1,
                  padding: IntPair = 0,
                  dilation: IntPair = 1,
                  mask: Optional[Tensor] = None) -> Tensor:
    """Deformable 2-D convolution with the signature of ``torchvision.ops.deform_conv2d``.

    Uses torchvision's compiled op when it is available (see :func:`torchvision_deform_conv2d`), otherwise
    :func:`deform_conv2d_torch`; arguments and shapes as there.
    """
    compiled = torchvision_deform_conv2d()
    if compiled is not None:
        return compiled(input, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask)
    return deform_conv2d_torch(input, offset, weight, bias, stride, padding, dilation, mask)


def deform_conv2d_torch(input: Tensor,
                        offset: Tensor,
                        weight: Tensor,
                        bias: Optional[Tensor] = None,
                        stride: IntPair = 1,
                        padding: IntPair = 0,
                        dilation: IntPair = 1,
                        mask: Optional[Tensor] = None) -> Tensor:
    """Pure-torch deformable convolution; differentiable in every tensor argument.

    Args:
        input (Tensor): (N, C_in, H, W).
        offset (Tensor): (N, 2 * G * kh * kw, H_out, W_out), (dy, dx) pairs per tap, G offset groups dividing C_in.
        weight (Tensor): (C_out, C_in / groups, kh, kw); ``groups`` is inferred and must divide C_in and C_out.
        bias (Tensor | None): (C_out,).
        stride, padding, dilation (int | tuple[int, int]): as in ``torch.nn.functional.conv2d``.
        mask (Tensor | None): (N, G * kh * kw, H_out, W_out) modulation; None means all ones.

    Returns:
        Tensor: (N, C_out, H_out, W_out) with ``H_out = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1``.
    """
    check_tensor('input', input, 4, '(N, C_in, H, W)')
    check_tensor('weight', weight, 4, '(C_out, C_in / groups, kh, kw)')
    check_tensor('offset', offset, 4, '(N, 2 * G * kh * kw, H_out, W_out)')
    sh, sw = _pair('stride', stride, 1)
    ph, pw = _pair('padding', padding, 0)
    dh, dw = _pair('dilation', dilation, 1)
    num, in_channels, height, width = (int(value) for value in input.shape)  # ints under jit tracing
    out_channels, group_channels, kh, kw = (int(value) for value in weight.shape)
    if group_channels < 1 or in_channels % group_channels or out_channels % (in_channels // group_channels):
        raise ValueError(f'weight: expected (C_out, C_in / groups, kh, kw) with groups dividing C_in={in_channels} '
                         f'and C_out, got {tuple(weight.shape)}')
    groups = in_channels // group_channels
    out_h, out_w = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f'input: expected an image large enough for a {kh}x{kw} kernel with padding {(ph, pw)} '
                         f'and dilation {(dh, dw)}, got {height}x{width}')
    taps = kh * kw
    offset_groups = int(offset.shape[1]) // (2 * taps)
    if (offset.shape[0] != num or offset.shape[1] != 2 * taps * offset_groups or offset_groups < 1
            or in_channels % offset_groups or offset.shape[2:] != (out_h, out_w)):
        raise ValueError(f'offset: expected ({num}, 2 * G * {taps}, {out_h}, {out_w}) with G dividing '
                         f'C_in={in_channels}, got {tuple(offset.shape)}')
    if mask is not None and mask.shape != (num, offset_groups * taps, out_h, out_w):
        raise ValueError(f'mask: expected ({num}, {offset_groups * taps}, {out_h}, {out_w}), got {tuple(mask.shape)}')
    if bias is not None and bias.shape != (out_channels, ):
        raise ValueError(f'bias: expected ({out_channels},), got {tuple(bias.shape)}')

    shifts = offset.view(num, offset_groups, taps, 2, out_h, out_w)
    rows = (torch.arange(out_h, dtype=input.dtype, device=input.device) * sh - ph)[:, None]
    cols = torch.arange(out_w, dtype=input.dtype, device=input.device) * sw - pw
    grouped = input.reshape(num * offset_groups, in_channels // offset_groups, height, width)
    out = None
    for tap in range(taps):
        i, j = divmod(tap, kw)
        pos_y = rows + i * dh + shifts[:, :, tap, 0]
        pos_x = cols + j * dw + shifts[:, :, tap, 1]
        grid = torch.stack(((2 * pos_x + 1) / width - 1, (2 * pos_y + 1) / height - 1), -1)
        sampled = F.grid_sample(
            grouped,
            grid.view(num * offset_groups, out_h, out_w, 2),
            mode='bilinear',
            padding_mode='zeros',
            align_corners=False)
        sampled = sampled.view(num, offset_groups, in_channels // offset_groups, out_h, out_w)
        if mask is not None:
            sampled = sampled * mask.view(num, offset_groups, taps, 1, out_h, out_w)[:, :, tap]
        term = F.conv2d(sampled.view(num, in_channels, out_h, out_w), weight[:, :, i:i + 1, j:j + 1], groups=groups)
        out = term if out is None else out + term
    return out if bias is None else out + bias.view(1, -1, 1, 1)
