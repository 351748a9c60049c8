"""Shared conventions of the blur-field core: boundary handling, validation and the one kernel normaliser.

Boundary handling (the same in every representation): a tap that reads outside the image reads the padded value.
``'replicate'`` repeats the edge pixel, ``'reflect'`` mirrors about the edge pixel without repeating it (numpy
``reflect`` / torch ``F.pad(mode='reflect')``), ``'zeros'`` reads 0. The transpose of padding (``unpad_adjoint``)
adds every padded pixel back onto the pixel it was copied from, so adjoints stay exact at the borders.
"""
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

PADDING_MODES = ('replicate', 'reflect', 'zeros')
SUM_TOLERANCE = 1e-3
NEGATIVE_TOLERANCE = 1e-6


def check_padding(padding: str) -> str:
    """Returns ``padding`` if it is one of :data:`PADDING_MODES`, raises ``ValueError`` otherwise."""
    if not isinstance(padding, str) or padding not in PADDING_MODES:
        raise ValueError(f'padding: expected one of {PADDING_MODES}, got {padding!r}')
    return padding


def check_tensor(name: str, value, ndim: int, layout: str) -> Tensor:
    """Checks that ``value`` is a floating-point tensor with ``ndim`` dimensions.

    Args:
        name (str): argument name used in the error message.
        value: the object to check.
        ndim (int): expected number of dimensions.
        layout (str): expected layout in letters, e.g. ``'(N, K*K, H, W)'``.

    Returns:
        Tensor: ``value`` unchanged.

    Raises:
        TypeError: if ``value`` is not a floating-point tensor.
        ValueError: if it has the wrong number of dimensions.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f'{name}: expected a torch.Tensor {layout}, got {type(value).__name__}')
    if not value.is_floating_point():
        raise TypeError(f'{name}: expected a floating-point tensor {layout}, got dtype {value.dtype}')
    if value.dim() != ndim:
        raise ValueError(f'{name}: expected {ndim} dimensions {layout}, got shape {tuple(value.shape)}')
    return value


def check_kernel_size(kernel_size: int, height: int, width: int) -> int:
    """Checks that ``kernel_size`` is a positive odd int no larger than the image.

    Raises:
        ValueError: for even or non-positive sizes, or a kernel larger than the ``height x width`` image.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f'kernel_size: expected a positive odd int, got {kernel_size!r}')
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size: expected an odd size (the kernel has a centre tap), got {kernel_size}')
    if kernel_size > height or kernel_size > width:
        raise ValueError(f'kernel_size: expected a kernel no larger than the image ({height}x{width}), '
                         f'got {kernel_size}x{kernel_size}')
    return kernel_size


def check_normalized(name: str, values: Tensor, dim: Union[int, Sequence[int]]) -> None:
    """Checks that ``values`` is non-negative and sums to 1 over ``dim`` (tolerance :data:`SUM_TOLERANCE`).

    Raises:
        ValueError: naming the most negative entry or the worst sum.
    """
    with torch.no_grad():
        smallest = values.min().item()
        if smallest < -NEGATIVE_TOLERANCE:
            raise ValueError(f'{name}: expected non-negative values, got a minimum of {smallest:.3g} '
                             '(use normalize_kernels to clamp and renormalise)')
        error = (values.sum(dim) - 1).abs().max().item()
        if not error <= SUM_TOLERANCE:
            raise ValueError(f'{name}: expected values summing to 1 over dim {dim}, got a sum off by {error:.3g} '
                             '(use normalize_kernels to clamp and renormalise)')


def check_sample_image(name: str, image: Tensor, batch: int, height: int, width: int) -> Tensor:
    """Checks that an image ``(N, C, H, W)`` matches a field of batch ``N`` and size ``H x W``."""
    check_tensor(name, image, 4, '(N, C, H, W)')
    if image.shape[0] != batch or image.shape[2:] != (height, width):
        raise ValueError(f'{name}: expected shape ({batch}, C, {height}, {width}) to match the field, '
                         f'got {tuple(image.shape)}')
    return image


def check_points(points: Tensor, batch: int, height: int, width: int) -> Tensor:
    """Checks query points ``(P, 3)`` of integer ``(n, y, x)`` inside a field of batch ``N`` and size ``H x W``."""
    if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[1] != 3:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f'points: expected a (P, 3) tensor of (n, y, x), got {shape}')
    if points.is_floating_point() or points.is_complex() or points.dtype == torch.bool:
        raise TypeError(f'points: expected an integer (long) tensor of (n, y, x), got dtype {points.dtype}')
    upper = torch.tensor([batch, height, width], device=points.device)
    if points.numel() and (bool((points < 0).any()) or bool((points >= upper).any())):
        raise ValueError(f'points: expected 0 <= n < {batch}, 0 <= y < {height}, 0 <= x < {width}, '
                         f'got values in [{int(points.min())}, {int(points.max())}]')
    return points.long()


def normalize_kernels(kernels: Tensor, dim: Union[int, Sequence[int]] = -1, eps: float = 1e-12) -> Tensor:
    """The one kernel normaliser of the project: clamp at 0, then divide by the sum over ``dim``.

    Args:
        kernels (Tensor): any shape; e.g. ``(N, K*K, H, W)`` with ``dim=1`` or ``(P, K, K)`` with ``dim=(-2, -1)``.
        dim (int | tuple): the dimension(s) that make up one kernel.
        eps (float): lower bound of the divisor; an all-zero kernel stays all zero.

    Returns:
        Tensor: same shape, non-negative, summing to 1 over ``dim`` (unless all zero).
    """
    kernels = kernels.clamp(min=0)
    return kernels / kernels.sum(dim, keepdim=True).clamp_min(eps)


def source_index(size: int, radius: int, padding: str, device=None) -> Tensor:
    """Index of the image pixel each padded position copies (``padding`` in ``'replicate'`` / ``'reflect'``).

    Returns:
        Tensor: long ``(size + 2 * radius,)``; entry ``p`` is the source of padded position ``p - radius``.
    """
    pos = torch.arange(-radius, size + radius, device=device)
    if padding == 'replicate' or size == 1:
        return pos.clamp(0, size - 1)
    period = 2 * (size - 1)
    pos = pos.remainder(period)
    return torch.where(pos >= size, period - pos, pos)


def pad_image(image: Tensor, radius: int, padding: str) -> Tensor:
    """Pads ``radius`` pixels on every side (``'reflect'`` needs ``radius < min(H, W)``, which holds for kernels no
    larger than the image). Shape: (N, C, H, W) -> (N, C, H + 2r, W + 2r)."""
    if radius == 0:
        return image
    if padding == 'zeros':
        return F.pad(image, (radius, ) * 4)
    return F.pad(image, (radius, ) * 4, mode=padding)


def unpad_adjoint(padded: Tensor, radius: int, padding: str) -> Tensor:
    """Transpose of :func:`pad_image`: adds every padded pixel onto its source pixel.

    Shape: (N, C, H + 2r, W + 2r) -> (N, C, H, W). Differentiable.
    """
    if radius == 0:
        return padded
    height, width = padded.shape[-2] - 2 * radius, padded.shape[-1] - 2 * radius
    if padding == 'zeros':
        return padded[..., radius:radius + height, radius:radius + width]
    rows = source_index(height, radius, padding, padded.device)
    cols = source_index(width, radius, padding, padded.device)
    out = padded.new_zeros(padded.shape[:-2] + (height, padded.shape[-1])).index_add(-2, rows, padded)
    return out.new_zeros(out.shape[:-1] + (width, )).index_add(-1, cols, out)
