"""RealBlur-J / RealBlur-R protocol (Rim et al., ECCV 2020): gain matching, ECC homography alignment, masked metrics.

The RealBlur ground truth is not pixel-aligned with the blurry input, so the official evaluation aligns every
result to its ground truth before scoring. With images as float32 RGB in [0, 1] (result ``z``, ground truth ``x``):

1. gain: ``z_s = g z`` with the least-squares gain ``g = sum(x z) / sum(z^2)`` (no clipping afterwards);
2. alignment: ECC (Evangelidis & Psarakis 2008) on the grey images (``0.299 R + 0.587 G + 0.114 B``), ``x`` as the
   template, homography model, 100 iterations (epsilon 0, so all of them run), Gaussian pre-filter size 5, identity
   start. ``W`` maps template pixels to result pixels: ``z_r(p) = z_s(W p)``;
3. warp: ``z_r`` by ``cv2.warpPerspective`` with bicubic interpolation, ``WARP_INVERSE_MAP`` and reflect border;
   the valid-region mask ``m`` is an all-ones image warped the same way with nearest interpolation and a zero
   border, so pixels whose source lies outside the result get 0;
4. both images are multiplied by ``m`` (three channels);
5. PSNR = 10 log10(1 / MSE) with MSE = sum((m x - m z_r)^2) / sum(m), sums over pixels and channels;
6. SSIM: the full per-channel SSIM map of ``(m x, m z_r)`` (11 x 11 Gaussian, sigma 1.5, reflect padding,
   population covariance, data range 1, see ``ssim.py``), multiplied by ``m``, with 5 pixels cropped at every edge,
   summed per channel and divided by the per-channel sum of the cropped mask, then averaged over the channels.

When ECC raises (OpenCV 5.0 does when the correlation degenerates, e.g. uncorrelated images) or returns a warp that
is not finite or moves a corner of the image by more than :data:`ECC_MAX_CORNER_SHIFT` of its longer side (OpenCV 5.1
returns such degenerate homographies instead of raising; a RealBlur pair is misaligned by a few pixels), the identity
warp is used and the result says so (``ecc_converged = False``, with the reason); :func:`calculate_realblur_psnr` / :func:`calculate_realblur_ssim` log
a warning. SSIM maps are computed in float64 (as scikit-image 0.17.2, the official environment, did).

Alignment is the expensive part. :func:`realblur_scores` returns both metrics from one alignment; the registered
BasicSR metrics share one alignment per (restored, gt) pair through a small cache keyed by the image bytes, so
asking for both in a YAML ``val.metrics`` block aligns once.
"""
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from basicsr.utils.registry import METRIC_REGISTRY
from basicsr_blurfield.metrics.leaderboard_metrics import prepare_uint8_pair
from basicsr_blurfield.metrics.ssim import ssim_map_reflect

ECC_ITERATIONS = 100
ECC_GAUSS_FILT_SIZE = 5
ECC_MAX_CORNER_SHIFT = 0.25  # of the longer image side
SSIM_BORDER = 5
_CHANNEL_ORDERS = ('BGR', 'RGB')
_CACHE_SIZE = 4
_alignment_cache: 'OrderedDict[tuple, RealBlurAlignment]' = OrderedDict()


@dataclass
class RealBlurAlignment:
    """A result aligned to its ground truth by the RealBlur protocol.

    Attributes:
        pred (ndarray): (H, W, 3) float32 RGB, gain-matched, warped and masked result ``m z_r``.
        gt (ndarray): (H, W, 3) float32 RGB, masked ground truth ``m x``.
        mask (ndarray): (H, W, 3) float32 in {0, 1}, the valid region ``m``.
        warp (ndarray): (3, 3) float64 homography ``W`` (template pixel -> result pixel).
        gain (float): the intensity gain ``g``.
        ecc_converged (bool): False when ECC raised or gave a degenerate warp, and the identity warp was used.
        ecc (float): ECC's final correlation coefficient (NaN when it did not converge).
        message (str): empty, or why ECC failed (OpenCV's error text, or the degenerate warp's corner shift).
    """
    pred: np.ndarray
    gt: np.ndarray
    mask: np.ndarray
    warp: np.ndarray
    gain: float
    ecc_converged: bool
    ecc: float
    message: str


def _to_float_rgb(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'{name}: expected an (H, W, 3) RGB image, got shape {image.shape}')
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype in (np.float32, np.float64):
        return image.astype(np.float32)
    raise TypeError(f'{name}: expected uint8 in [0, 255] or float in [0, 1], got {image.dtype}')


