"""Richardson-Lucy + TV deconvolution through blur fields: it sharpens synthetic blur, for every field type."""
import numpy as np
import pytest
import torch

from basicsr_blurfield.fields import BasisField, OffsetField
from basicsr_blurfield.fields.generators import linear_kernel, region_field
from basicsr_blurfield.restoration.deconvolution import richardson_lucy_tv, tv_divergence


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.clamp(0, 1) - b).square().mean()))


def sharp_photo(size: int = 48) -> torch.Tensor:
    from skimage import data as skimage_data
    photo = skimage_data.astronaut()[40:40 + 4 * size:4, 150:150 + 4 * size:4]
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))).float().div(255)[None]


def basis_field(size: int = 48) -> BasisField:
    rng = np.random.default_rng(3)
    angles = iter([0.3, 1.9, 1.0, 2.5])
    sample = region_field(
        size,
        size,
        rng,
        kernel_size=11,
        max_regions=2,
        min_area=100,
        kernel_fn=lambda g: linear_kernel(11, 8.0, next(angles)))
    return BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None])


def offset_field(size: int = 48) -> OffsetField:
    start = torch.zeros(1, 2, size, size)
    start[:, 0] = torch.linspace(-4, 4, size)[None, None, :]
    start[:, 1] = 3.0
    return OffsetField.from_endpoints(start, num_steps=15, constraint='linear')


@pytest.mark.parametrize(
    'make_field', [basis_field, lambda: basis_field().dense(), offset_field], ids=['basis', 'kernel', 'offset'])
def test_deconvolution_raises_psnr_on_synthetic_blur(make_field):
    sharp, field = sharp_photo(), make_field()
    blurry = field.blur(sharp)
    restored = richardson_lucy_tv(blurry, field, num_iter=30, tv_weight=2e-3)
    before, after = psnr(blurry, sharp), psnr(restored, sharp)
    assert restored.shape == sharp.shape and bool((restored >= 0).all())
    assert after > before + 1.0, (before, after)


def test_plain_richardson_lucy_keeps_an_exact_fixed_point():
    sharp, field = sharp_photo(), basis_field()
    blurry = field.blur(sharp)
    restored = richardson_lucy_tv(blurry, field, num_iter=3, tv_weight=0.0, init=sharp)
    assert torch.allclose(restored, sharp, atol=1e-5)
    assert torch.allclose(richardson_lucy_tv(blurry, field, num_iter=0), blurry.clamp_min(1e-6))


def test_tv_divergence_is_minus_the_adjoint_of_the_forward_difference():
    torch.manual_seed(0)
    image = torch.rand(1, 1, 6, 7, dtype=torch.float64)
    flat = torch.full_like(image, 0.4)
    assert torch.count_nonzero(tv_divergence(flat)) == 0
    # large eps: div(grad u / eps) = laplacian / eps with zero flux across the border, which sums to zero
    assert abs(float(tv_divergence(image, eps=1e6).sum())) < 1e-12
    step = torch.zeros(1, 1, 6, 7, dtype=torch.float64)
    step[..., 4:] = 1
    div = tv_divergence(step, eps=1e-9)
    assert torch.allclose(div[..., 3], torch.ones(6, dtype=torch.float64))
    assert torch.allclose(div[..., 4], -torch.ones(6, dtype=torch.float64))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match='expected \\(N, C, H, W\\)'):
        richardson_lucy_tv(torch.rand(3, 8, 8), basis_field())
    with pytest.raises(ValueError, match='tv_weight >= 0'):
        richardson_lucy_tv(torch.rand(1, 3, 48, 48), basis_field(), tv_weight=-1)
