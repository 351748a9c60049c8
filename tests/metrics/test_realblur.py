"""RealBlur protocol: alignment recovers a known homography and gain; metrics match scikit-image on the masked pair."""
import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from basicsr.metrics import calculate_metric
from basicsr_blurfield.metrics import realblur
from basicsr_blurfield.metrics.realblur import (align_realblur, calculate_realblur_psnr, calculate_realblur_ssim,
                                               realblur_psnr, realblur_scores, realblur_ssim)

# Template pixel p -> source pixel A p of the ground truth: pred(p) = gain * gt(A p). Shifts of about 2 px, a small
# shear and a little perspective.
HOMOGRAPHY = np.array([[1.0, 0.01, 2.3], [-0.008, 1.0, 1.6], [1e-5, -2e-5, 1.0]])
GAIN = 0.8


@pytest.fixture(scope='module')
def warped_pair(photo):
    """(gt, pred) uint8 RGB 128 x 128: a smooth photo (coffee, Gaussian blur sigma 2) and a copy warped by
    HOMOGRAPHY (bicubic) and scaled by GAIN, saved as uint8."""
    gt = cv2.GaussianBlur(photo('coffee', 128), (0, 0), 2.0)
    warped = cv2.warpPerspective(
        gt.astype(np.float32) / 255, HOMOGRAPHY, (128, 128),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT)
    pred = np.clip(np.round(warped * GAIN * 255), 0, 255).astype(np.uint8)
    return gt, pred


def test_known_homography_and_gain_score_above_40_db_after_alignment_and_far_lower_without(warped_pair):
    gt, pred = warped_pair
    scores = realblur_scores(pred, gt)
    x, z = gt / 255.0, pred / 255.0
    raw_psnr = 10 * np.log10(1 / np.mean((x - z)**2))
    gain_only = np.sum(x * z) / np.sum(z * z)
    gain_only_psnr = 10 * np.log10(1 / np.mean((x - gain_only * z)**2))
    assert scores['ecc_converged']
    assert scores['psnr'] > 40
    assert scores['ssim'] > 0.99
    assert gain_only_psnr < scores['psnr'] - 15 and raw_psnr < scores['psnr'] - 15


def _apply(homography: np.ndarray, height: int, width: int) -> np.ndarray:
    """(2, H, W) image of every pixel (x, y) under the homography."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    mapped = np.einsum('ij,jhw->ihw', homography, np.stack([xs, ys, np.ones_like(xs)]))
    return mapped[:2] / mapped[2]


def test_alignment_recovers_the_inverse_homography_and_the_gain(warped_pair):
    gt, pred = warped_pair
    alignment = align_realblur(pred, gt)
    identity = _apply(np.eye(3), 128, 128)
    # ECC finds W with pred(W p) = gt(p); pred(q) = gt(A q), so A W = identity (A moves pixels by about 2-3 px).
    assert np.abs(_apply(HOMOGRAPHY, 128, 128) - identity).max() > 2
    assert np.abs(_apply(HOMOGRAPHY @ alignment.warp, 128, 128) - identity).max() < 0.3
    assert alignment.gain == pytest.approx(1 / GAIN, rel=0.03)


def test_mask_excludes_pixels_whose_source_lies_outside_the_result(warped_pair):
    gt, pred = warped_pair
    alignment = align_realblur(pred, gt)
    height, width = gt.shape[:2]
    sx, sy = _apply(alignment.warp, height, width)
    outside = (sx < -1) | (sy < -1) | (sx > width) | (sy > height)
    inside = (sx > 1) & (sy > 1) & (sx < width - 2) & (sy < height - 2)
    assert outside.sum() > 100  # the shifts leave an invalid band of about 2 columns and rows
    assert np.all(alignment.mask[outside] == 0) and np.all(alignment.mask[inside] == 1)
    assert np.all(alignment.pred[alignment.mask == 0] == 0) and np.all(alignment.gt[alignment.mask == 0] == 0)


def test_masked_psnr_and_ssim_equal_direct_computation_and_scikit_image(warped_pair):
    gt, pred = warped_pair
    alignment = align_realblur(pred, gt)
    x, z, m = alignment.gt.astype(np.float64), alignment.pred.astype(np.float64), alignment.mask.astype(np.float64)
    expected_psnr = 10 * np.log10(1 / (np.sum((x - z)**2) / np.sum(m)))
    _, ssim_map = structural_similarity(
        x, z, channel_axis=2, gaussian_weights=True, use_sample_covariance=False, data_range=1.0, full=True)
    masked = (ssim_map * m)[5:-5, 5:-5]
    expected_ssim = np.mean(masked.sum(axis=(0, 1)) / m[5:-5, 5:-5].sum(axis=(0, 1)))
    assert realblur_psnr(alignment) == pytest.approx(expected_psnr, abs=1e-9)
    assert realblur_ssim(alignment) == pytest.approx(expected_ssim, abs=1e-9)


def test_ecc_failure_falls_back_to_identity_and_says_so():
    gt = np.zeros((64, 64, 3), np.uint8)
    gt[:, :32] = 255
    pred = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    scores = realblur_scores(pred, gt)
    assert scores['ecc_converged'] is False
    assert 'converge' in scores['ecc_message']
    assert scores['warp'] == np.eye(3).tolist() and scores['mask_fraction'] == 1.0
    z = pred / 255.0 * scores['gain']
    assert scores['psnr'] == pytest.approx(10 * np.log10(1 / np.mean((gt / 255.0 - z)**2)), abs=1e-4)


def test_registered_metrics_take_bgr_and_align_once_for_both(warped_pair, monkeypatch):
    gt, pred = warped_pair
    calls = []
    monkeypatch.setattr(realblur, 'align_realblur', lambda *a, **k: calls.append(1) or align_realblur(*a, **k))
    realblur._alignment_cache.clear()
    data = dict(img=pred[..., ::-1].copy(), img2=gt[..., ::-1].copy())
    psnr = calculate_metric(data, {'type': 'calculate_realblur_psnr', 'crop_border': 0})
    ssim = calculate_metric(data, {'type': 'calculate_realblur_ssim', 'crop_border': 0})
    assert len(calls) == 1
    expected = realblur_scores(pred, gt)
    assert psnr == pytest.approx(expected['psnr'], abs=1e-9) and ssim == pytest.approx(expected['ssim'], abs=1e-9)
    rgb = calculate_realblur_psnr(pred, gt, channel_order='RGB')
    assert rgb == pytest.approx(expected['psnr'], abs=1e-9)
    with pytest.raises(ValueError, match="expected one of \\('BGR', 'RGB'\\)"):
        calculate_realblur_ssim(pred, gt, channel_order='rgb')


def test_degenerate_ecc_warps_are_refused_by_their_corner_shift():
    """OpenCV 5.1 returns wild homographies on uncorrelated images instead of raising: judged by how far they move a
    corner of the template (at most a quarter of the longer side)."""
    assert realblur._corner_shift(np.eye(3), 48, 64) == 0
    shifted = np.array([[1, 0, 3], [0, 1, -4], [0, 0, 1]], np.float64)
    assert realblur._corner_shift(shifted, 48, 64) == pytest.approx(5.0)
    wild = np.array([[22.5, 5.5, -426.7], [6.3, 14.1, -173.6], [0.0375, 0.296, 1]], np.float64)
    assert realblur._corner_shift(wild, 48, 48) > realblur.ECC_MAX_CORNER_SHIFT * 48
    at_infinity = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 1]], np.float64)  # maps the column x = 1 to infinity
    assert realblur._corner_shift(at_infinity, 2, 2) == float('inf')