def _corner_shift(warp: np.ndarray, height: int, width: int) -> float:
    """Largest distance (pixels) a corner of the (height, width) template moves under the homography ``warp``
    (inf when a corner maps to infinity)."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], np.float64)
    mapped = corners @ warp.astype(np.float64).T
    with np.errstate(divide='ignore', invalid='ignore'):
        moved = mapped[:, :2] / mapped[:, 2:]
    shift = np.linalg.norm(moved - corners[:, :2], axis=1).max()
    return float(shift) if np.isfinite(shift) else float('inf')


def align_realblur(pred: np.ndarray,
                   gt: np.ndarray,
                   iterations: int = ECC_ITERATIONS,
                   gauss_filt_size: int = ECC_GAUSS_FILT_SIZE) -> RealBlurAlignment:
    """Gain-matches and ECC-aligns a result to its ground truth (steps 1-4 of the module docstring).

    Args:
        pred (ndarray): (H, W, 3) RGB result, uint8 in [0, 255] or float in [0, 1].
        gt (ndarray): (H, W, 3) RGB ground truth (the ECC template), same shape.
        iterations (int): ECC iterations (all of them run). Default: 100.
        gauss_filt_size (int): ECC's Gaussian pre-filter size. Default: 5.

    Returns:
        RealBlurAlignment: masked images, mask, warp, gain and the ECC status.
    """
    if pred.shape != gt.shape:
        raise ValueError(f'pred and gt must have the same shape, got {pred.shape} and {gt.shape}')
    z, x = _to_float_rgb(pred, 'pred'), _to_float_rgb(gt, 'gt')
    energy = float(np.sum(z.astype(np.float64)**2))
    gain = float(np.sum(x.astype(np.float64) * z) / energy) if energy > 0 else 1.0
    z_s = (z * np.float32(gain)).astype(np.float32)

    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(iterations), 0.0)
    try:
        ecc, warp = cv2.findTransformECC(
            cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.cvtColor(z_s, cv2.COLOR_RGB2GRAY), warp, cv2.MOTION_HOMOGRAPHY,
            criteria, None, int(gauss_filt_size))
        converged, message = bool(np.all(np.isfinite(warp))), ''
        if not converged:
            message = 'ECC returned a non-finite warp'
        else:
            shift = _corner_shift(warp, *x.shape[:2])
            if not shift <= ECC_MAX_CORNER_SHIFT * max(x.shape[:2]):
                converged, message = False, f'ECC returned a degenerate warp (a corner moves by {shift:.0f} pixels)'
    except cv2.error as error:
        ecc, converged, message = float('nan'), False, ' '.join(str(error).split())
    if not converged:
        warp, ecc = np.eye(3, dtype=np.float32), float('nan')

    height, width = x.shape[:2]
    z_r = cv2.warpPerspective(
        z_s, warp, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpPerspective(
        np.ones_like(z_s), warp, (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0)
    return RealBlurAlignment(
        pred=z_r * mask,
        gt=x * mask,
        mask=mask,
        warp=warp.astype(np.float64),
        gain=gain,
        ecc_converged=converged,
        ecc=float(ecc),
        message=message)


def realblur_psnr(alignment: RealBlurAlignment) -> float:
    """Masked PSNR (data range 1): 10 log10(sum(m) / sum((m x - m z_r)^2)).

    Args:
        alignment (RealBlurAlignment): from :func:`align_realblur`.

    Returns:
        float: PSNR in dB (``inf`` when the masked images agree exactly).
    """
    squared_error = np.sum((alignment.gt.astype(np.float64) - alignment.pred)**2)
    if squared_error == 0:
        return float('inf')
    return float(10.0 * np.log10(np.sum(alignment.mask, dtype=np.float64) / squared_error))


def realblur_ssim(alignment: RealBlurAlignment) -> float:
    """Masked SSIM: mean over channels of sum(m * SSIM map) / sum(m), 5-pixel border cropped.

    Args:
        alignment (RealBlurAlignment): from :func:`align_realblur`; images at least 11 x 11.

    Returns:
        float: SSIM in [-1, 1].
    """
    ssim_map = ssim_map_reflect(alignment.gt, alignment.pred, data_range=1.0) * alignment.mask
    crop = (slice(SSIM_BORDER, -SSIM_BORDER), slice(SSIM_BORDER, -SSIM_BORDER))
    per_channel = ssim_map[crop].sum(axis=(0, 1)) / alignment.mask[crop].sum(axis=(0, 1), dtype=np.float64)
    return float(np.mean(per_channel))


def realblur_scores(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Both RealBlur metrics from one alignment, plus what the alignment did.

    Args:
        pred (ndarray): (H, W, 3) RGB result, uint8 or float in [0, 1].
        gt (ndarray): (H, W, 3) RGB ground truth, same shape.

    Returns:
        dict: ``psnr``, ``ssim``, ``gain``, ``ecc``, ``ecc_converged``, ``ecc_message``, ``warp`` (3 x 3 nested list)
        and ``mask_fraction`` (share of valid pixels).
    """
    alignment = align_realblur(pred, gt)
    return {
        'psnr': realblur_psnr(alignment),
        'ssim': realblur_ssim(alignment),
        'gain': alignment.gain,
        'ecc': alignment.ecc,
        'ecc_converged': alignment.ecc_converged,
        'ecc_message': alignment.message,
        'warp': alignment.warp.tolist(),
        'mask_fraction': float(alignment.mask.mean()),
    }


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()


