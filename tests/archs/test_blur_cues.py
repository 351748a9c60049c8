"""Blur cues (local autocorrelation of the derivatives) against a pixel-loop reference, and the estimator option."""
import math

import numpy as np
import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr_blurfield.archs.blur_cues import (LOG_CONTRAST_CENTRE, LOG_CONTRAST_SCALE, DerivativeAutocorrelation,
                                               gaussian_window_blur, polar_lags)
from basicsr_blurfield.fields import KernelField
from basicsr_blurfield.fields.generators import linear_kernel


def reference_cues(image: np.ndarray, lags, sigma: float, eps: float) -> np.ndarray:
    """Pixel loops: (C, H, W) -> (L + 1, H, W), Gaussian window with reflected borders, zero derivatives outside."""
    grey = image.mean(0)
    height, width = grey.shape
    grad_x, grad_y = np.zeros_like(grey), np.zeros_like(grey)
    grad_x[:, :-1] = grey[:, 1:] - grey[:, :-1]
    grad_y[:-1] = grey[1:] - grey[:-1]

    def at(array, y, x):
        return array[y, x] if 0 <= y < height and 0 <= x < width else 0.0

    radius = int(math.ceil(3 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1)**2 / (2 * sigma * sigma))
    taps /= taps.sum()

    def reflect(index, size):
        index = abs(index)
        return 2 * (size - 1) - index if index >= size else index

    out = []
    for dy, dx in [(0, 0)] + list(lags):
        product = np.array([[grad_x[y, x] * at(grad_x, y + dy, x + dx) + grad_y[y, x] * at(grad_y, y + dy, x + dx)
                             for x in range(width)] for y in range(height)])
        window = np.zeros_like(product)
        for y in range(height):
            for x in range(width):
                window[y, x] = sum(taps[i + radius] * taps[j + radius] * product[reflect(y + i, height),
                                                                                reflect(x + j, width)]
                                   for i in range(-radius, radius + 1) for j in range(-radius, radius + 1))
        out.append(window)
    contrast = out[0] + eps
    return np.stack([plane / contrast for plane in out[1:]] + [(np.log(contrast) - LOG_CONTRAST_CENTRE) /
                                                               LOG_CONTRAST_SCALE])


def test_cues_match_the_pixel_loop_reference():
    image = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lags = [(0, 1), (1, -2), (2, 0), (1, 3)]
    cues = DerivativeAutocorrelation(lags, sigma=1.2, eps=1e-4)(image)
    assert cues.shape == (1, 5, 9, 11) and cues.dtype == torch.float64
    expected = reference_cues(image[0].numpy(), lags, 1.2, 1e-4)
    assert np.allclose(cues[0].numpy(), expected, atol=1e-10)


def test_polar_lags_are_one_half_plane_without_repeats():
    lags = polar_lags()
    assert len(lags) == len(set(lags)) == 176
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in lags)
    assert max(max(abs(dy), abs(dx)) for dy, dx in lags) == 18
    assert polar_lags(2, (1, 2)) == [(0, 1), (0, 2), (1, 0), (2, 0)]


def test_a_horizontal_motion_blur_correlates_the_derivatives_along_x_over_its_length():
    from skimage import data as skimage_data
    photo = torch.from_numpy(skimage_data.camera()[100:228, 150:278].astype(np.float32) / 255)[None, None]
    kernel = torch.from_numpy(linear_kernel(19, 9.0, 0.0)).float()
    blurry = KernelField(kernel.flatten()[None, :, None, None].expand(1, 361, 128, 128).contiguous()).blur(photo)
    lags = [(0, length) for length in range(1, 15)] + [(length, 0) for length in range(1, 15)]
    cues = DerivativeAutocorrelation(lags, sigma=8.0)(blurry)[0, :, 40:88, 40:88].mean((1, 2))
    along, across = cues[:14], cues[14:28]
    assert bool((along[:8] > across[:8]).all())  # correlated along the motion over its length, not across it
    assert float(along[2:6].mean()) > float(across[2:6].mean()) + 0.4
    assert float(along[10:].max()) < 0.3  # and no longer than the blur


def test_gaussian_window_blur_keeps_constants_and_takes_tiny_images():
    constant = torch.full((2, 3, 5, 4), 0.3)
    assert torch.allclose(gaussian_window_blur(constant, 8.0), constant)  # radius 24 > size: replicated borders
    image = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    assert abs(float(gaussian_window_blur(image, 2.0).mean()) - float(image.mean())) < 0.01


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r'lags: expected \(dy, dx\) with dy > 0, or dy == 0 and dx > 0; got \(0, -1\)'):
        DerivativeAutocorrelation([(0, -1)])
    with pytest.raises(ValueError, match='sigma and eps must be > 0'):
        DerivativeAutocorrelation(sigma=0)
    with pytest.raises(ValueError, match=r'image: expected \(N, C, H, W\), got shape \(3, 8, 8\)'):
        DerivativeAutocorrelation()(torch.rand(3, 8, 8))


def test_estimator_with_cues_builds_from_yaml_reads_them_and_reloads_from_its_weights(tmp_path):
    from basicsr_blurfield.restoration.estimators import load_network
    opt = yaml.safe_load("""
type: FlowKernelEstimator
img_channel: 3
kernel_size: 5
num_feat: 8
input_cues: autocorrelation
""")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build_network(opt).eval()
    assert net.kernel_extra.Encoding_Block1.Conv_head.in_channels == 3 + 177
    lq = torch.rand(2, 3, 30, 26, generator=torch.Generator().manual_seed(2))
    field = net(lq)
    assert field.kernels.shape == (2, 25, 30, 26)
    assert torch.allclose(field.kernels.sum(1), torch.ones(2, 30, 26), atol=1e-5)
    lazy = net(lq, lazy=True)
    points = torch.tensor([[0, 3, 4], [1, 29, 25]])
    assert torch.allclose(lazy.kernels_at(points), field.kernels_at(points), atol=1e-6)
    with torch.no_grad():  # G reading the cues alone: blind to brightness, not to the image's structure
        net.kernel_extra.Encoding_Block1.Conv_head.weight[:, :3] = 0
        brighter, other = 0.5 * lq + 0.2, torch.rand(lq.shape, generator=torch.Generator().manual_seed(3))
        cue_only = net(0.5 * lq).kernels
        assert torch.allclose(net(brighter).kernels, cue_only, atol=1e-5)
        assert not torch.allclose(net(other).kernels, cue_only, atol=1e-3)
    torch.save({'params': net.state_dict()}, tmp_path / 'cues.pth')
    kind, loaded = load_network(str(tmp_path / 'cues.pth'))
    assert kind == 'FlowKernelEstimator' and loaded.cues is not None
    assert torch.equal(loaded(lq).kernels, net(lq).kernels)
    with pytest.raises(ValueError, match=r"input_cues: expected one of \(None, 'autocorrelation'\), got 'edges'"):
        build_network(dict(opt, input_cues='edges'))
