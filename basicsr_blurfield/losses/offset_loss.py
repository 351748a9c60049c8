"""Regularisers of motion offsets, eq. (9)-(10) of Zhang et al.: magnitude and total variation of the offset maps.

With the offsets of an :class:`~basicsr_blurfield.fields.OffsetField`, ``M`` of shape (N, T, 2, H, W), every (t, axis)
pair is one offset map ``M_n`` of the paper (their N maps = our 2 T per sample):

- eq. (9), magnitude: ``L_reg = mean(M^2)`` over all maps and pixels (keeps offsets short in smooth areas);
- eq. (10), total variation: ``L_tv = mean_n( mean |M_n(i, j) - M_n(i + 1, j)| + mean |M_n(i, j) - M_n(i, j + 1)| )``,
  each difference averaged over its own (W - 1) H or W (H - 1) pairs (spatial smoothness of the motion).

Weights (Zhang et al., §6.1 and the released code): lambda_reg = 2e-5 in both; lambda_tv is 0.0005 in the paper and
0.002 in the released training code. The option files use the code's 0.002, the value behind the released weights
(``options/motion_etr_gopro.yml`` notes the paper's value). The losses themselves default to ``loss_weight: 1.0`` as
every BasicSR loss, the lambda being set in the YAML.
"""
from torch import Tensor, nn

from basicsr.utils.registry import LOSS_REGISTRY
from basicsr_blurfield.fields import OffsetField

__all__ = ['OffsetMagnitudeLoss', 'OffsetTVLoss', 'offset_tv']


def _offsets_of(field) -> Tensor:
    if not isinstance(field, OffsetField):
        raise TypeError(f'expected an OffsetField (e.g. the output of MotionOffsetNet), got {type(field).__name__}')
    return field.offsets


def offset_tv(offsets: Tensor) -> Tensor:
    """Eq. (10): mean absolute horizontal plus mean absolute vertical difference of every offset map.

    Args:
        offsets (Tensor): (N, T, 2, H, W), H, W >= 2.

    Returns:
        Tensor: scalar.
    """
    horizontal = (offsets[..., :, 1:] - offsets[..., :, :-1]).abs().mean()
    vertical = (offsets[..., 1:, :] - offsets[..., :-1, :]).abs().mean()
    return horizontal + vertical


@LOSS_REGISTRY.register()
class OffsetTVLoss(nn.Module):
    """``loss_weight * L_tv`` of eq. (10) on a field's offsets.

    Args:
        loss_weight (float): lambda_tv. Default: 1.0 (the option files set 0.002, the released code's value).

    Shape:
        field: OffsetField with offsets (N, T, 2, H, W) -> scalar.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, field: OffsetField) -> Tensor:
        return self.loss_weight * offset_tv(_offsets_of(field))


@LOSS_REGISTRY.register()
class OffsetMagnitudeLoss(nn.Module):
    """``loss_weight * L_reg`` of eq. (9): mean squared offset over every map and pixel.

    Args:
        loss_weight (float): lambda_reg. Default: 1.0 (the paper and the option files: 2e-5).

    Shape:
        field: OffsetField with offsets (N, T, 2, H, W) -> scalar.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, field: OffsetField) -> Tensor:
        return self.loss_weight * _offsets_of(field).pow(2).mean()
