"""Multi-scale SSIM loss ``1 - MS-SSIM``, eq. (8) of Zhang et al. (the reblur term weighted lambda_SSIM = 0.1).

MS-SSIM of Wang, Simoncelli and Bovik (Asilomar 2003): at scales s = 1..S the images are filtered with a normalised
Gaussian window (``win_size`` taps, sigma ``win_sigma``, valid positions only, each channel separately); scales below
S contribute their mean contrast-structure term ``cs_s = mean (2 s_xy + C2) / (s_x + s_y + C2)``, the coarsest its
mean SSIM; between scales both images are 2x2 average-pooled (``F.avg_pool2d(x, 2, padding=side % 2)``: an odd
side is zero-padded by one at both ends, the zeros counted in the average). ``MS-SSIM = prod_s relu(term_s) ** w_s`` per sample and channel, averaged.
``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, L = ``data_range``. These are the conventions of the ``pytorch-msssim``
package, against whose ``ms_ssim`` the tests check this module.

Why not call the package: its ``ms_ssim`` refuses images with a side <= (win_size - 1) * 16 = 160 px whatever the
number of scales, so it cannot train on the small crops of a CPU run. Here the number of scales is an option
(``num_scales``, 1..5): the published weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) are used as they are for 5
scales and otherwise truncated to the first ``num_scales`` and renormalised to sum 1, and the smallest side must
exceed ``(win_size - 1) * 2 ** (num_scales - 1)`` (160 px at 5 scales, 80 at 4, 40 at 3, 20 at 2). A too small
image raises an error naming the largest usable ``num_scales``.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from basicsr.utils.registry import LOSS_REGISTRY

__all__ = ['MSSSIMLoss', 'ms_ssim', 'MSSSIM_WEIGHTS']

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_filter(x: Tensor, window: Tensor) -> Tensor:
    """Separable valid Gaussian filtering of (N, C, H, W) with a (win,) window -> (N, C, H - win + 1, W - win + 1)."""
    channels = x.shape[1]
    rows = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return F.conv2d(F.conv2d(x, rows, groups=channels), cols, groups=channels)


def _ssim_and_cs(x: Tensor, y: Tensor, window: Tensor, data_range: float) -> tuple:
    """Mean SSIM and mean contrast-structure per sample and channel: (N, C) each."""
    c1, c2 = (0.01 * data_range)**2, (0.03 * data_range)**2
    mu_x, mu_y = _gaussian_filter(x, window), _gaussian_filter(y, window)
    var_x = _gaussian_filter(x * x, window) - mu_x * mu_x
    var_y = _gaussian_filter(y * y, window) - mu_y * mu_y
    cov = _gaussian_filter(x * y, window) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def scale_weights(num_scales: int, weights: Optional[Sequence[float]] = None) -> tuple:
    """The exponents w_s: ``weights`` as given, the published five for 5 scales (summing to 1.0001, kept as
    published), else the published ones truncated to ``num_scales`` and renormalised to sum 1."""
    if weights is not None:
        weights = tuple(float(w) for w in weights)
        if len(weights) != num_scales:
            raise ValueError(f'weights: expected {num_scales} values (one per scale), got {len(weights)}')
        return weights
    if isinstance(num_scales, bool) or not isinstance(num_scales, int) or not 1 <= num_scales <= 5:
        raise ValueError(f'num_scales: expected an int in 1..5 (or explicit weights), got {num_scales!r}')
    if num_scales == len(MSSSIM_WEIGHTS):
        return MSSSIM_WEIGHTS
    kept = MSSSIM_WEIGHTS[:num_scales]
    return tuple(w / sum(kept) for w in kept)


def ms_ssim(x: Tensor,
            y: Tensor,
            data_range: float = 1.0,
            num_scales: int = 5,
            win_size: int = 11,
            win_sigma: float = 1.5,
            weights: Optional[Sequence[float]] = None) -> Tensor:
    """MS-SSIM averaged over samples and channels (see the module docstring).

    Args:
        x (Tensor): (N, C, H, W).
        y (Tensor): (N, C, H, W), same shape.
        data_range (float): L, the value range (1 for images in [0, 1]). Default: 1.
        num_scales (int): S in 1..5. Default: 5.
        win_size (int): odd Gaussian window size. Default: 11.
        win_sigma (float): Gaussian sigma in pixels. Default: 1.5.
        weights (sequence | None): explicit exponents, one per scale (then ``num_scales = len(weights)``).

    Returns:
        Tensor: scalar in [0, 1]; 1 for identical images.

    Raises:
        ValueError: different shapes, an even window, or a side too small for ``num_scales``.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f'ms_ssim: expected two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and '
                         f'{tuple(y.shape)}')
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f'win_size: expected a positive odd int, got {win_size}')
    if weights is not None:
        num_scales = len(weights)
    exponents = x.new_tensor(scale_weights(num_scales, weights))
    side = min(x.shape[-2:])
    if side <= (win_size - 1) * 2**(num_scales - 1):
        usable = max((s for s in range(1, 6) if side > (win_size - 1) * 2**(s - 1)), default=0)
        hint = f'set num_scales: {usable}' if usable else f'use a smaller win_size (< {side + 1})'
        raise ValueError(f'ms_ssim: the smallest image side {side} must exceed (win_size - 1) * 2**(num_scales - 1) = '
                         f'{(win_size - 1) * 2**(num_scales - 1)} for num_scales={num_scales}, win_size={win_size}; '
                         f'{hint} or use larger crops')
    taps = torch.arange(win_size, dtype=x.dtype, device=x.device) - win_size // 2
    window = torch.exp(-taps**2 / (2 * win_sigma**2))
    window = window / window.sum()
    terms = []
    for scale in range(num_scales):
        ssim, cs = _ssim_and_cs(x, y, window, data_range)
        if scale < num_scales - 1:
            terms.append(F.relu(cs))
            padding = (x.shape[-2] % 2, x.shape[-1] % 2)
            x, y = F.avg_pool2d(x, 2, padding=padding), F.avg_pool2d(y, 2, padding=padding)
    terms.append(F.relu(ssim))
    values = torch.stack(terms, 0)
    return torch.prod(values**exponents.view(-1, 1, 1), 0).mean()


