"""Per-pixel (space-varying) blur: eq. (1) of Carbajal et al. in gather form, with its transposes.

With ``r = K // 2`` and a padded image ``xp`` of size ``(H + 2r) x (W + 2r)`` (padded pixel ``(y + r, x + r)`` is image
pixel ``(y, x)``), the three bilinear maps used by :class:`~basicsr_blurfield.fields.KernelField` are

- gather:    ``out[n, c, y, x]  = sum_t k[n, t, y, x] * xp[n, c, y + i_t, x + j_t]``   (the blur),
- scatter:   ``zp[n, c, y + i_t, x + j_t] += k[n, t, y, x] * v[n, c, y, x]``         (its transpose in ``xp``),
- correlate: ``g[n, t, y, x]    = sum_c v[n, c, y, x] * xp[n, c, y + i_t, x + j_t]``   (its transpose in ``k``),

with tap ``t = i_t * K + j_t``. Each is a custom autograd function whose backward is made of the other two, so the
set is closed under differentiation (gradcheck and double backward work). Two engines evaluate them, both in row
tiles whose size is bounded, so memory is ``O(N*C*H*W + N*K*K*H*W)`` (image plus field), never the
``K*K``-times-image tensor of an ``F.unfold`` over the whole image:

- ``'taps'`` (CPU): in-place multiply-adds on shifted views of the padded image, one per tap and tile (the ``K*K``
  views of a tile come from one strided view), so a tile stays in cache across all taps. ``correlate`` covers a whole
  kernel row ``i`` per operation (``K`` taps as one strided view) and the channels by accumulation, so the kernel
  gradient is written in ``K``-tap slabs.
- ``'unfold'`` (other devices, where ``K*K`` small launches per tile cost more than the arithmetic): ``F.unfold`` /
  ``F.fold`` of a row tile of at most :data:`UNFOLD_ELEMENTS` unfolded values.

:data:`ENGINE` picks one (``'auto'``: by device); tests force either on CPU.

The kernel gradient (``correlate``'s output, ``N*K*K*H*W`` values: 333 MB at 360x640 with K=19) is a fresh buffer on
every backward, and on CPU the first write to each of its pages is a page fault; with 4 KiB pages the faults cost
more than the arithmetic. Outputs of at least :data:`ADVISE_BYTES` on CPU are therefore advised as transparent huge
pages (``madvise(MADV_HUGEPAGE)`` on their whole 2 MiB pages, what torch's opt-in ``THP_MEM_ALLOC_ENABLE=1`` does for
every large block), so that they fault once per 2 MiB. The advice is a hint: where the kernel or the platform
refuses it the buffer keeps ordinary pages, and values and memory are the same either way.
"""
import ctypes
import functools
import math
import mmap
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

ENGINES = ('auto', 'taps', 'unfold')
ENGINE = 'auto'
TILE_ELEMENTS = 1 << 18
UNFOLD_ELEMENTS = 1 << 26
HUGE_PAGE_BYTES = 1 << 21
ADVISE_BYTES = 1 << 25  # glibc serves blocks this large by a fresh mmap, so the advice ends with the buffer


def _geometry(kernels: Tensor) -> Tuple[int, int, int]:
    taps, height, width = (int(value) for value in kernels.shape[1:])  # plain ints, also under jit tracing
    size = math.isqrt(taps)
    assert size * size == taps, f'internal: {taps} taps is not a square'
    return size, height, width


def engine_for(tensor: Tensor) -> str:
    """The engine used for ``tensor``'s device: :data:`ENGINE`, or for ``'auto'`` ``'taps'`` on CPU and ``'unfold'``
    elsewhere.

    Raises:
        ValueError: if :data:`ENGINE` is not one of :data:`ENGINES`.
    """
    if ENGINE not in ENGINES:
        raise ValueError(f'fields._taps.ENGINE: expected one of {ENGINES}, got {ENGINE!r}')
    if ENGINE != 'auto':
        return ENGINE
    return 'taps' if tensor.device.type == 'cpu' else 'unfold'


