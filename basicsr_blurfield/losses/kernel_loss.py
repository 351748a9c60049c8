"""Kernel loss, eq. (4) of Carbajal et al.: L = sum_p w_p || k_p - k_p^GT ||_p over pixels p.

``k_p`` is the predicted per-pixel kernel (for a basis field ``sum_b m_b[p] k^b``, eq. (2)) and ``k_p^GT`` the
ground-truth one, both in gather form; the pixel weights ``w_p`` are the dataset's (inverse segment size, §3.3). The
norm order switches from 2 to 1 at a given iteration, the paper's schedule (§3.4: L2 for a first approximation, then
the sharper L1). :func:`observable_weight` gives pixel weights that keep the loss where blur is observable (textured
windows of the sharp image: a flat window re-blurs the same under any kernel). Per-pixel kernels are never all expanded
at once: they are read through the field's ``kernels_at`` in tiles of pixels (each tile recomputed in the backward
pass, so memory is one tile of K*K kernels), optionally on a random subset of pixels per image. The reduction is the
lead's :func:`~basicsr_blurfield.losses.reblur_loss.weighted_distance` (weighted mean ``sum(w d) / sum(w)``).

Reference: Carbajal et al., eq. (4), §3.4. Written from the paper.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from basicsr.utils.registry import LOSS_REGISTRY
from basicsr_blurfield.fields import BasisField
from basicsr_blurfield.losses.reblur_loss import weighted_distance

__all__ = [
    'KernelLoss', 'constant_field', 'field_size', 'kernel_distance', 'mean_kernel', 'observable_weight', 'textured_mask'
]

_ORDERS = (1, 2)
_REDUCTIONS = ('none', 'mean', 'sum')


def textured_mask(sharp: torch.Tensor, kernel_size: int, threshold: float = 0.02) -> torch.Tensor:
    """Pixels where blur is observable: the mean squared grey gradient over the K x K window is >= ``threshold**2``.

    Args:
        sharp (Tensor): (N, C, H, W) in [0, 1].
        kernel_size (int): K, the window side (odd).
        threshold (float): gradient magnitude, image units per pixel. Default: 0.02.

    Returns:
        Tensor: (N, 1, H, W) bool.
    """
    if sharp.dim() != 4:
        raise ValueError(f'sharp: expected (N, C, H, W), got {tuple(sharp.shape)}')
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size: expected a positive odd int, got {kernel_size}')
    grey = sharp.mean(1, keepdim=True)
    gx = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1))
    energy = F.avg_pool2d(F.pad(gx * gx + gy * gy, (kernel_size // 2, ) * 4, mode='replicate'), kernel_size, 1)
    return energy >= threshold * threshold


def observable_weight(sharp: torch.Tensor, kernel_size: int, threshold: float = 0.02,
                      floor: float = 0.05) -> torch.Tensor:
    """Kernel-loss pixel weights: 1 on :func:`textured_mask` pixels, ``floor`` elsewhere (so no batch is all zero).

    Returns:
        Tensor: (N, 1, H, W) float, in ``{floor, 1}``.
    """
    if not 0 <= floor <= 1:
        raise ValueError(f'floor: expected a weight in [0, 1], got {floor}')
    return textured_mask(sharp, kernel_size, threshold).to(sharp.dtype) * (1 - floor) + floor


def constant_field(kernel: torch.Tensor, height: int, width: int) -> BasisField:
    """The uniform field of one (K, K) kernel (non-negative, sum 1) on an H x W image, as a one-kernel basis."""
    return BasisField(kernel[None, None].float(), torch.ones(1, 1, height, width), check=False)


def mean_kernel(field) -> torch.Tensor:
    """Mean per-pixel kernel (K, K) of a batch-1 field (basis fields exactly, others through ``dense``)."""
    if isinstance(field, BasisField):
        return torch.einsum('b,bij->ij', field.mixing[0].mean((1, 2)), field.basis[0])
    dense = field.dense()
    return dense.kernels[0].mean((1, 2)).view(dense.kernel_size, dense.kernel_size)


def field_size(field) -> tuple:
    """Batch size and image size ``(N, H, W)`` of a blur field."""
    if not all(hasattr(field, name) for name in ('batch', 'height', 'width', 'kernels_at')):
        raise TypeError(f'expected a blur field (KernelField, BasisField or OffsetField), got {type(field).__name__}')
    return field.batch, field.height, field.width


def _center_pad(kernels: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pads (P, K, K) kernels to (P, size, size) around the centre tap (the sum is unchanged)."""
    pad = (size - kernels.shape[-1]) // 2
    return F.pad(kernels, (pad, ) * 4) if pad else kernels


def kernel_distance(pred, target, points: torch.Tensor, p: int) -> torch.Tensor:
    """Lp distance between the per-pixel kernels of two fields at the given pixels.

    Kernels of different odd sizes are compared on the larger grid (the smaller is zero-padded around its centre).

    Args:
        pred: blur field with ``kernels_at`` (differentiable for the predicted field).
        target: blur field with ``kernels_at`` (the ground truth).
        points (Tensor): (P, 3) long, (n, y, x).
        p (int): 1 or 2.

    Returns:
        Tensor: (P,), ``(sum_ij |k_pred[i, j] - k_gt[i, j]|^p)^(1/p)``.
    """
    k_pred, k_gt = pred.kernels_at(points), target.kernels_at(points)
    size = max(k_pred.shape[-1], k_gt.shape[-1])
    diff = (_center_pad(k_pred, size) - _center_pad(k_gt.to(k_pred.dtype), size)).flatten(1)
    if p == 1:
        return diff.abs().sum(1)
    # the epsilon keeps the gradient finite where the kernels coincide
    return torch.sqrt((diff * diff).sum(1) + 1e-12)


