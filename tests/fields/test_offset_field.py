"""OffsetField: grid_sample blur against the pixel-loop reference, exact bilinear-scatter adjoint, dense splatting,
trajectory constraints (eq. 12-14 of Zhang et al.), gradcheck and validation."""
import pytest
import torch
from field_reference import offset_blur, real_image

from basicsr_blurfield.fields import PADDING_MODES, OffsetField
from basicsr_blurfield.fields.offset_field import trajectory_weights


def random_offsets(num, steps, height, width, scale=1.5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(num, steps, 2, height, width, generator=gen, dtype=dtype)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('channels', (1, 3))
@pytest.mark.parametrize('scale', (0.7, 4.0))
def test_blur_matches_pixel_loop_reference(scale, channels, padding):
    sharp = torch.rand(2, channels, 6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    offsets = random_offsets(2, 3, 6, 7, scale, seed=channels)
    expected = offset_blur(sharp, offsets, padding)
    assert torch.allclose(OffsetField(offsets, padding).blur(sharp), expected, atol=1e-12)


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_blur_matches_pixel_loop_reference_on_a_real_image(padding):
    sharp = real_image(3, size=(8, 9))
    field = OffsetField.from_endpoints(
        random_offsets(1, 1, 8, 9, 2.0)[:, 0],
        random_offsets(1, 1, 8, 9, 2.0, 1)[:, 0], 5, 'quadratic', padding)
    assert torch.allclose(field.blur(sharp), offset_blur(sharp, field.offsets, padding), atol=1e-12)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('num,channels', ((1, 1), (2, 3)))
@pytest.mark.parametrize('height,width', ((9, 8), (8, 9)))
@pytest.mark.parametrize('scale', (1.0, 6.0))
def test_adjoint_satisfies_inner_product_identity(scale, height, width, num, channels, padding):
    gen = torch.Generator().manual_seed(height + width + num)
    x = torch.rand(num, channels, height, width, generator=gen, dtype=torch.float64)
    y = torch.rand(num, channels, height, width, generator=gen, dtype=torch.float64)
    field = OffsetField(random_offsets(num, 5, height, width, scale, seed=channels), padding)
    assert torch.isclose((field.blur(x) * y).sum(), (x * field.adjoint(y)).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('channels', (1, 3))
def test_dense_kernel_field_blurs_like_the_offsets(channels, padding):
    sharp = torch.rand(2, channels, 16, 15, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    field = OffsetField(random_offsets(2, 7, 16, 15, 1.6, seed=3), padding)
    dense = field.dense()
    assert dense.kernel_size == field.auto_kernel_size() and dense.padding == padding
    assert torch.allclose(dense.kernels.sum(1), torch.ones(2, 16, 15, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(dense.blur(sharp), field.blur(sharp), atol=1e-12)
    assert torch.allclose(dense.adjoint(sharp), field.adjoint(sharp), atol=1e-12)


def test_dense_with_a_small_grid_drops_points_outside_it():
    offsets = torch.zeros(1, 2, 2, 5, 5, dtype=torch.float64)
    offsets[:, 1, 0] = 2.0  # second point two pixels to the right: outside a 3 x 3 grid
    kernels = OffsetField(offsets).dense(3).kernels_at(torch.tensor([[0, 2, 2]]))
    assert torch.allclose(kernels[0], torch.tensor([[0, 0, 0], [0, 0.5, 0], [0, 0, 0]], dtype=torch.float64))


def test_kernels_at_splats_bilinearly_with_weight_one_over_t():
    offsets = torch.zeros(1, 2, 2, 5, 6, dtype=torch.float64)
    offsets[0, 0, :, 1, 2] = torch.tensor([0.5, -1.0])  # (dx, dy): half a pixel right, one up
    kernels = OffsetField(offsets).kernels_at(torch.tensor([[0, 1, 2], [0, 0, 0]]))
    assert kernels.shape == (2, 3, 3)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[0, 1] = expected[0, 2] = 0.25
    expected[1, 1] = 0.5
    assert torch.allclose(kernels[0], expected)
    assert torch.allclose(kernels[1], torch.tensor([[0, 0, 0], [0, 1.0, 0], [0, 0, 0]], dtype=torch.float64))


def test_zero_offsets_leave_the_image_unchanged():
    sharp = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(4))
    field = OffsetField(torch.zeros(1, 4, 2, 5, 6))
    assert torch.allclose(field.blur(sharp), sharp, atol=1e-6)
    assert torch.allclose(field.adjoint(sharp), sharp, atol=1e-6)


def test_integer_offset_shifts_the_image_in_dx_dy_order():
    sharp = torch.arange(30, dtype=torch.float64).view(1, 1, 5, 6)
    offsets = torch.zeros(1, 1, 2, 5, 6, dtype=torch.float64)
    offsets[:, :, 0] = 1.0  # dx = +1: every pixel reads its right neighbour
    blurry = OffsetField(offsets, 'zeros').blur(sharp)
    assert torch.allclose(blurry[..., :5], sharp[..., 1:])
    assert torch.equal(blurry[..., 5], torch.zeros(1, 1, 5, dtype=torch.float64))


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_gradcheck_blur_and_adjoint_in_image_and_offsets(padding):
    sharp = torch.rand(2, 2, 5, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    # keep sampling positions away from integer pixels, where bilinear interpolation is not differentiable
    offsets = 0.3 + 0.4 * torch.rand(2, 3, 2, 5, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    offsets = offsets + torch.tensor([0.0, 2.0, -3.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    inputs = (sharp.requires_grad_(), offsets.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, o: OffsetField(o, padding).blur(x), inputs)
    assert torch.autograd.gradcheck(lambda x, o: OffsetField(o, padding).adjoint(x), inputs)


def test_batch_samples_are_blurred_only_with_their_own_offsets():
    sharp = torch.rand(3, 3, 7, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    offsets = random_offsets(3, 5, 7, 8, 2.0)
    batched = OffsetField(offsets).blur(sharp)
    for n in range(3):
        assert torch.allclose(batched[n], OffsetField(offsets[n:n + 1]).blur(sharp[n:n + 1])[0], atol=1e-14)


@pytest.mark.parametrize('constraint', ('linear', 'bilinear', 'quadratic'))
def test_constrained_trajectories_start_at_start_end_at_end_and_pass_through_zero(constraint):
    start = random_offsets(2, 1, 4, 5, 3.0, seed=8)[:, 0]
    end = None if constraint == 'linear' else random_offsets(2, 1, 4, 5, 3.0, seed=9)[:, 0]
    field = OffsetField.from_endpoints(start, end, 7, constraint)
    assert field.offsets.shape == (2, 7, 2, 4, 5)
    assert torch.allclose(field.offsets[:, 0], start)
    assert torch.allclose(field.offsets[:, -1], -start if end is None else end)
    assert torch.equal(field.offsets[:, 3], torch.zeros(2, 2, 4, 5, dtype=torch.float64))


def test_trajectory_weights_follow_equations_12_to_14():
    u = torch.linspace(-1, 1, 5, dtype=torch.float64)
    first, last = trajectory_weights(5, 'linear')  # eq. 12: (1 - 2n / (N - 1)) dp
    assert torch.allclose(first, 1 - 2 * torch.arange(5, dtype=torch.float64) / 4) and not last.any()
    first, last = trajectory_weights(5, 'bilinear')  # eq. 13
    assert torch.allclose(first, torch.tensor([1, 0.5, 0, 0, 0], dtype=torch.float64))
    assert torch.allclose(last, torch.tensor([0, 0, 0, 0.5, 1], dtype=torch.float64))
    first, last = trajectory_weights(5, 'quadratic')  # eq. 14: (p1 + p2) / 2 u^2 + (p2 - p1) / 2 u
    assert torch.allclose(first, u**2 / 2 - u / 2) and torch.allclose(last, u**2 / 2 + u / 2)


def test_to_and_repr():
    field = OffsetField(random_offsets(1, 3, 4, 4), 'reflect').to(torch.float32)
    assert field.offsets.dtype == torch.float32 and field.padding == 'reflect'
    assert repr(field) == "OffsetField(offsets=(1, 3, 2, 4, 4), padding='reflect')"


def test_validation_messages():
    offsets = random_offsets(1, 3, 4, 5)
    with pytest.raises(ValueError, match=r'offsets: expected 5 dimensions \(N, T, 2, H, W\), got shape \(3, 2, 4, 5\)'):
        OffsetField(offsets[0])
    with pytest.raises(ValueError, match=r'\(dx, dy\) in dim 2, got \(1, 3, 3, 4, 5\)'):
        OffsetField(torch.cat([offsets, offsets[:, :, :1]], 2))
    with pytest.raises(ValueError, match='at least 2x2 pixels, got 1x5'):
        OffsetField(offsets[..., :1, :])
    with pytest.raises(ValueError, match='offsets: expected finite values'):
        OffsetField(offsets / 0)
    with pytest.raises(
            ValueError, match=r"constraint: expected one of \('linear', 'bilinear', 'quadratic'\), "
            "got 'cubic'"):
        OffsetField.from_endpoints(offsets[:, 0], offsets[:, 1], 5, 'cubic')
    with pytest.raises(ValueError, match=r'num_steps: expected an odd int >= 3 .* got 4'):
        OffsetField.from_endpoints(offsets[:, 0], offsets[:, 1], 4, 'quadratic')
    with pytest.raises(ValueError, match="end: expected None for constraint='linear'"):
        OffsetField.from_endpoints(offsets[:, 0], offsets[:, 1], 5, 'linear')
    with pytest.raises(
            ValueError,
            match=r"end: expected a tensor of the shape of start \(1, 2, 4, 5\) for "
            r"constraint='quadratic', got NoneType"):
        OffsetField.from_endpoints(offsets[:, 0], None, 5, 'quadratic')
    with pytest.raises(ValueError, match=r'kernel_size: expected a kernel no larger than the image \(4x5\)'):
        OffsetField(offsets * 10).dense()
    with pytest.raises(TypeError, match='sharp: expected dtype torch.float64 like the field'):
        OffsetField(offsets).blur(torch.rand(1, 3, 4, 5))
