"""PSNR loss of NAFNet / UFPNet: ``loss_weight * 10 / ln(10) * mean_n log(MSE_n + 1e-8)``.

The negative PSNR per sample (images in [0, 1]), averaged over the batch; the published NAFNet and UFPNet training
(GoPro) uses it with ``loss_weight: 1``. ``toY`` converts RGB to the Y channel first (BT.601, as NAFNet offers).
"""
import math

import torch
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class PSNRLoss(nn.Module):
    """Negative PSNR loss.

    Args:
        loss_weight (float): multiplier. Default: 1.0.
        reduction (str): only 'mean' (over the batch) is defined for this loss.
        toY (bool): compute on the BT.601 Y channel of RGB inputs. Default: False.

    Shape:
        pred, target: (N, C, H, W) in [0, 1]; returns a scalar.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', toY: bool = False):
        super().__init__()
        if reduction != 'mean':
            raise ValueError(f"Unsupported reduction mode: {reduction}. Supported ones are: ['mean']")
        self.loss_weight = float(loss_weight)
        self.scale = 10 / math.log(10)
        self.toY = toY
        self.register_buffer('coef', torch.tensor([65.481, 128.553, 24.966]).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight=None, **kwargs) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 4:
            raise ValueError(f'PSNRLoss expects two (N, C, H, W) tensors of one shape, got {tuple(pred.shape)} '
                             f'and {tuple(target.shape)}')
        if self.toY:
            if pred.shape[1] != 3:
                raise ValueError(f'PSNRLoss(toY=True) needs RGB inputs (C=3), got C={pred.shape[1]}')
            pred = ((pred * self.coef).sum(dim=1, keepdim=True) + 16.) / 255.
            target = ((target * self.coef).sum(dim=1, keepdim=True) + 16.) / 255.
        mse = ((pred - target)**2).mean(dim=(1, 2, 3))
        return self.loss_weight * self.scale * torch.log(mse + 1e-8).mean()
