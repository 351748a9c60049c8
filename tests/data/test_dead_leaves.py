"""Dead-leaves images: the r^-3 radius law against its CDF, rendering, palettes, coverage (the dataset option is
tested in test_synthetic_blur_dataset.py)."""
import numpy as np
import pytest

from basicsr_blurfield.data.dead_leaves import dead_leaves_image, power_law_radii


def test_power_law_radii_follow_the_inverse_cube_law():
    r_min, r_max = 1.5, 40.0
    radii = np.sort(power_law_radii(20000, r_min, r_max, np.random.default_rng(0)))
    assert radii.min() >= r_min and radii.max() <= r_max
    cdf = (r_min**-2 - radii**-2) / (r_min**-2 - r_max**-2)  # analytic CDF of p(r) = c r^-3
    empirical = np.arange(1, len(radii) + 1) / len(radii)
    assert np.abs(cdf - empirical).max() < 0.015  # Kolmogorov-Smirnov distance; 1 % level is 0.0115
    assert np.median(radii) == pytest.approx((r_min**-2 - 0.5 * (r_min**-2 - r_max**-2))**-0.5, rel=0.02)
    with pytest.raises(ValueError, match='expected 0 < r_min <= r_max'):
        power_law_radii(3, 2.0, 1.0, np.random.default_rng(0))


def test_dead_leaves_image_paints_palette_discs_deterministically():
    palette = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]], dtype=np.float32)
    image = dead_leaves_image(48, np.random.default_rng(3), palette=palette, supersample=1)
    assert image.shape == (48, 48, 3) and image.dtype == np.float32
    is_red, is_blue = (image == palette[0]).all(-1), (image == palette[1]).all(-1)
    assert (is_red | is_blue).all() and is_red.any() and is_blue.any()  # without supersampling only palette colours
    assert np.array_equal(image, dead_leaves_image(48, np.random.default_rng(3), palette=palette, supersample=1))
    smooth = dead_leaves_image(48, np.random.default_rng(3), palette=palette, supersample=2)
    mixed = ~((smooth == palette[0]).all(-1) | (smooth == palette[1]).all(-1))
    assert 0.02 < mixed.mean() < 0.5  # anti-aliased edges are mixtures of the two colours, the insides are not
    assert np.allclose(smooth[..., 0] + 2 * smooth[..., 1], 1.0, atol=1e-5)  # mixtures stay on the red-blue segment
    with pytest.raises(ValueError, match='non-empty'):
        dead_leaves_image(8, np.random.default_rng(0), palette=np.zeros((0, 3)))


def test_dead_leaves_coverage_hides_the_background_and_gradients_are_sparse():
    def colour_counts(image):
        return np.unique(image.reshape(-1, 3), axis=0, return_counts=True)[1]

    sparse = dead_leaves_image(64, np.random.default_rng(1), coverage=0.05, supersample=1)
    dense = dead_leaves_image(64, np.random.default_rng(1), coverage=6.0, supersample=1)
    # coverage 0.05 leaves about exp(-0.05) = 95 % background (less the discs' parts outside the image)
    assert colour_counts(sparse).max() / sparse[..., 0].size > 0.9
    assert colour_counts(dense).max() / dense[..., 0].size < 0.9 and len(colour_counts(dense)) > 100
    flat = (np.abs(np.diff(dense, axis=1)).max(-1) == 0).mean()
    assert flat > 0.5  # piecewise constant: most horizontal neighbours lie on the same disc