def huge_page_range(address: int, nbytes: int) -> Tuple[int, int]:
    """``(start, length)`` of the whole :data:`HUGE_PAGE_BYTES` pages inside ``[address, address + nbytes)``; length 0
    when there are none."""
    start = -(-address // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    end = (address + nbytes) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
    return start, max(0, end - start)


@functools.lru_cache(maxsize=None)
def _huge_page_advice() -> Optional[Callable[[int, int], int]]:
    """``advise(start, length)``: libc's ``madvise(start, length, MADV_HUGEPAGE)``, or None where the platform has no
    such call (not Linux)."""
    advice = getattr(mmap, 'MADV_HUGEPAGE', None)
    madvise = getattr(ctypes.CDLL(None, use_errno=True), 'madvise', None) if advice is not None else None
    if madvise is None:
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return lambda start, length: madvise(start, length, advice)


def _empty(like: Tensor, shape: Sequence[int]) -> Tensor:
    """``like.new_empty(shape)``, advised as transparent huge pages when on CPU and at least :data:`ADVISE_BYTES`."""
    out = like.new_empty(shape)
    nbytes = out.numel() * out.element_size()
    advise = _huge_page_advice() if out.device.type == 'cpu' and nbytes >= ADVISE_BYTES else None
    if advise is not None:
        start, length = huge_page_range(out.data_ptr(), nbytes)
        if length:
            advise(start, length)  # a refusal (-1) leaves ordinary pages, nothing else changes
    return out


def _row_tiles(height: int, values_per_row: int, budget: int) -> List[Tuple[int, int]]:
    """``(top, bottom)`` row ranges of about ``budget`` values each (at least one row)."""
    rows = max(1, budget // values_per_row)
    return [(top, min(top + rows, height)) for top in range(0, height, rows)]


def _windows(padded: Tensor, size: int, top: int, bottom: int, width: int) -> List[Tensor]:
    """The ``K*K`` shifted windows of output rows ``[top, bottom)``, in tap order: views (N, C, rows, W) of
    ``padded[:, :, top + i:bottom + i, j:j + W]``, made from one strided view."""
    num, channels = padded.shape[:2]
    stride_n, stride_c, stride_h, stride_w = padded.stride()
    grid = padded.as_strided((size, size, num, channels, bottom - top, width),
                             (stride_h, stride_w, stride_n, stride_c, stride_h, stride_w),
                             padded.storage_offset() + top * stride_h)
    return [window for row in grid.unbind(0) for window in row.unbind(0)]


def _row_windows(padded: Tensor, size: int, row: int, top: int, bottom: int, width: int) -> Tensor:
    """The ``K`` windows of kernel row ``row`` for output rows ``[top, bottom)`` as one view (N, C, K, rows, W):
    entry ``[n, c, j, y, x]`` is ``padded[n, c, top + row + y, j + x]``."""
    num, channels = padded.shape[:2]
    stride_n, stride_c, stride_h, stride_w = padded.stride()
    return padded.as_strided((num, channels, size, bottom - top, width),
                             (stride_n, stride_c, stride_w, stride_h, stride_w),
                             padded.storage_offset() + (top + row) * stride_h)


def _unfold_tile(padded: Tensor, size: int, top: int, bottom: int, width: int) -> Tensor:
    """``F.unfold`` of the padded rows that output rows ``[top, bottom)`` read: (N, C, K*K, rows, W)."""
    num, channels = padded.shape[:2]
    columns = F.unfold(padded[:, :, top:bottom + size - 1], size)
    return columns.view(num, channels, size * size, bottom - top, width)


def _gather(padded: Tensor, kernels: Tensor) -> Tensor:
    size, height, width = _geometry(kernels)
    num, channels = padded.shape[:2]
    out = _empty(padded, (num, channels, height, width)).zero_()
    if engine_for(padded) == 'unfold':
        for top, bottom in _row_tiles(height, 2 * num * channels * size * size * width, UNFOLD_ELEMENTS):
            columns = _unfold_tile(padded, size, top, bottom, width)
            out[:, :, top:bottom] = (columns * kernels[:, None, :, top:bottom]).sum(2)
        return out
    for top, bottom in _row_tiles(height, num * channels * width, TILE_ELEMENTS):
        tile = out[:, :, top:bottom]
        tap_kernels = kernels[:, :, top:bottom].unsqueeze(2).unbind(1)
        for tap_kernel, window in zip(tap_kernels, _windows(padded, size, top, bottom, width)):
            tile.addcmul_(tap_kernel, window)
    return out


def _scatter(values: Tensor, kernels: Tensor) -> Tensor:
    size, height, width = _geometry(kernels)
    num, channels = values.shape[:2]
    padded = _empty(values, (num, channels, height + size - 1, width + size - 1)).zero_()
    if engine_for(values) == 'unfold':
        for top, bottom in _row_tiles(height, 2 * num * channels * size * size * width, UNFOLD_ELEMENTS):
            columns = kernels[:, None, :, top:bottom] * values[:, :, None, top:bottom]
            padded[:, :, top:bottom + size - 1] += F.fold(
                columns.reshape(num, channels * size * size, -1), (bottom - top + size - 1, width + size - 1), size)
        return padded
    for top, bottom in _row_tiles(height, num * channels * width, TILE_ELEMENTS):
        tile = values[:, :, top:bottom]
        tap_kernels = kernels[:, :, top:bottom].unsqueeze(2).unbind(1)
        for tap_kernel, window in zip(tap_kernels, _windows(padded, size, top, bottom, width)):
            window.addcmul_(tap_kernel, tile)
    return padded


def _correlate(values: Tensor, padded: Tensor, size: int) -> Tensor:
    num, channels, height, width = values.shape
    out = _empty(values, (num, size * size, height, width))
    if engine_for(values) == 'unfold':
        for top, bottom in _row_tiles(height, 2 * num * channels * size * size * width, UNFOLD_ELEMENTS):
            columns = _unfold_tile(padded, size, top, bottom, width)
            out[:, :, top:bottom] = (columns * values[:, :, None, top:bottom]).sum(1)
        return out
    for top, bottom in _row_tiles(height, num * size * width, TILE_ELEMENTS):
        tile = values[:, :, top:bottom].unsqueeze(2)
        for row in range(size):
            slab = out[:, row * size:(row + 1) * size, top:bottom]
            windows = _row_windows(padded, size, row, top, bottom, width)
            torch.mul(tile[:, 0], windows[:, 0], out=slab)
            for c in range(1, channels):
                slab.addcmul_(tile[:, c], windows[:, c])
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
