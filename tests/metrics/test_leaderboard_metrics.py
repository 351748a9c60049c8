"""GoPro/HIDE metrics against direct formulas written here (NumPy/SciPy), on small real photos."""
import numpy as np
import pytest
from scipy import ndimage

from basicsr.metrics import calculate_metric
from basicsr.metrics import calculate_ssim as basicsr_calculate_ssim
from basicsr.utils.registry import METRIC_REGISTRY
from basicsr_blurfield.metrics.leaderboard_metrics import (calculate_psnr_uint8_rgb, calculate_ssim_matlab3d,
                                                           calculate_ssim_per_channel)


def direct_ssim_volume(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """MATLAB ssim on a 3-D array, from its definition: an explicit 11 x 11 x 11 Gaussian (sigma 1.5) convolved with
    replicate ('nearest') padding, C1 = (0.01 L)^2, C2 = (0.03 L)^2, mean of the full map."""
    t = np.arange(-5, 6, dtype=np.float64)
    gi, gj, gk = np.meshgrid(t, t, t, indexing='ij')
    window = np.exp(-(gi**2 + gj**2 + gk**2) / (2 * 1.5**2))
    window /= window.sum()
    x, y = x.astype(np.float64), y.astype(np.float64)
    f = lambda a: ndimage.convolve(a, window, mode='nearest')  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * data_range)**2, (0.03 * data_range)**2
    return float(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def test_psnr_uint8_rgb_equals_direct_formula(blurred_pair):
    gt, blurred = blurred_pair
    mse = np.mean((gt.astype(np.float64) - blurred.astype(np.float64))**2)
    assert calculate_psnr_uint8_rgb(blurred, gt, crop_border=0) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-12)


def test_psnr_uint8_rgb_is_inf_for_identical_images(blurred_pair):
    assert calculate_psnr_uint8_rgb(blurred_pair[0], blurred_pair[0]) == float('inf')


def test_psnr_of_a_known_constant_error():
    gt = np.full((16, 16, 3), 100, np.uint8)
    assert calculate_psnr_uint8_rgb(gt + 5, gt) == pytest.approx(10 * np.log10(255**2 / 25))


def test_ssim_matlab3d_equals_explicit_3d_gaussian_convolution(blurred_pair):
    gt, blurred = blurred_pair
    assert calculate_ssim_matlab3d(blurred, gt) == pytest.approx(direct_ssim_volume(blurred, gt), abs=1e-10)


def test_ssim_per_channel_equals_basicsr_calculate_ssim(blurred_pair):
    gt, blurred = blurred_pair
    expected = basicsr_calculate_ssim(blurred, gt, crop_border=0, test_y_channel=False)
    assert calculate_ssim_per_channel(blurred, gt) == pytest.approx(expected, abs=1e-9)


def test_volumetric_ssim_is_higher_than_per_channel_ssim_on_a_blurred_pair(blurred_pair):
    gt, blurred = blurred_pair
    volumetric, per_channel = calculate_ssim_matlab3d(blurred, gt), calculate_ssim_per_channel(blurred, gt)
    assert 0 < per_channel < volumetric < 1


@pytest.mark.parametrize('metric', [calculate_psnr_uint8_rgb, calculate_ssim_matlab3d, calculate_ssim_per_channel])
def test_metrics_do_not_depend_on_channel_order(blurred_pair, metric):
    gt, blurred = blurred_pair
    assert metric(blurred[..., ::-1], gt[..., ::-1]) == pytest.approx(metric(blurred, gt), abs=1e-12)


def test_crop_border_and_chw_input(blurred_pair):
    gt, blurred = blurred_pair
    cropped = calculate_ssim_matlab3d(blurred[4:-4, 4:-4], gt[4:-4, 4:-4])
    assert calculate_ssim_matlab3d(blurred, gt, crop_border=4) == pytest.approx(cropped, abs=1e-12)
    chw = calculate_psnr_uint8_rgb(blurred.transpose(2, 0, 1), gt.transpose(2, 0, 1), input_order='CHW')
    assert chw == pytest.approx(calculate_psnr_uint8_rgb(blurred, gt), abs=1e-12)


@pytest.mark.parametrize('name', ['calculate_psnr_uint8_rgb', 'calculate_ssim_matlab3d', 'calculate_ssim_per_channel'])
def test_registered_and_called_by_basicsr_calculate_metric(blurred_pair, name):
    gt, blurred = blurred_pair
    value = calculate_metric(dict(img=blurred, img2=gt), {'type': name, 'crop_border': 0, 'test_y_channel': False})
    assert value == pytest.approx(METRIC_REGISTRY.get(name)(blurred, gt), abs=1e-12)


def test_float_input_is_refused_with_the_expected_dtype(blurred_pair):
    gt, blurred = blurred_pair
    with pytest.raises(TypeError, match='expected a uint8 numpy array'):
        calculate_psnr_uint8_rgb(blurred.astype(np.float32), gt)


def test_shape_mismatch_and_bad_input_order_are_refused(blurred_pair):
    gt, blurred = blurred_pair
    with pytest.raises(ValueError, match='same shape'):
        calculate_ssim_matlab3d(blurred[:-1], gt)
    with pytest.raises(ValueError, match="expected one of \\('HWC', 'CHW'\\)"):
        calculate_ssim_matlab3d(blurred, gt, input_order='WHC')
