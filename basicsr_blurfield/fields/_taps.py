"""Per-pixel (space-varying) blur as tap loops: eq. (1) of Carbajal et al. in gather form, with its transposes.

With ``r = K // 2`` and a padded image ``xp`` of size ``(H + 2r) x (W + 2r)`` (padded pixel ``(y + r, x + r)`` is image
pixel ``(y, x)``), the three bilinear maps used by :class:`~basicsr_blurfield.fields.KernelField` are

- gather:    ``out[n, c, y, x]  = sum_t k[n, t, y, x] * xp[n, c, y + i_t, x + j_t]``   (the blur),
- scatter:   ``zp[n, c, y + i_t, x + j_t] += k[n, t, y, x] * v[n, c, y, x]``         (its transpose in ``xp``),
- correlate: ``g[n, t, y, x]    = sum_c v[n, c, y, x] * xp[n, c, y + i_t, x + j_t]``   (its transpose in ``k``),

with tap ``t = i_t * K + j_t``. Each is a custom autograd function whose backward is made of the other two, so the
set is closed under differentiation (gradcheck and double backward work). Forward and backward loop over the ``K*K``
taps with in-place multiply-adds on shifted views: memory is ``O(N*C*H*W + N*K*K*H*W)`` (image plus field), never the
``K*K``-times-image tensor that ``F.unfold`` builds.
"""
from typing import Tuple

import torch
from torch import Tensor


def _geometry(kernels: Tensor) -> Tuple[int, int, int]:
    taps, height, width = kernels.shape[1:]
    size = int(round(taps**0.5))
    assert size * size == taps, f'internal: {taps} taps is not a square'
    return size, height, width


def _gather(padded: Tensor, kernels: Tensor) -> Tensor:
    size, height, width = _geometry(kernels)
    out = padded.new_zeros(padded.shape[:2] + (height, width))
    for tap in range(size * size):
        i, j = divmod(tap, size)
        out.addcmul_(kernels[:, tap:tap + 1], padded[:, :, i:i + height, j:j + width])
    return out


def _scatter(values: Tensor, kernels: Tensor) -> Tensor:
    size, height, width = _geometry(kernels)
    padded = values.new_zeros(values.shape[:2] + (height + size - 1, width + size - 1))
    for tap in range(size * size):
        i, j = divmod(tap, size)
        padded[:, :, i:i + height, j:j + width].addcmul_(kernels[:, tap:tap + 1], values)
    return padded


def _correlate(values: Tensor, padded: Tensor, size: int) -> Tensor:
    height, width = values.shape[-2:]
    out = values.new_zeros((values.shape[0], size * size, height, width))
    for tap in range(size * size):
        i, j = divmod(tap, size)
        window = padded[:, :, i:i + height, j:j + width]
        for c in range(values.shape[1]):
            out[:, tap].addcmul_(values[:, c], window[:, c])
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