def cached_alignment(img: np.ndarray,
                     img2: np.ndarray,
                     crop_border: int = 0,
                     input_order: str = 'HWC',
                     channel_order: str = 'BGR') -> RealBlurAlignment:
    """The alignment of a (restored, gt) uint8 pair, computed once and reused by both registered metrics.

    The cache holds the last few pairs, keyed by a hash of the image bytes, shapes and options.

    Args:
        img (ndarray): restored image, uint8 (H, W, 3).
        img2 (ndarray): ground truth, same shape.
        crop_border (int): pixels removed at each edge before alignment (the protocol uses 0). Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        channel_order (str): 'BGR' (BasicSR's ``tensor2img``) or 'RGB'. It matters: ECC runs on grey images.

    Returns:
        RealBlurAlignment: see :func:`align_realblur`.
    """
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(f'channel_order: expected one of {_CHANNEL_ORDERS}, got {channel_order!r}')
    img, img2 = prepare_uint8_pair(img, img2, crop_border, input_order)
    key = (_digest(img), _digest(img2), img.shape, channel_order)
    if key in _alignment_cache:
        _alignment_cache.move_to_end(key)
        return _alignment_cache[key]
    if channel_order == 'BGR':
        img, img2 = img[..., ::-1], img2[..., ::-1]
    alignment = align_realblur(img, img2)
    if not alignment.ecc_converged:
        logging.getLogger('basicsr').warning(f'RealBlur ECC alignment did not converge ({alignment.message}); '
                                             'scored with the identity warp')
    _alignment_cache[key] = alignment
    while len(_alignment_cache) > _CACHE_SIZE:
        _alignment_cache.popitem(last=False)
    return alignment


@METRIC_REGISTRY.register()
def calculate_realblur_psnr(img: np.ndarray,
                            img2: np.ndarray,
                            crop_border: int = 0,
                            input_order: str = 'HWC',
                            channel_order: str = 'BGR',
                            **kwargs) -> float:
    """RealBlur PSNR: gain matching, ECC homography alignment, PSNR over the valid-region mask.

    Args:
        img (ndarray): restored image, uint8 (H, W, 3), BGR as from BasicSR's ``tensor2img`` by default.
        img2 (ndarray): ground truth, same shape and order.
        crop_border (int): pixels removed at each edge before alignment; the protocol uses 0. Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        channel_order (str): 'BGR' or 'RGB'. Default: 'BGR'.

    Returns:
        float: masked PSNR in dB (data range 1).
    """
    return realblur_psnr(cached_alignment(img, img2, crop_border, input_order, channel_order))


@METRIC_REGISTRY.register()
def calculate_realblur_ssim(img: np.ndarray,
                            img2: np.ndarray,
                            crop_border: int = 0,
                            input_order: str = 'HWC',
                            channel_order: str = 'BGR',
                            **kwargs) -> float:
    """RealBlur SSIM: gain matching, ECC homography alignment, masked per-channel SSIM with a 5-pixel crop.

    Args:
        img (ndarray): restored image, uint8 (H, W, 3), BGR as from BasicSR's ``tensor2img`` by default.
        img2 (ndarray): ground truth, same shape and order.
        crop_border (int): pixels removed at each edge before alignment; the protocol uses 0. Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        channel_order (str): 'BGR' or 'RGB'. Default: 'BGR'.

    Returns:
        float: masked SSIM (data range 1).
    """
    return realblur_ssim(cached_alignment(img, img2, crop_border, input_order, channel_order))
