"""Basis field: eq. (2) of Carbajal et al., ``v_p = <u_window(p), sum_b m_b[p] k_b>``.

Gather (correlation) form: ``blurry = sum_b mixing_b * (basis_b correlated with the padded sharp image)``, i.e. the
per-pixel kernel ``k_p = sum_b mixing[n, b, p] * basis[n, b]``. Each ``basis[n, b]`` is non-negative and sums to 1,
the mixing weights are non-negative and sum to 1 over ``b`` (softmax in the paper), so every ``k_p`` is normalised.

Two exact evaluations, picked by a flop estimate (``method='auto'``):
- ``'direct'``: one grouped convolution per basis kernel, accumulated in the image domain (memory ``O(N*C*H*W)``).
- ``'fft'``: one FFT of the padded image, then for one basis kernel and one channel at a time the product of the
  spectra and its inverse FFT, accumulated into the output with its mixing map, in reused one-plane buffers (a custom
  autograd function whose backward recomputes the filtered images instead of keeping ``B`` of them). Memory is the
  image spectrum plus a few ``N`` FFT planes, not ``B * C`` of them. Mixing happens after filtering, so the forward
  needs one inverse FFT per ``b`` and channel; the adjoint ``A^T y = sum_b basis_b (*) (mixing_b y)`` sums its ``B``
  terms in the frequency domain and inverts once.
The FFT size is the padded size rounded up to a 5-smooth length; it is at least ``H + K - 1`` so no circular wrap
reaches the output. A field whose basis needs no gradient keeps the basis spectra of its last FFT size (``N*B`` planes)
and reuses them in every later blur and adjoint (an iterative solver applies one field many times).
"""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._common import (check_kernel_size, check_normalized, check_points, check_sample_image, check_tensor, pad_image,
                      unpad_adjoint)
from .base import BlurField
from .kernel_field import KernelField, resize_taps

METHODS = ('auto', 'fft', 'direct')


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


def _fft_size(height: int, width: int) -> Tuple[int, int]:
    return fast_fft_length(height), fast_fft_length(width)


