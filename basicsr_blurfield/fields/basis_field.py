"""Basis field: eq. (2) of Carbajal et al., ``v_p = <u_window(p), sum_b m_b[p] k_b>``.

Gather (correlation) form: ``blurry = sum_b mixing_b * (basis_b correlated with the padded sharp image)``, i.e. the
per-pixel kernel ``k_p = sum_b mixing[n, b, p] * basis[n, b]``. Each ``basis[n, b]`` is non-negative and sums to 1,
the mixing weights are non-negative and sum to 1 over ``b`` (softmax in the paper), so every ``k_p`` is normalised.

Two exact evaluations, picked by a flop estimate (``method='auto'``):
- ``'direct'``: one grouped convolution per basis kernel, accumulated in the image domain (memory ``O(N*C*H*W)``).
- ``'fft'``: one FFT of the padded image, products with the ``B`` kernel spectra, inverse FFTs in chunks of ``b``.
  Mixing happens after filtering, so the forward needs one inverse FFT per ``b``; the adjoint
  ``A^T y = sum_b basis_b (*) (mixing_b y)`` sums its ``B`` terms in the frequency domain and inverts once.
The FFT size is the padded size rounded up to a 5-smooth length; it is at least ``H + K - 1`` so no circular wrap
reaches the output.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import (check_kernel_size, check_normalized, check_points, check_sample_image, check_tensor, pad_image,
                      unpad_adjoint)
from .base import BlurField
from .kernel_field import KernelField, resize_taps

METHODS = ('auto', 'fft', 'direct')
_CHUNK_ELEMENTS = 1 << 24


def fast_fft_length(size: int) -> int:
    """Smallest integer ``>= size`` whose prime factors are 2, 3 and 5."""
    best = 1 << max(size - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            length = power35
            while length < size:
                length *= 2
            best = min(best, length)
            power35 *= 3
        power5 *= 5
    return best


def choose_method(height: int, width: int, kernel_size: int, num_basis: int) -> str:
    """Picks ``'fft'`` or ``'direct'`` from a multiply-add estimate per output pixel.

    Direct costs ``B * K * K``; FFT costs about ``(B + 1) * 3 * log2(Hf * Wf) * Hf * Wf / (H * W)`` (one transform per
    basis kernel plus the image, ~3 log2 flops per point for a real 2-D FFT).
    """
    padded_h, padded_w = fast_fft_length(height + kernel_size - 1), fast_fft_length(width + kernel_size - 1)
    area = padded_h * padded_w
    fft_cost = (num_basis + 1) * 3 * math.log2(area) * area / (height * width)
    return 'fft' if num_basis * kernel_size * kernel_size > fft_cost else 'direct'


class BasisField(BlurField):
    """B basis kernels per image mixed per pixel.

    Args:
        basis (Tensor): (N, B, K, K) gather-form kernels, non-negative, each summing to 1; K odd, K <= H, W.
        mixing (Tensor): (N, B, H, W), non-negative, summing to 1 over dim 1.
        padding (str): boundary handling, one of ``'replicate'`` (default), ``'reflect'``, ``'zeros'``.
        check (bool): validate non-negativity and normalisation. Default: True.

    Shape:
        blur / adjoint: (N, C, H, W) -> (N, C, H, W), any C.
    """

    def __init__(self, basis: Tensor, mixing: Tensor, padding: str = 'replicate', check: bool = True):
        check_tensor('basis', basis, 4, '(N, B, K, K)')
        check_tensor('mixing', mixing, 4, '(N, B, H, W)')
        num, num_basis, size, size_w = (int(value) for value in basis.shape)  # ints under jit tracing
        if size != size_w:
            raise ValueError(f'basis: expected square kernels (N, B, K, K), got {tuple(basis.shape)}')
        if mixing.shape[:2] != basis.shape[:2]:
            raise ValueError(f'mixing: expected ({num}, {num_basis}, H, W) to match basis {tuple(basis.shape)}, '
                             f'got {tuple(mixing.shape)}')
        if mixing.dtype != basis.dtype or mixing.device != basis.device:
            raise TypeError(f'mixing: expected dtype {basis.dtype} on {basis.device} like basis, '
                            f'got {mixing.dtype} on {mixing.device}')
        height, width = (int(value) for value in mixing.shape[2:])
        check_kernel_size(size, height, width)
        super().__init__(padding, num, height, width)
        if check:
            check_normalized('basis', basis, (2, 3))
            check_normalized('mixing', mixing, 1)
        self.basis, self.mixing = basis, mixing
        self.kernel_size, self.num_basis = size, num_basis

    def tensors(self) -> Dict[str, Tensor]:
        return {'basis': self.basis, 'mixing': self.mixing}

    def _prepare(self, name: str, image: Tensor, method: str) -> str:
        check_sample_image(name, image, self.batch, self.height, self.width)
        if image.dtype != self.basis.dtype:
            raise TypeError(f'{name}: expected dtype {self.basis.dtype} like the field, got {image.dtype}')
        if method not in METHODS:
            raise ValueError(f'method: expected one of {METHODS}, got {method!r}')
        if method == 'auto':
            return choose_method(self.height, self.width, self.kernel_size, self.num_basis)
        return method

    def _spectra(self, fft_size) -> Tensor:
        """Zero-padded basis spectra: (N, B, Hf, Wf // 2 + 1) complex."""
        return torch.fft.rfft2(self.basis, s=fft_size)

    def blur(self, sharp: Tensor, method: str = 'auto') -> Tensor:
        """Blurs ``sharp`` (N, C, H, W) -> (N, C, H, W); ``method`` in ``('auto', 'fft', 'direct')``."""
        method = self._prepare('sharp', sharp, method)
        padded = pad_image(sharp, self.kernel_size // 2, self.padding)
        num, channels, height, width = sharp.shape
        out = sharp.new_zeros(sharp.shape)
        if method == 'direct':
            stacked = padded.reshape(1, num * channels, *padded.shape[2:])
            for b in range(self.num_basis):
                weight = self.basis[:, b, None, None].expand(num, channels, 1, -1, -1).flatten(0, 1)
                filtered = F.conv2d(stacked, weight, groups=num * channels).view(num, channels, height, width)
                out = out + self.mixing[:, b, None] * filtered
            return out
        fft_size = (fast_fft_length(padded.shape[2]), fast_fft_length(padded.shape[3]))
        image_spectrum = torch.fft.rfft2(padded, s=fft_size)
        basis_spectra = self._spectra(fft_size).conj()
        chunk = max(1, _CHUNK_ELEMENTS // (num * channels * fft_size[0] * fft_size[1]))
        for start in range(0, self.num_basis, chunk):
            spectra = image_spectrum[:, None] * basis_spectra[:, start:start + chunk, None]
            filtered = torch.fft.irfft2(spectra, s=fft_size)[..., :height, :width]
            out = out + (self.mixing[:, start:start + chunk, None] * filtered).sum(1)
        return out

    def adjoint(self, image: Tensor, method: str = 'auto') -> Tensor:
        """Exact transpose of :meth:`blur`: (N, C, H, W) -> (N, C, H, W); ``method`` as in :meth:`blur`."""
        method = self._prepare('image', image, method)
        num, channels, height, width = image.shape
        radius = self.kernel_size // 2
        padded_size = (height + 2 * radius, width + 2 * radius)
        if method == 'direct':
            padded = image.new_zeros((1, num * channels) + padded_size)
            for b in range(self.num_basis):
                weight = self.basis[:, b, None, None].expand(num, channels, 1, -1, -1).flatten(0, 1)
                weighted = (self.mixing[:, b, None] * image).reshape(1, num * channels, height, width)
                padded = padded + F.conv_transpose2d(weighted, weight, groups=num * channels)
            return unpad_adjoint(padded.view(num, channels, *padded_size), radius, self.padding)
        fft_size = (fast_fft_length(padded_size[0]), fast_fft_length(padded_size[1]))
        basis_spectra = self._spectra(fft_size)
        total = None
        chunk = max(1, _CHUNK_ELEMENTS // (num * channels * fft_size[0] * fft_size[1]))
        for start in range(0, self.num_basis, chunk):
            weighted = self.mixing[:, start:start + chunk, None] * image[:, None]
            term = (torch.fft.rfft2(weighted, s=fft_size) * basis_spectra[:, start:start + chunk, None]).sum(1)
            total = term if total is None else total + term
        padded = torch.fft.irfft2(total, s=fft_size)[..., :padded_size[0], :padded_size[1]]
        return unpad_adjoint(padded, radius, self.padding)

    def dense(self, kernel_size: Optional[int] = None) -> KernelField:
        """Per-pixel kernels ``sum_b mixing_b basis_b`` as a :class:`KernelField` (zero-padded to ``kernel_size``)."""
        kernels = torch.einsum('nbt,nbhw->nthw', self.basis.flatten(2), self.mixing)
        if kernel_size is not None and kernel_size != self.kernel_size:
            check_kernel_size(kernel_size, self.height, self.width)
            kernels = resize_taps(kernels, kernel_size)
        return KernelField(kernels, self.padding, check=False)

    def kernels_at(self, points: Tensor) -> Tensor:
        """Kernels at ``points`` (P, 3) long as (n, y, x) -> (P, K, K)."""
        n, y, x = check_points(points, self.batch, self.height, self.width).to(self.basis.device).unbind(1)
        weights = self.mixing[n, :, y, x]
        return torch.einsum('pb,pbij->pij', weights, self.basis[n])
