"""Kernel generators and field synthesis: kernel statistics, centring, reproducibility, field invariants."""
import math

import numpy as np
import pytest
from scipy.ndimage import correlate

from basicsr_blurfield.fields import generators as gen


def _check_kernel(k, size):
    assert k.shape == (size, size)
    assert k.dtype == np.float32
    assert (k >= 0).all()
    assert k.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize('size', [19, 33])
@pytest.mark.parametrize('kind', ['shake', 'linear'])
def test_kernels_are_normalised_centred_and_span_short_to_long_blur(size, kind):
    rng = np.random.default_rng(7)
    kernels = [gen.random_kernel(size, rng, kind) for _ in range(150)]
    r = size // 2
    for k in kernels:
        _check_kernel(k, size)
        cy, cx = gen.center_of_mass(k)
        assert abs(cy - r) < 1e-3 and abs(cx - r) < 1e-3
    lengths = np.array([gen.kernel_length(k) for k in kernels])
    assert lengths.min() < size / 4
    assert lengths.max() > size / 2
    assert np.percentile(lengths, 90) - np.percentile(lengths, 10) > size / 4


def test_same_seed_same_kernels_different_seed_different_kernels():
    a = [gen.random_shake_kernel(19, np.random.default_rng(3)) for _ in range(2)]
    b = gen.random_shake_kernel(19, 3)
    c = gen.random_shake_kernel(19, 4)
    assert np.array_equal(a[0], a[1]) and np.array_equal(a[0], b)
    assert not np.array_equal(b, c)


def test_trajectory_has_constant_speed_and_requested_length():
    path = gen.camera_shake_trajectory(0, num_steps=300, length=45.0)
    assert path.shape == (300, 2)
    assert np.array_equal(path[0], [0.0, 0.0])
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert np.allclose(steps, 45.0 / 299, rtol=1e-9)


def test_trajectory_shape_does_not_depend_on_length():
    a = gen.camera_shake_trajectory(5, num_steps=200, length=10.0)
    b = gen.camera_shake_trajectory(5, num_steps=200, length=30.0)
    assert np.allclose(3 * a, b)


def test_splat_points_is_bilinear_and_keeps_mass_and_centroid():
    pts = np.array([[1.25, 2.5], [3.0, 0.0]])
    grid = gen.splat_points(pts, 5)
    expected = np.zeros((5, 5))
    expected[2, 1], expected[2, 2], expected[3, 1], expected[3, 2] = 0.375, 0.125, 0.375, 0.125
    expected[0, 3] = 1.0
    assert np.allclose(grid, expected)
    ys, xs = np.mgrid[:5, :5]
    assert (grid * xs).sum() / 2 == pytest.approx(pts[:, 0].mean())
    assert (grid * ys).sum() / 2 == pytest.approx(pts[:, 1].mean())


def test_linear_kernel_horizontal_is_a_centred_segment_of_the_requested_length():
    k = gen.linear_kernel(9, 4.0, 0.0)
    _check_kernel(k, 9)
    rows = np.nonzero(k.sum(axis=1))[0]
    cols = np.nonzero(k.sum(axis=0))[0]
    assert rows.tolist() == [4]
    assert cols.tolist() == [2, 3, 4, 5, 6]
    assert gen.kernel_length(k) == pytest.approx(4.0, rel=0.15)
    assert np.array_equal(gen.linear_kernel(9, 0.0, 1.0), np.eye(1, 81, 40, dtype=np.float32).reshape(9, 9))
    vertical = gen.linear_kernel(9, 4.0, math.pi / 2)
    assert np.allclose(vertical, k.T, atol=1e-6)


def test_kernel_from_points_shrinks_paths_that_do_not_fit():
    k = gen.kernel_from_points(np.array([[0.0, 0.0], [100.0, 0.0]]), 7)
    assert k[3, 0] == pytest.approx(0.5) and k[3, 6] == pytest.approx(0.5)