@LOSS_REGISTRY.register()
class MSSSIMLoss(nn.Module):
    """``loss_weight * (1 - MS-SSIM(pred, target))``, eq. (8) of Zhang et al.

    Args:
        loss_weight (float): multiplier (lambda_SSIM = 0.1 in the paper). Default: 1.0.
        num_scales (int): scales, 1..5; 5 needs images > 160 px, fewer scales suit small crops (3 for 64 px).
            Default: 5.
        win_size (int): Gaussian window. Default: 11.
        win_sigma (float): Gaussian sigma. Default: 1.5.
        data_range (float): value range of the images. Default: 1.0.

    Shape:
        pred, target: (N, C, H, W) -> scalar.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 num_scales: int = 5,
                 win_size: int = 11,
                 win_sigma: float = 1.5,
                 data_range: float = 1.0):
        super().__init__()
        scale_weights(num_scales)
        if win_size < 1 or win_size % 2 == 0:
            raise ValueError(f'win_size: expected a positive odd int, got {win_size}')
        self.loss_weight, self.num_scales = float(loss_weight), num_scales
        self.win_size, self.win_sigma, self.data_range = win_size, float(win_sigma), float(data_range)

    def min_size(self) -> int:
        """The smallest image side this loss accepts: ``(win_size - 1) * 2 ** (num_scales - 1) + 1``."""
        return (self.win_size - 1) * 2**(self.num_scales - 1) + 1

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        value = ms_ssim(pred, target, self.data_range, self.num_scales, self.win_size, self.win_sigma)
        return self.loss_weight * (1 - value)
