"""Per-pixel kernel field: one K x K kernel per pixel, eq. (1) of Carbajal et al. in gather (correlation) form.

``blurry[n, c, y, x] = sum_{i,j} kernels[n, i*K + j, y, x] * sharp[n, c, y + i - r, x + j - r]``, ``r = K // 2``, each
kernel non-negative and summing to 1, taps outside the image reading the padded value. Blur and adjoint are the
tap-loop autograd functions of :mod:`basicsr_blurfield.fields._taps` (memory ``O(N*C*H*W + field)``).
"""
import math
from typing import Dict, Optional

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

    def kernels_at(self, points: Tensor) -> Tensor:
        """Kernels at ``points`` (P, 3) long as (n, y, x) -> (P, K, K)."""
        n, y, x = check_points(points, self.batch, self.height, self.width).to(self.kernels.device).unbind(1)
        return self.kernels[n, :, y, x].reshape(-1, self.kernel_size, self.kernel_size)
