"""Hand-made blur cues for the kernel estimators: the local autocorrelation of the image's derivatives.

For natural images the derivatives of the sharp image are close to white noise, so the autocorrelation of the
derivatives of the blurry image ``y = k * x`` is close to the kernel's own autocorrelation ``k * k~``: a motion blur
of length L along theta leaves a ridge along theta and a dip at lag L (Yitzhaky and Kopeika, "Identification of blur
parameters from motion blurred images", 1997). Measured locally (a Gaussian window), this gives every pixel a
description of its own blur that a small network reads far more easily than the blurry pixels themselves
(docs/estimation.md, section 2.2). With ``g`` the grey image, ``d_x``, ``d_y`` its forward differences (zero past the
last row / column and outside the image) and ``G_sigma`` a Gaussian window,

    C_d(p) = G_sigma * (d_x(p) d_x(p + d) + d_y(p) d_y(p + d)),

for lags ``d = (dy, dx)`` on a half plane (``C_-d`` is ``C_d`` shifted), returned as ``C_d / (C_0 + eps)`` (in
[-1, 1] up to the window) with ``log(C_0 + eps)`` (the local contrast), scaled to about unit range.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['DerivativeAutocorrelation', 'gaussian_window_blur', 'polar_lags']

# log(C_0 + eps) of photos lies in about [-14, -4]: (log - LOG_CONTRAST_CENTRE) / LOG_CONTRAST_SCALE is about [-1, 1]
LOG_CONTRAST_CENTRE, LOG_CONTRAST_SCALE = -9.0, 5.0


def polar_lags(num_directions: int = 16, lengths: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18)
               ) -> List[Tuple[int, int]]:
    """Integer lags (dy, dx) on the half plane ``dy > 0 or (dy == 0 and dx > 0)``: ``num_directions`` angles in
    [0, pi) times ``lengths``, rounded to the pixel grid, in that order, repeats dropped."""
    lags = []
    for index in range(num_directions):
        angle = math.pi * index / num_directions
        for length in lengths:
            lag = (int(round(length * math.sin(angle))), int(round(length * math.cos(angle))))
            if lag[0] < 0 or (lag[0] == 0 and lag[1] < 0):  # rounded onto the other half plane: the same lag there
                lag = (-lag[0], -lag[1])
            if lag != (0, 0) and lag not in lags:
                lags.append(lag)
    return lags


def gaussian_window_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``, weights summing to 1) of every channel of (N, C, H, W);
    borders reflected, or replicated where the image is no larger than the radius."""
    radius = int(math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    weights = torch.exp(-taps.square() / (2 * sigma * sigma))
    weights = weights / weights.sum()
    channels = image.shape[1]
    mode = 'reflect' if min(image.shape[-2:]) > radius else 'replicate'
    padded = F.pad(image, (radius, ) * 4, mode=mode)
    rows = F.conv2d(padded, weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


class DerivativeAutocorrelation(nn.Module):
    """(N, C, H, W) image in [0, 1] -> (N, L + 1, H, W) cues: ``C_d / (C_0 + eps)`` for the L lags, then the scaled
    ``log(C_0 + eps)`` (see the module docstring). No parameters.

    Args:
        lags (sequence of (dy, dx), optional): half-plane lags; default :func:`polar_lags` (16 directions x 13
            lengths up to 18 px, 176 lags after rounding: enough for K = 19 kernels).
        sigma (float): standard deviation of the Gaussian window (pixels). Default: 8.
        eps (float): added to C_0 (flat regions give cues near 0). Default: 1e-5.
    """

    def __init__(self, lags: Sequence[Tuple[int, int]] = None, sigma: float = 8.0, eps: float = 1e-5):
        super().__init__()
        self.lags = [tuple(int(v) for v in lag) for lag in (polar_lags() if lags is None else lags)]
        for dy, dx in self.lags:
            if not (dy > 0 or (dy == 0 and dx > 0)):
                raise ValueError(f'lags: expected (dy, dx) with dy > 0, or dy == 0 and dx > 0; got {(dy, dx)}')
        if not sigma > 0 or not eps > 0:
            raise ValueError(f'sigma and eps must be > 0, got {sigma}, {eps}')
        self.sigma, self.eps = float(sigma), float(eps)
        self.reach = max(max(abs(dy), abs(dx)) for dy, dx in self.lags)
        # (L, 2) in the state dict, so that a checkpoint says it was trained with these cues (and with which lags)
        self.register_buffer('lag_table', torch.tensor(self.lags, dtype=torch.long).view(-1, 2))

    @property
    def channels(self) -> int:
        """Output channels: one per lag and the contrast."""
        return len(self.lags) + 1

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4:
            raise ValueError(f'image: expected (N, C, H, W), got shape {tuple(image.shape)}')
        grey = image.mean(1, keepdim=True)
        grad_x = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1, 0, 0))
        grad_y = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1))
        height, width, reach = grey.shape[-2], grey.shape[-1], self.reach
        far_x, far_y = F.pad(grad_x, (reach, ) * 4), F.pad(grad_y, (reach, ) * 4)
        products = [grad_x.square() + grad_y.square()]
        for dy, dx in self.lags:
            rows, cols = slice(reach + dy, reach + dy + height), slice(reach + dx, reach + dx + width)
            products.append(grad_x * far_x[..., rows, cols] + grad_y * far_y[..., rows, cols])
        local = gaussian_window_blur(torch.cat(products, 1), self.sigma)
        contrast = local[:, :1] + self.eps
        log_contrast = (torch.log(contrast) - LOG_CONTRAST_CENTRE) / LOG_CONTRAST_SCALE
        return torch.cat([local[:, 1:] / contrast, log_contrast], 1)
