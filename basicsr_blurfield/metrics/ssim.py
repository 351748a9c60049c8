"""SSIM variants used by the deblurring leaderboards (Wang et al., IEEE TIP 2004, eq. (13)), written out exactly.

All variants share one formula. With Gaussian-weighted local means ``mu_x = G * x``, variances
``s_x = G * x^2 - mu_x^2`` (population form: the weights sum to 1, no ``n / (n - 1)`` factor) and covariance
``s_xy = G * (x y) - mu_x mu_y``::

    SSIM(p) = (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_x + s_y + C2)),
    C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = data range.

They differ only in the window ``G``, its border handling and how the map is averaged:

* :func:`ssim_volumetric` -- MATLAB's ``ssim`` on an RGB array (R2017a and later): the H x W x 3 array is one 3-D
  volume, ``G`` is an 11 x 11 x 11 Gaussian (sigma 1.5) with replicate padding on all three axes, and the score is the
  mean of the full H x W x 3 map. This is the SSIM behind the published GoPro/HIDE numbers of MPRNet, NAFNet and
  UFPNet (their MATLAB evaluation script).
* :func:`ssim_per_channel` -- Wang et al.'s 2-D SSIM run on each channel separately with an 11 x 11 Gaussian
  (sigma 1.5) over *valid* windows only (no padding), averaged over channels: BasicSR's ``calculate_ssim`` and
  scikit-image's ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``. It comes out
  lower than the volumetric SSIM on the same pair.
* :func:`ssim_map_reflect` -- the full per-channel 2-D map with reflect padding, as scikit-image returns with
  ``full=True``; the RealBlur protocol masks and averages it itself (``realblur.py``).

Everything is computed in float64 whatever the input dtype. Shape letters: H, W image size, C channels.
"""
import numpy as np
from scipy import ndimage

_SIGMA = 1.5
_RADIUS = 5  # 11 taps: MATLAB's 2 * ceil(3 * sigma) + 1 and scikit-image's int(3.5 * sigma + 0.5) agree


def gaussian_window_1d(radius: int = _RADIUS, sigma: float = _SIGMA) -> np.ndarray:
    """Returns the normalised 1-D Gaussian ``exp(-t^2 / (2 sigma^2))``, t = -radius..radius, summing to 1.

    Args:
        radius (int): half width; the window has ``2 * radius + 1`` taps. Default: 5.
        sigma (float): standard deviation in pixels. Default: 1.5.

    Returns:
        ndarray: (2 * radius + 1,) float64, sums to 1. The 2-D / 3-D windows are its separable products.
    """
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    window = np.exp(-t**2 / (2.0 * sigma**2))
    return window / window.sum()


def _as_float64_pair(img: np.ndarray, img2: np.ndarray, ndim: tuple) -> tuple:
    if img.shape != img2.shape:
        raise ValueError(f'SSIM: the two images must have the same shape, got {img.shape} and {img2.shape}')
    if img.ndim not in ndim:
        raise ValueError(f'SSIM: expected an array with {" or ".join(map(str, ndim))} dimensions, got shape '
                         f'{img.shape}')
    return img.astype(np.float64, copy=False), img2.astype(np.float64, copy=False)


def _ssim_from_filter(x: np.ndarray, y: np.ndarray, smooth, data_range: float) -> np.ndarray:
    """The SSIM map of eq. (13) with local statistics given by ``smooth`` (a linear, normalised filter)."""
    c1 = (0.01 * data_range)**2
    c2 = (0.03 * data_range)**2
    mu_x, mu_y = smooth(x), smooth(y)
    var_x = smooth(x * x) - mu_x * mu_x
    var_y = smooth(y * y) - mu_y * mu_y
    cov_xy = smooth(x * y) - mu_x * mu_y
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def _separable(axes: tuple, mode: str):
    window = gaussian_window_1d()

    def smooth(a: np.ndarray) -> np.ndarray:
        for axis in axes:
            a = ndimage.correlate1d(a, window, axis=axis, mode=mode)
        return a

    return smooth


def ssim_volumetric(img: np.ndarray, img2: np.ndarray, data_range: float = 255.0) -> float:
    """MATLAB-style volumetric SSIM: one 11 x 11 x 11 Gaussian window (sigma 1.5) over the H x W x C volume.

    Replicate padding on every axis (MATLAB's ``imgaussfilt3(..., 'Padding', 'replicate')``), mean of the full map.
    The channel order does not matter (the window and the padding are symmetric), so RGB and BGR give the same value.

    Args:
        img (ndarray): (H, W, C) or (H, W), any real dtype (e.g. uint8 in [0, 255]).
        img2 (ndarray): same shape as ``img``.
        data_range (float): L in C1 = (0.01 L)^2, C2 = (0.03 L)^2; 255 for uint8. Default: 255.

    Returns:
        float: mean SSIM over all H * W * C entries.
    """
    x, y = _as_float64_pair(img, img2, (2, 3))
    return float(_ssim_from_filter(x, y, _separable(tuple(range(x.ndim)), 'nearest'), data_range).mean())


def ssim_per_channel(img: np.ndarray, img2: np.ndarray, data_range: float = 255.0) -> float:
    """2-D SSIM per channel over valid 11 x 11 windows (sigma 1.5), averaged over channels.

    Equals BasicSR's ``calculate_ssim`` (no crop, no Y channel) and scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, use_sample_covariance=False`` (which crops the 5-pixel border its padding affects).

    Args:
        img (ndarray): (H, W, C) or (H, W) with H, W >= 11, any real dtype.
        img2 (ndarray): same shape as ``img``.
        data_range (float): L of the constants; 255 for uint8. Default: 255.

    Returns:
        float: mean over channels of the mean SSIM over the (H - 10) x (W - 10) valid positions.
    """
    x, y = _as_float64_pair(img, img2, (2, 3))
    if min(x.shape[:2]) < 2 * _RADIUS + 1:
        raise ValueError(f'ssim_per_channel: images must be at least 11 x 11, got {x.shape}')
    x = x.reshape(x.shape[0], x.shape[1], -1)
    y = y.reshape(y.shape[0], y.shape[1], -1)
    smooth = _separable((0, 1), 'reflect')
    crop = (slice(_RADIUS, -_RADIUS), slice(_RADIUS, -_RADIUS))
    scores = [_ssim_from_filter(x[..., c], y[..., c], smooth, data_range)[crop].mean() for c in range(x.shape[2])]
    return float(np.mean(scores))


def ssim_map_reflect(img: np.ndarray, img2: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Full per-channel 2-D SSIM map, 11 x 11 Gaussian (sigma 1.5), SciPy's reflect padding (``c b a | a b c``).

    This is scikit-image's ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False,
    full=True)`` map (computed in float64 as scikit-image 0.17.2 did; newer releases keep float32 inputs in float32).

    Args:
        img (ndarray): (H, W, C) or (H, W), any real dtype.
        img2 (ndarray): same shape as ``img``.
        data_range (float): L of the constants. Default: 1 (float images in [0, 1]).

    Returns:
        ndarray: float64 map with the shape of ``img``.
    """
    x, y = _as_float64_pair(img, img2, (2, 3))
    return _ssim_from_filter(x, y, _separable((0, 1), 'reflect'), data_range)