def test_invalid_arguments_list_what_was_expected():
    with pytest.raises(ValueError, match='positive odd int, got 4'):
        gen.random_shake_kernel(4, 0)
    with pytest.raises(ValueError, match=r"expected one of \('shake', 'linear'\), got 'gauss'"):
        gen.random_kernel(5, 0, 'gauss')
    with pytest.raises(TypeError, match='numpy.random.Generator'):
        gen.as_rng('seed')


def test_region_weights_are_inverse_area_with_mean_one():
    labels = np.zeros((4, 5), dtype=np.int64)
    labels[:1, :] = 1
    w = gen.region_weights(labels)
    assert w[0, 0] == pytest.approx(20 / (2 * 5))
    assert w[3, 3] == pytest.approx(20 / (2 * 15))
    assert w.mean() == pytest.approx(1.0)
    assert (w * (labels == 1)).sum() == pytest.approx((w * (labels == 0)).sum())


def test_region_field_masks_are_blurred_by_their_own_kernel_and_renormalised():
    field = gen.region_field(
        48, 40, np.random.default_rng(11), kernel_size=9, max_regions=3, min_area=30, min_regions=2)
    basis, mixing, labels = field['basis'], field['mixing'], field['labels']
    num = basis.shape[0]
    assert num == labels.max() + 1 and num >= 2
    assert mixing.shape == (num, 48, 40)
    assert np.allclose(mixing.sum(0), 1.0, atol=1e-5) and (mixing >= 0).all()
    for b in range(num):
        _check_kernel(basis[b], 9)
        assert (labels == b).sum() >= 30 or b == 0
    # reference: gather-form blur of each hard mask by its kernel (replicate borders), then renormalise
    soft = np.stack(
        [correlate((labels == b).astype(np.float64), basis[b].astype(np.float64), mode='nearest') for b in range(num)])
    assert np.allclose(mixing, soft / soft.sum(0), atol=1e-4)
    assert field['weight'].shape == (48, 40) and field['weight'].mean() == pytest.approx(1.0, rel=1e-5)


def test_region_field_is_reproducible_and_uses_at_most_max_regions():
    counts = set()
    for seed in range(12):
        a = gen.region_field(32, 32, seed, kernel_size=5, max_regions=2, min_area=20, min_regions=0)
        b = gen.region_field(32, 32, seed, kernel_size=5, max_regions=2, min_area=20, min_regions=0)
        assert np.array_equal(a['mixing'], b['mixing']) and np.array_equal(a['basis'], b['basis'])
        counts.add(a['basis'].shape[0])
    assert counts <= {1, 2, 3} and len(counts) >= 2


@pytest.mark.parametrize('kind', ['smooth', 'linear'])
def test_camera_motion_offsets_fit_the_kernel_and_pass_through_zero_at_the_middle(kind):
    motion = gen.random_camera_motion(24, 30, np.random.default_rng(2), max_displacement=4.0, kind=kind)
    off = gen.motion_offsets(motion, 24, 30, num_steps=7)
    assert off.shape == (7, 2, 24, 30) and off.dtype == np.float32
    assert np.abs(off[3]).max() < 1e-6
    assert 0.2 * 4.0 * 0.9 < np.abs(off).max() <= 4.0 + 1e-4
    if kind == 'linear':
        # straight segments: each offset is the end offset times its time
        s = np.linspace(-0.5, 0.5, 7)[:, None, None, None]
        assert np.allclose(off, s * off[-1:] / 0.5, atol=1e-4)


def test_pure_rotation_moves_pixels_on_circles_about_the_centre():
    motion = gen.CameraMotion(center=(10.0, 5.0), rotation=(0.2, 0.0))
    off = motion.offsets(np.array([[20.0, 5.0]]), np.array([-0.5, 0.5]))[:, 0]
    assert np.allclose(off[1], [10 * math.cos(0.1) - 10, 10 * math.sin(0.1)])
    assert np.allclose(off[0], [10 * math.cos(0.1) - 10, -10 * math.sin(0.1)])


