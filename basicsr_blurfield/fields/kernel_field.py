"""Per-pixel kernel field: one K x K kernel per pixel, eq. (1) of Carbajal et al. in gather (correlation) form.

``blurry[n, c, y, x] = sum_{i,j} kernels[n, i*K + j, y, x] * sharp[n, c, y + i - r, x + j - r]``, ``r = K // 2``, each
kernel non-negative and summing to 1, taps outside the image reading the padded value. Blur and adjoint are the
tap-loop autograd functions of :mod:`basicsr_blurfield.fields._taps` (memory ``O(N*C*H*W + field)``).
:meth:`KernelField.smoothed` averages the kernels over neighbouring pixels (a spatial Gaussian) and
:meth:`KernelField.flipped` / :meth:`KernelField.transposed` give the field of mirrored / transposed images: the
pieces of our test-time averaging of estimated fields (docs/estimation.md); not in the papers.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import (check_kernel_size, check_normalized, check_points, check_sample_image, check_tensor, pad_image,
                      unpad_adjoint)
from ._taps import TapGather, TapScatter
from .base import BlurField


def resize_taps(kernels: Tensor, kernel_size: int) -> Tensor:
    """Zero-pads centred kernels to a larger odd size.

    Args:
        kernels (Tensor): (N, K*K, H, W).
        kernel_size (int): new odd size K' >= K.

    Returns:
        Tensor: (N, K'*K', H, W), the same kernels centred in the larger grid.
    """
    num, taps, height, width = kernels.shape
    size = math.isqrt(taps)
    if kernel_size < size:
        raise ValueError(f'kernel_size: expected at least the field\'s own size {size}, got {kernel_size}')
    margin = (kernel_size - size) // 2
    grid = kernels.reshape(num, size, size, height * width)
    grid = F.pad(grid.permute(0, 3, 1, 2), (margin, ) * 4).permute(0, 2, 3, 1)
    return grid.reshape(num, kernel_size * kernel_size, height, width)


def gaussian_taps(sigma: float, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` > 0 on ``[-ceil(3 sigma), ceil(3 sigma)]``: (2R+1,)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    weights = torch.exp(-offsets**2 / (2 * sigma**2))
    return weights / weights.sum()


def smooth_planes(planes: Tensor, sigma: float) -> Tensor:
    """Separable spatial Gaussian of every channel, replicate borders: (N, C, H, W) -> (N, C, H, W).

    The weights at each output pixel are non-negative and sum to 1, so a field of normalised kernels stays normalised.
    """
    channels = planes.shape[1]
    weights = gaussian_taps(sigma, planes.dtype, planes.device)
    radius = weights.numel() // 2
    row = weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    column = weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode='replicate'), row, groups=channels)
    return F.conv2d(F.pad(planes, (0, 0, radius, radius), mode='replicate'), column, groups=channels)


class KernelField(BlurField):
    """One kernel per pixel.

    Args:
        kernels (Tensor): (N, K*K, H, W) in gather orientation, tap ``i*K + j`` is offset ``(i - r, j - r)``;
            non-negative, summing to 1 over dim 1. K odd, K <= H and K <= W. Kept contiguous (a copy if it is not).
        padding (str): boundary handling, one of ``'replicate'`` (default), ``'reflect'``, ``'zeros'``.
        check (bool): validate non-negativity and normalisation (a reduction over the field). Default: True.

    Shape:
        blur / adjoint: (N, C, H, W) -> (N, C, H, W), any C.

    Raises:
        ValueError / TypeError: wrong shape or dtype, non-square tap count, even K, K larger than the image,
            negative or non-normalised kernels, unknown padding.
    """

    def __init__(self, kernels: Tensor, padding: str = 'replicate', check: bool = True):
        check_tensor('kernels', kernels, 4, '(N, K*K, H, W)')
        num, taps, height, width = (int(value) for value in kernels.shape)  # ints also under jit tracing
        size = math.isqrt(taps)
        if size * size != taps:
            raise ValueError(f'kernels: expected (N, K*K, H, W) with a square number of taps, got {taps} taps '
                             f'in shape {tuple(kernels.shape)}')
        check_kernel_size(size, height, width)
        super().__init__(padding, num, height, width)
        if check:
            check_normalized('kernels', kernels, 1)
        # the tap engines read one (H, W) plane per tap: a channels-last field (a network's decode) runs ~30x slower,
        # so it is copied to the contiguous layout once here rather than strided through at every blur / adjoint
        self.kernels = kernels.contiguous()
        self.kernel_size = size

    def tensors(self) -> Dict[str, Tensor]:
        return {'kernels': self.kernels}

    def _check_image(self, name: str, image: Tensor) -> Tensor:
        check_sample_image(name, image, self.batch, self.height, self.width)
        if image.dtype != self.kernels.dtype:
            raise TypeError(f'{name}: expected dtype {self.kernels.dtype} like the field, got {image.dtype}')
        return image

    def blur(self, sharp: Tensor) -> Tensor:
        """Blurs ``sharp`` (N, C, H, W) -> (N, C, H, W); differentiable in the image and the kernels."""
        self._check_image('sharp', sharp)
        return TapGather.apply(pad_image(sharp, self.kernel_size // 2, self.padding), self.kernels)

    def adjoint(self, image: Tensor) -> Tensor:
        """Exact transpose of :meth:`blur`: (N, C, H, W) -> (N, C, H, W); differentiable."""
        self._check_image('image', image)
        return unpad_adjoint(TapScatter.apply(image, self.kernels), self.kernel_size // 2, self.padding)

    def dense(self, kernel_size: Optional[int] = None) -> 'KernelField':
        """Returns this field, zero-padded to ``kernel_size`` (odd, >= K) when given."""
        if kernel_size is None or kernel_size == self.kernel_size:
            return self
        check_kernel_size(kernel_size, self.height, self.width)
        return KernelField(resize_taps(self.kernels, kernel_size), self.padding, check=False)

    def smoothed(self, sigma: float) -> 'KernelField':
        """This field with every kernel replaced by the Gaussian-weighted mean of its neighbours' kernels.

        ``k'_p = sum_q g_sigma(p - q) k_q`` over pixels ``q`` (replicate borders, separable, differentiable): the
        kernels stay non-negative and normalised. A spatial prior for estimated fields, whose errors vary faster than
        real blur (measured on the estimation benchmark, docs/estimation.md).

        Args:
            sigma (float): standard deviation in pixels; 0 returns this field.

        Returns:
            KernelField: same shape, padding and kernel size.
        """
        if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f'sigma: expected a finite number of pixels >= 0, got {sigma!r}')
        if sigma == 0:
            return self
        return KernelField(smooth_planes(self.kernels, float(sigma)), self.padding, check=False)

    def flipped(self, horizontal: bool = False, vertical: bool = False) -> 'KernelField':
        """The field of the mirrored images: ``field.flipped(h, v).blur(flip(x)) == flip(field.blur(x))``.

        Each kernel moves to the mirrored pixel and is mirrored itself (tap ``(i, j)`` to ``(i, K-1-j)`` for a
        horizontal flip, to ``(K-1-i, j)`` for a vertical one); exact at the borders for every padding. Its own inverse.
        """
        dims = ((2, 4) if horizontal else ()) + ((1, 3) if vertical else ())
        if not dims:
            return self
        grid = self.kernels.view(self.batch, self.kernel_size, self.kernel_size, self.height, self.width).flip(dims)
        return KernelField(grid.reshape(self.kernels.shape), self.padding, check=False)

    def transposed(self) -> 'KernelField':
        """The field of the transposed images (H and W swapped): ``field.transposed().blur(x.mT) == field.blur(x).mT``.

        Each kernel moves to the transposed pixel and is transposed (tap ``(i, j)`` to ``(j, i)``). Its own inverse.
        """
        grid = self.kernels.view(self.batch, self.kernel_size, self.kernel_size, self.height, self.width)
        grid = grid.permute(0, 2, 1, 4, 3)
        return KernelField(grid.reshape(self.batch, -1, self.width, self.height), self.padding, check=False)

    def kernels_at(self, points: Tensor) -> Tensor:
        """Kernels at ``points`` (P, 3) long as (n, y, x) -> (P, K, K)."""
        n, y, x = check_points(points, self.batch, self.height, self.width).to(self.kernels.device).unbind(1)
        return self.kernels[n, :, y, x].reshape(-1, self.kernel_size, self.kernel_size)
