"""Per-pixel (space-varying) blur as tap loops: eq. (1) of Carbajal et al. in gather form, with its transposes.

With ``r = K // 2`` and a padded image ``xp`` of size ``(H + 2r) x (W + 2r)`` (padded pixel ``(y + r, x + r)`` is image
pixel ``(y, x)``), the three bilinear maps used by :class:`~basicsr_blurfield.fields.KernelField` are

- gather:    ``out[n, c, y, x]  = sum_t k[n, t, y, x] * xp[n, c, y + i_t, x + j_t]``   (the blur),
- scatter:   ``zp[n, c, y + i_t, x + j_t] += k[n, t, y, x] * v[n, c, y, x]``         (its transpose in ``xp``),
- correlate: ``g[n, t, y, x]    = sum_c v[n, c, y, x] * xp[n, c, y + i_t, x + j_t]``   (its transpose in ``k``),

with tap ``t = i_t * K + j_t``. Each is a custom autograd function whose backward is made of the other two, so the
set is closed under differentiation (gradcheck and double backward work). Forward and backward loop over the ``K*K``
taps with in-place multiply-adds on shifted views (on CPU in row tiles, so a tile stays in cache across all taps):
memory is ``O(N*C*H*W + N*K*K*H*W)`` (image plus field), never the ``K*K``-times-image tensor of ``F.unfold``.
"""
import math
from typing import Tuple

import torch
from torch import Tensor

TILE_ELEMENTS = 1 << 15


def _geometry(kernels: Tensor) -> Tuple[int, int, int]:
    taps, height, width = (int(value) for value in kernels.shape[1:])  # plain ints, also under jit tracing
    size = math.isqrt(taps)
    assert size * size == taps, f'internal: {taps} taps is not a square'
    return size, height, width


def _row_tiles(image: Tensor) -> Tuple[range, int]:
    """Row starts of the tiles: on CPU about :data:`TILE_ELEMENTS` image values per tile, so that a tile of the
    image, its padded window and the output stay in cache across all taps; elsewhere one tile."""
    num, channels, height, width = image.shape
    rows = max(1, TILE_ELEMENTS // (num * channels * width)) if image.device.type == 'cpu' else height
    return range(0, height, rows), rows


def _gather(padded: Tensor, kernels: Tensor) -> Tensor:
    size, height, width = _geometry(kernels)
    out = padded.new_zeros(padded.shape[:2] + (height, width))
    starts, rows = _row_tiles(out)
    for top in starts:
        bottom = min(top + rows, height)
        tile, tile_kernels = out[:, :, top:bottom], kernels[:, :, top:bottom]
        for tap in range(size * size):
            i, j = divmod(tap, size)
            tile.addcmul_(tile_kernels[:, tap:tap + 1], padded[:, :, top + i:bottom + i, j:j + width])
    return out


def _scatter(values: Tensor, kernels: Tensor) -> Tensor:
    size, height, width = _geometry(kernels)
    padded = values.new_zeros(values.shape[:2] + (height + size - 1, width + size - 1))
    starts, rows = _row_tiles(values)
    for top in starts:
        bottom = min(top + rows, height)
        tile, tile_kernels = values[:, :, top:bottom], kernels[:, :, top:bottom]
        for tap in range(size * size):
            i, j = divmod(tap, size)
            padded[:, :, top + i:bottom + i, j:j + width].addcmul_(tile_kernels[:, tap:tap + 1], tile)
    return padded


def _correlate(values: Tensor, padded: Tensor, size: int) -> Tensor:
    height, width = values.shape[-2:]
    out = values.new_empty((values.shape[0], size * size, height, width))
    starts, rows = _row_tiles(values)
    for top in starts:
        bottom = min(top + rows, height)
        tile, tile_out = values[:, :, top:bottom], out[:, :, top:bottom]
        for tap in range(size * size):
            i, j = divmod(tap, size)
            window = padded[:, :, top + i:bottom + i, j:j + width]
            torch.mul(tile[:, 0], window[:, 0], out=tile_out[:, tap])
            for c in range(1, values.shape[1]):
                tile_out[:, tap].addcmul_(tile[:, c], window[:, c])
    return out


class TapGather(torch.autograd.Function):
    """``gather(xp, k)``: (N, C, H+2r, W+2r), (N, K*K, H, W) -> (N, C, H, W)."""

    @staticmethod
    def forward(ctx, padded: Tensor, kernels: Tensor) -> Tensor:
        ctx.save_for_backward(padded, kernels)
        return _gather(padded, kernels)

    @staticmethod
    def backward(ctx, grad: Tensor):
        padded, kernels = ctx.saved_tensors
        grad_padded = TapScatter.apply(grad, kernels) if ctx.needs_input_grad[0] else None
        grad_kernels = TapCorrelate.apply(grad, padded) if ctx.needs_input_grad[1] else None
        return grad_padded, grad_kernels


class TapScatter(torch.autograd.Function):
    """``scatter(v, k)``: (N, C, H, W), (N, K*K, H, W) -> (N, C, H+2r, W+2r); the transpose of gather in ``xp``."""

    @staticmethod
    def forward(ctx, values: Tensor, kernels: Tensor) -> Tensor:
        ctx.save_for_backward(values, kernels)
        return _scatter(values, kernels)

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, kernels = ctx.saved_tensors
        grad_values = TapGather.apply(grad, kernels) if ctx.needs_input_grad[0] else None
        grad_kernels = TapCorrelate.apply(values, grad) if ctx.needs_input_grad[1] else None
        return grad_values, grad_kernels


class TapCorrelate(torch.autograd.Function):
    """``correlate(v, xp)``: (N, C, H, W), (N, C, H+2r, W+2r) -> (N, K*K, H, W); the transpose of gather in ``k``."""

    @staticmethod
    def forward(ctx, values: Tensor, padded: Tensor) -> Tensor:
        ctx.save_for_backward(values, padded)
        return _correlate(values, padded, padded.shape[-1] - values.shape[-1] + 1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, padded = ctx.saved_tensors
        grad_values = TapGather.apply(padded, grad) if ctx.needs_input_grad[0] else None
        grad_padded = TapScatter.apply(values, grad) if ctx.needs_input_grad[1] else None
        return grad_values, grad_padded
