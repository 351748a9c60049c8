"""Re-blur losses: compare the blurry input with the sharp image blurred through an estimated blur field.

Implements the reblur term shared by the methods: eq. (3) of Carbajal et al. (weighted L2 / L1 between the re-blurred
sharp image and the blurry one, with per-pixel weights), eq. (4) of Fang et al. (UFPNet, L1 reblur of the sharp or the
restored image, eq. (8)) and the re-blur MSE of Zhang et al. All the maths of the blur lives in the field's ``blur``
(``basicsr_blurfield.fields``); this module only measures distances.
"""
import math
from typing import Optional

import torch
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY

_CRITERIA = ('l1', 'l2', 'charbonnier')
_REDUCTIONS = ('none', 'mean', 'sum')


def weighted_distance(pred: torch.Tensor,
                      target: torch.Tensor,
                      weight: Optional[torch.Tensor] = None,
                      criterion: str = 'l1',
                      reduction: str = 'mean',
                      eps: float = 1e-3) -> torch.Tensor:
    """Element-wise distance, optionally weighted per pixel, then reduced.

    ``'mean'`` with weights is the weighted mean ``sum(w * d) / sum(w broadcast to d)``, so the scale does not depend
    on how the weights are normalised.

    Args:
        pred (Tensor): (N, C, H, W).
        target (Tensor): (N, C, H, W).
        weight (Tensor, optional): broadcastable to pred, e.g. (N, 1, H, W); non-negative.
        criterion (str): 'l1' (|d|), 'l2' (d^2) or 'charbonnier' (sqrt(d^2 + eps^2)).
        reduction (str): 'none', 'mean' or 'sum'.
        eps (float): Charbonnier epsilon.

    Returns:
        Tensor: scalar, or (N, C, H, W) for reduction 'none'.
    """
    if criterion not in _CRITERIA:
        raise ValueError(f'Unsupported criterion: {criterion}. Supported ones are: {list(_CRITERIA)}')
    if reduction not in _REDUCTIONS:
        raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: {list(_REDUCTIONS)}')
    if pred.shape != target.shape:
        raise ValueError(f'pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}')
    diff = pred - target
    if criterion == 'l1':
        loss = diff.abs()
    elif criterion == 'l2':
        loss = diff * diff
    else:
        loss = torch.sqrt(diff * diff + eps * eps)
    if weight is not None:
        try:
            weight = weight.expand_as(loss)
        except RuntimeError as error:
            raise ValueError(f'weight of shape {tuple(weight.shape)} does not broadcast to '
                             f'{tuple(loss.shape)}') from error
        loss = loss * weight
    if reduction == 'none':
        return loss
    if reduction == 'sum':
        return loss.sum()
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.sum().clamp_min(1e-12)


def reblur_psnr(reblurred: torch.Tensor, blurry: torch.Tensor) -> float:
    """PSNR (dB, peak 1, capped at 120 dB) between a re-blurred image (clipped to [0, 1]) and the blurry one, over a
    whole batch (N, C, H, W): the re-blur quality that the estimator models log and validate."""
    mse = float(((reblurred.detach().clamp(0, 1) - blurry)**2).mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


@LOSS_REGISTRY.register()
class ReblurLoss(nn.Module):
    """Re-blur loss ``loss_weight * dist(field.blur(sharp), blurry)``.

    Args:
        loss_weight (float): multiplier, applied once. Default: 1.0.
        criterion (str): 'l1', 'l2' or 'charbonnier'. Default: 'l1'.
        reduction (str): 'none', 'mean' or 'sum'. Default: 'mean'.
        eps (float): Charbonnier epsilon. Default: 1e-3.

    Shape:
        field: any blur field of the batch (``KernelField``, ``BasisField``, ``OffsetField``) with N samples.
        sharp, blurry: (N, C, H, W); weight: optional, broadcastable, e.g. (N, 1, H, W).
    """

    def __init__(self, loss_weight: float = 1.0, criterion: str = 'l1', reduction: str = 'mean', eps: float = 1e-3):
        super().__init__()
        if criterion not in _CRITERIA:
            raise ValueError(f'Unsupported criterion: {criterion}. Supported ones are: {list(_CRITERIA)}')
        if reduction not in _REDUCTIONS:
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: {list(_REDUCTIONS)}')
        self.loss_weight = float(loss_weight)
        self.criterion = criterion
        self.reduction = reduction
        self.eps = float(eps)

    def forward(self, field, sharp: torch.Tensor, blurry: torch.Tensor, weight: Optional[torch.Tensor] = None):
        if not hasattr(field, 'blur'):
            raise TypeError(f'ReblurLoss expects a blur field (with .blur), got {type(field).__name__}')
        return self.from_reblurred(field.blur(sharp), blurry, weight)

    def from_reblurred(self, reblurred: torch.Tensor, blurry: torch.Tensor, weight: Optional[torch.Tensor] = None):
        """The loss for an already re-blurred image ``field.blur(sharp)`` (N, C, H, W), for callers that also use it."""
        return self.loss_weight * weighted_distance(reblurred, blurry, weight, self.criterion, self.reduction, self.eps)