def test_motion_kernel_splats_the_trajectory_around_the_centre_tap():
    motion = gen.CameraMotion(center=(0.0, 0.0), translation=((4.0, 0.0), (0.0, 0.0)))
    k = gen.motion_kernel(motion, (3.0, 3.0), 7, num_samples=5)
    expected = np.zeros((7, 7), dtype=np.float32)
    expected[3, 1:6] = 0.2
    assert np.allclose(k, expected)


def test_tent_mixing_interpolates_anchor_kernels_and_sums_to_one():
    anchors, mixing = gen.tent_mixing(9, 13, (3, 4))
    assert anchors.shape == (12, 2) and mixing.shape == (12, 9, 13)
    assert np.allclose(mixing.sum(0), 1.0) and (mixing >= 0).all()
    for b, (x, y) in enumerate(anchors):
        assert mixing[b, int(round(y)), int(round(x))] == pytest.approx(1.0)
    # a linear function of position is reproduced exactly by tent interpolation
    ys, xs = np.mgrid[:9, :13]
    interp = (mixing * (2 * anchors[:, 0] - anchors[:, 1])[:, None, None]).sum(0)
    assert np.allclose(interp, 2 * xs - ys, atol=1e-4)


def test_motion_basis_field_has_exact_kernels_at_the_anchors():
    motion = gen.random_camera_motion(20, 20, 4, max_displacement=3.0)
    field = gen.motion_basis_field(motion, 20, 20, 7, grid=(2, 3))
    assert field['basis'].shape == (6, 7, 7) and field['mixing'].shape == (6, 20, 20)
    x, y = field['anchors'][4]
    assert np.allclose(field['basis'][4], gen.motion_kernel(motion, (x, y), 7))


def test_pad_basis_adds_zero_weight_identity_kernels():
    basis = np.full((2, 3, 3), 1 / 9, dtype=np.float32)
    mixing = np.full((2, 4, 4), 0.5, dtype=np.float32)
    pb, pm = gen.pad_basis(basis, mixing, 5)
    assert pb.shape == (5, 3, 3) and pm.shape == (5, 4, 4)
    assert np.array_equal(pb[2:, 1, 1], np.ones(3)) and pb[2:].sum() == 3
    assert not pm[2:].any()
    with pytest.raises(ValueError, match='expected >= 2'):
        gen.pad_basis(basis, mixing, 1)


@pytest.mark.parametrize('kind', ['smooth', 'linear'])
def test_dense_offsets_match_the_pointwise_motion_model(kind):
    motion = gen.random_camera_motion(12, 15, 9, max_displacement=5.0, kind=kind)
    ys, xs = np.mgrid[:12, :15]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    times = np.linspace(-0.5, 0.5, 5)
    pointwise = motion.offsets(points, times).reshape(5, 12, 15, 2).transpose(0, 3, 1, 2)
    assert np.allclose(gen.motion_offsets(motion, 12, 15, 5), pointwise, atol=1e-5)
    # against the closed form of the model, p(s) = c + (1 + z(s)) R(theta(s)) (p - c) + t(s)
    s, p = times[-1], points[17].astype(np.float64)
    rel = p - motion.center
    if kind == 'linear':
        a, z = motion.rotation[0], motion.zoom[0]
        expected = s * (z * rel + a * np.array([-rel[1], rel[0]]) + motion.translation[0])
    else:
        theta = motion.rotation[0] * s + motion.rotation[1] * s * s
        zoom = 1 + motion.zoom[0] * s + motion.zoom[1] * s * s
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        expected = zoom * rot @ rel - rel + motion.translation[0] * s + motion.translation[1] * s * s
    assert np.allclose(pointwise[-1, :, 1, 2], expected)