class _FFTBasisBlur(torch.autograd.Function):
    """``out = sum_b mixing_b * (basis_b correlated with xp)``, one basis kernel and one channel at a time in the
    frequency domain, in reused one-plane buffers.

    Shapes: padded (N, C, H+K-1, W+K-1), basis (N, B, K, K), mixing (N, B, H, W) -> (N, C, H, W). With ``X``, ``S_b``,
    ``G_b`` the zero-padded spectra of ``xp``, ``basis_b`` and ``mixing_b * grad``, the backward is
    ``grad_xp = F^-1(sum_b G_b S_b)``, ``grad_basis_b = F^-1(sum_c X conj(G_b))[:K, :K]`` and
    ``grad_mixing_b = sum_c grad * F^-1(X conj(S_b))`` (no circular wrap: the FFT size is at least ``H + K - 1``).
    """

    @staticmethod
    def forward(ctx, padded: Tensor, basis: Tensor, mixing: Tensor, basis_spectra: Optional[Tensor] = None) -> Tensor:
        """``basis_spectra`` (N, B, Hf, Wf // 2 + 1), optional: ``rfft2(basis)`` at the FFT size, when already known."""
        ctx.save_for_backward(padded, basis, mixing)
        num, channels = padded.shape[:2]
        height, width = mixing.shape[2:]
        fft_size = _fft_size(*padded.shape[2:])
        spectrum = torch.fft.rfft2(padded, s=fft_size)
        product, filtered = torch.empty_like(spectrum[:, :1]), padded.new_empty((num, 1) + fft_size)
        out = padded.new_zeros((num, channels, height, width))
        for b in range(basis.shape[1]):
            if basis_spectra is None:
                basis_spectrum = torch.fft.rfft2(basis[:, b, None], s=fft_size).conj_physical_()
            else:
                basis_spectrum = basis_spectra[:, b, None].conj()
            for c in range(channels):
                torch.mul(spectrum[:, c:c + 1], basis_spectrum, out=product)
                torch.fft.irfft2(product, s=fft_size, out=filtered)
                out[:, c:c + 1].addcmul_(mixing[:, b, None], filtered[..., :height, :width])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        padded, basis, mixing = ctx.saved_tensors
        need_padded, need_basis, need_mixing = ctx.needs_input_grad[:3]
        num, channels = padded.shape[:2]
        height, width = mixing.shape[2:]
        size = basis.shape[-1]
        fft_size = _fft_size(*padded.shape[2:])
        spectrum = torch.fft.rfft2(padded, s=fft_size)
        product, filtered = torch.empty_like(spectrum[:, :1]), padded.new_empty((num, 1) + fft_size)
        weighted, correlation = grad.new_empty((num, 1, height, width)), torch.empty_like(product)
        total = torch.zeros_like(spectrum) if need_padded else None
        grad_basis = basis.new_empty(basis.shape) if need_basis else None
        grad_mixing = mixing.new_zeros(mixing.shape) if need_mixing else None
        for b in range(basis.shape[1]):
            basis_spectrum = torch.fft.rfft2(basis[:, b, None], s=fft_size)
            correlation.zero_()
            for c in range(channels):
                if need_padded or need_basis:
                    torch.mul(grad[:, c:c + 1], mixing[:, b, None], out=weighted)
                    weighted_spectrum = torch.fft.rfft2(weighted, s=fft_size)
                    if need_padded:
                        total[:, c:c + 1].addcmul_(weighted_spectrum, basis_spectrum)
                    if need_basis:
                        correlation.addcmul_(spectrum[:, c:c + 1], weighted_spectrum.conj())
                if need_mixing:
                    torch.mul(spectrum[:, c:c + 1], basis_spectrum.conj(), out=product)
                    torch.fft.irfft2(product, s=fft_size, out=filtered)
                    grad_mixing[:, b:b + 1].addcmul_(grad[:, c:c + 1], filtered[..., :height, :width])
            if need_basis:
                grad_basis[:, b] = torch.fft.irfft2(correlation[:, 0], s=fft_size)[:, :size, :size]
        grad_padded = None
        if need_padded:
            grad_padded = torch.fft.irfft2(total, s=fft_size)[..., :padded.shape[2], :padded.shape[3]]
        return grad_padded, grad_basis, grad_mixing, None


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
        self._spectra = None  # (basis, (fft size, basis version), spectra) of the last FFT blur / adjoint

    def basis_spectra(self, fft_size: Tuple[int, int]) -> Tensor:
        """``rfft2`` of the zero-padded basis kernels (N, B, Hf, Wf // 2 + 1) for ``fft_size = (Hf, Wf)``.

        Kept on the field and reused while the FFT size and the basis (its in-place version) stay the same; a basis
        that requires a gradient is transformed anew at every call (with autograd, nothing is kept).
        """
        if self.basis.requires_grad:
            return torch.fft.rfft2(self.basis, s=fft_size)
        key = (tuple(fft_size), self.basis._version)
        if self._spectra is None or self._spectra[0] is not self.basis or self._spectra[1] != key:
            self._spectra = (self.basis, key, torch.fft.rfft2(self.basis, s=fft_size))
        return self._spectra[2]

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

    def blur(self, sharp: Tensor, method: str = 'auto') -> Tensor:
        """Blurs ``sharp`` (N, C, H, W) -> (N, C, H, W); ``method`` in ``('auto', 'fft', 'direct')``."""
        method = self._prepare('sharp', sharp, method)
        padded = pad_image(sharp, self.kernel_size // 2, self.padding)
        num, channels, height, width = sharp.shape
        if method == 'direct':
            out = sharp.new_zeros(sharp.shape)
            stacked = padded.reshape(1, num * channels, *padded.shape[2:])
            for b in range(self.num_basis):
                weight = self.basis[:, b, None, None].expand(num, channels, 1, -1, -1).flatten(0, 1)
                filtered = F.conv2d(stacked, weight, groups=num * channels).view(num, channels, height, width)
                out = out + self.mixing[:, b, None] * filtered
            return out
        spectra = None if self.basis.requires_grad else self.basis_spectra(_fft_size(*padded.shape[2:]))
        return _FFTBasisBlur.apply(padded, self.basis, self.mixing, spectra)

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
        fft_size = _fft_size(*padded_size)
        spectra = self.basis_spectra(fft_size)
        total = 0
        for b in range(self.num_basis):
            weighted = torch.fft.rfft2(self.mixing[:, b, None] * image, s=fft_size)
            total = total + weighted * spectra[:, b, None]
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