@LOSS_REGISTRY.register()
class KernelLoss(nn.Module):
    """Weighted Lp distance between predicted and ground-truth per-pixel kernels (eq. (4)), tiled.

    Args:
        loss_weight (float): multiplier. Default: 1.0.
        p (int): norm order at the start of training, 1 or 2. Default: 2.
        switch_iter (int, optional): from this iteration on (``current_iter >= switch_iter``) the order is
            ``p_after_switch``; None never switches. Default: None.
        p_after_switch (int): order after ``switch_iter``, 1 or 2. Default: 1.
        num_samples (int, optional): pixels drawn at random (with replacement) per image; None uses every pixel.
            Default: None.
        tile_size (int): pixels whose kernels are expanded at once. Default: 1024.
        reduction (str): 'mean' (weighted mean over pixels), 'sum' or 'none'. Default: 'mean'.

    Shape:
        pred, target: blur fields with N samples of size H x W (any representation with ``kernels_at``).
        weight: optional (N, 1, H, W) non-negative pixel weights.
        Output: scalar; for 'none' (N, 1, H, W) with every pixel, (N, num_samples) with sampling.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 p: int = 2,
                 switch_iter: Optional[int] = None,
                 p_after_switch: int = 1,
                 num_samples: Optional[int] = None,
                 tile_size: int = 1024,
                 reduction: str = 'mean'):
        super().__init__()
        for name, order in (('p', p), ('p_after_switch', p_after_switch)):
            if order not in _ORDERS:
                raise ValueError(f'{name}: expected one of {list(_ORDERS)}, got {order!r}')
        if reduction not in _REDUCTIONS:
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: {list(_REDUCTIONS)}')
        if num_samples is not None and int(num_samples) < 1:
            raise ValueError(f'num_samples: expected a positive int or None, got {num_samples!r}')
        if int(tile_size) < 1:
            raise ValueError(f'tile_size: expected a positive int, got {tile_size!r}')
        self.loss_weight = float(loss_weight)
        self.p, self.switch_iter, self.p_after_switch = int(p), switch_iter, int(p_after_switch)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.tile_size, self.reduction = int(tile_size), reduction

    def order_at(self, current_iter: Optional[int]) -> int:
        """Norm order in use at ``current_iter`` (the initial order when the iteration is unknown)."""
        if self.switch_iter is not None and current_iter is not None and current_iter >= self.switch_iter:
            return self.p_after_switch
        return self.p

    def _points(self, batch: int, height: int, width: int, device, generator) -> torch.Tensor:
        if self.num_samples is None:
            n, y, x = torch.meshgrid(torch.arange(batch), torch.arange(height), torch.arange(width), indexing='ij')
            return torch.stack([n.flatten(), y.flatten(), x.flatten()], 1).to(device)
        n = torch.arange(batch).repeat_interleave(self.num_samples)
        flat = torch.randint(height * width, (batch * self.num_samples, ), generator=generator)
        return torch.stack([n, flat // width, flat % width], 1).to(device)

    def forward(self,
                pred,
                target,
                weight: Optional[torch.Tensor] = None,
                current_iter: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Computes the loss.

        Args:
            pred: predicted blur field (e.g. the ``BasisField`` of :class:`BasisKernelNet`).
            target: ground-truth field of the same N, H, W (any representation, any odd kernel size).
            weight (Tensor, optional): (N, 1, H, W) pixel weights.
            current_iter (int, optional): training iteration, selects the norm order.
            generator (torch.Generator, optional): CPU generator for the pixel subset (``num_samples``).

        Returns:
            Tensor: see the class ``Shape``.
        """
        size = field_size(pred)
        if field_size(target) != size:
            raise ValueError(f'target field: expected (N, H, W) = {size} to match the prediction, '
                             f'got {field_size(target)}')
        if weight is not None and (weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[0] != size[0]
                                   or tuple(weight.shape[2:]) != size[1:]):
            raise ValueError(f'weight: expected ({size[0]}, 1, {size[1]}, {size[2]}), got {tuple(weight.shape)}')
        order = self.order_at(current_iter)
        device = weight.device if weight is not None else pred.device
        points = self._points(*size, device, generator)
        parts = []
        for tile in points.split(self.tile_size):
            if torch.is_grad_enabled():
                parts.append(checkpoint(kernel_distance, pred, target, tile, order, use_reentrant=False))
            else:
                parts.append(kernel_distance(pred, target, tile, order))
        distance = torch.cat(parts)
        pixel_weight = None if weight is None else weight[points[:, 0], 0, points[:, 1], points[:, 2]]
        loss = weighted_distance(distance, torch.zeros_like(distance), pixel_weight, 'l1', self.reduction)
        if self.reduction == 'none':
            loss = loss.view(size[0], 1, size[1], size[2]) if self.num_samples is None else loss.view(size[0], -1)
        return self.loss_weight * loss
