"""Non-blind deconvolution through blur fields (Richardson-Lucy + TV, CG with gradient / half-quadratic TV priors):
exactness against a dense solve, [0, 1] range, borders as the field's padding, and sharpening of synthetic blur for
every field type."""
import numpy as np
import pytest
import torch

from basicsr_blurfield.fields import PADDING_MODES, BasisField, KernelField, OffsetField
from basicsr_blurfield.fields.generators import linear_kernel, region_field
from basicsr_blurfield.restoration.deconvolution import (PRECONDITIONERS, circulant_preconditioner, conjugate_gradient,
                                                         deconvolve_cg, image_gradient, image_gradient_adjoint,
                                                         mixture_preconditioner, richardson_lucy_tv, tv_divergence,
                                                         weighted_laplacian)


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


METHODS = {
    'rl_tv': lambda blurry, field: richardson_lucy_tv(blurry, field, num_iter=30, tv_weight=2e-3),
    'cg_gradient': lambda blurry, field: deconvolve_cg(blurry, field, prior='gradient'),
    'cg_tv': lambda blurry, field: deconvolve_cg(blurry, field, prior='tv'),
    'pcg_tv': lambda blurry, field: deconvolve_cg(blurry, field, prior='tv', precondition=True),
}


@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize(
    'make_field', [basis_field, lambda: basis_field().dense(), offset_field], ids=['basis', 'kernel', 'offset'])
def test_deconvolution_raises_psnr_on_synthetic_blur(make_field, method):
    sharp, field = sharp_photo(), make_field()
    blurry = (field.blur(sharp) + 0.01 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1)
    restored = METHODS[method](blurry, field)
    before, after = psnr(blurry, sharp), psnr(restored, sharp)
    assert restored.shape == sharp.shape and bool((restored >= 0).all()) and bool((restored <= 1).all())
    assert after > before + 1.0, (before, after)


def tiny_field(kind: str, padding: str):
    """A float64 field on a 6 x 7 image with a different kernel at every pixel."""
    generator = torch.Generator().manual_seed(1)
    if kind == 'offset':
        offsets = 1.5 * torch.randn(1, 5, 2, 6, 7, generator=generator, dtype=torch.float64)
        return OffsetField(offsets, padding=padding)
    if kind == 'basis':
        basis = torch.rand(1, 3, 3, 3, generator=generator, dtype=torch.float64)
        mixing = torch.rand(1, 3, 6, 7, generator=generator, dtype=torch.float64)
        return BasisField(basis / basis.sum((2, 3), keepdim=True), mixing / mixing.sum(1, keepdim=True), padding)
    kernels = torch.rand(1, 9, 6, 7, generator=generator, dtype=torch.float64)
    return KernelField(kernels / kernels.sum(1, keepdim=True), padding)


def dense_matrix(operator, shape) -> torch.Tensor:
    """The matrix of a linear map on images of ``shape``, column j = operator(unit vector j)."""
    size = int(np.prod(shape))
    units = torch.eye(size, dtype=torch.float64).reshape(size, *shape[1:])
    return torch.stack([operator(unit[None]).flatten() for unit in units], 1)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('kind', ['kernel', 'basis', 'offset'])
def test_cg_equals_a_dense_linear_solve(kind, padding):
    field, weight = tiny_field(kind, padding), 0.05
    shape = (1, 2, 6, 7)
    blurry = torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    blur = dense_matrix(field.blur, shape)
    grad = dense_matrix(image_gradient, shape)
    normal = blur.T @ blur + weight * grad.T @ grad
    expected = torch.linalg.solve(normal, blur.T @ blurry.flatten()).view(shape)
    for precondition in (False, True, 'circulant') + (('mixture', ) if kind == 'basis' else ()):
        options = dict(weight=weight, cg_iter=500, tol=1e-12, clip=False, precondition=precondition)
        restored = deconvolve_cg(blurry, field, prior='gradient', **options)
        assert torch.allclose(restored, expected, atol=1e-9), (precondition, float((restored - expected).abs().max()))


def test_weighted_laplacian_is_the_transpose_of_the_weighted_gradient():
    generator = torch.Generator().manual_seed(8)
    image = torch.rand(2, 3, 5, 8, generator=generator, dtype=torch.float64)
    weights = torch.rand(2, 3, 1, 5, 8, generator=generator, dtype=torch.float64)
    for weight in (0.3, weights):
        expected = image_gradient_adjoint(weight * image_gradient(image))
        assert torch.allclose(weighted_laplacian(image, weight), expected, atol=1e-14)


def test_circulant_preconditioner_is_symmetric_positive_definite_and_speeds_up_cg():
    generator = torch.Generator().manual_seed(9)
    taps = torch.zeros(1, 49, 1, 1, dtype=torch.float64)
    taps[0, 21:28] = 1 / 7  # the same horizontal 7-tap box at every pixel
    field = KernelField(taps.expand(1, 49, 32, 32).contiguous(), padding='zeros')
    inverse = circulant_preconditioner(field)(torch.tensor([1e-3], dtype=torch.float64))
    x, y = torch.rand(2, 1, 3, 32, 32, generator=generator, dtype=torch.float64)
    assert torch.isclose((inverse(x) * y).sum(), (x * inverse(y)).sum(), rtol=1e-10)
    assert float((x * inverse(x)).sum()) > 0
    operator = lambda u: field.adjoint(field.blur(u)) + 1e-3 * image_gradient_adjoint(image_gradient(u))  # noqa: E731
    rhs = field.adjoint(x)
    plain, plain_steps, _, _ = conjugate_gradient(operator, rhs, max_iter=400, tol=1e-8)
    fast, fast_steps, _, _ = conjugate_gradient(operator, rhs, max_iter=400, tol=1e-8, preconditioner=inverse)
    assert torch.allclose(fast, plain, atol=1e-5) and 2 * fast_steps < plain_steps, (fast_steps, plain_steps)


def two_region_field(size: int = 32, num: int = 1) -> BasisField:
    """Left half blurred horizontally, right half vertically (7-tap boxes), a 5-pixel soft seam; float64."""
    basis = torch.zeros(num, 2, 7, 7, dtype=torch.float64)
    basis[:, 0, 3, :], basis[:, 1, :, 3] = 1 / 7, 1 / 7
    right = ((torch.arange(size, dtype=torch.float64) - size / 2 + 2) / 4).clamp(0, 1)
    mixing = torch.stack((1 - right, right)).view(1, 2, 1, size).expand(num, 2, size, size).contiguous()
    return BasisField(basis, mixing, padding='zeros')


@pytest.mark.parametrize('channels', (1, 3))
def test_mixture_preconditioner_is_symmetric_positive_definite(channels):
    generator = torch.Generator().manual_seed(10)
    field = two_region_field(num=2)
    inverse = mixture_preconditioner(field)(torch.tensor([1e-3, 0.1], dtype=torch.float64))
    x, y = torch.rand(2, 2, channels, 32, 32, generator=generator, dtype=torch.float64)
    assert torch.isclose((inverse(x) * y).sum(), (x * inverse(y)).sum(), rtol=1e-10)
    assert float((x * inverse(x)).flatten(1).sum(1).min()) > 0
    # batch samples are preconditioned on their own
    second = BasisField(field.basis[1:], field.mixing[1:], 'zeros')
    alone = mixture_preconditioner(second)(torch.tensor([0.1], dtype=torch.float64))(x[1:])
    assert torch.allclose(inverse(x)[1:], alone, atol=1e-12)


@pytest.mark.parametrize('channels', (1, 3))
def test_mixture_preconditioned_hqs_is_sharper_in_few_steps_on_a_region_field_and_converges_to_the_same(channels):
    sharp, field = sharp_photo()[:, :channels], basis_field()
    noise = 0.01 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(0))
    blurry = (field.blur(sharp) + noise).clamp(0, 1)
    quality = {
        precondition:
        psnr(deconvolve_cg(blurry, field, prior='tv', num_iter=2, cg_iter=4, precondition=precondition), sharp)
        for precondition in (False, 'circulant', 'mixture')
    }
    assert quality['mixture'] > quality['circulant'] + 0.2 and quality['circulant'] > quality[False] + 0.2, quality
    converged = [
        deconvolve_cg(blurry, field, prior='tv', num_iter=4, cg_iter=40, precondition=precondition)
        for precondition in ('circulant', 'mixture')
    ]
    assert float((converged[0] - converged[1]).abs().max()) < 2e-3


def test_mixture_preconditioner_inverts_a_uniform_field_like_its_fourier_inverse_on_the_channel_mean():
    """One basis kernel: ``M^-1`` is that kernel's circulant inverse on gray images and the identity on images whose
    channels sum to 0 (periodic image, FFT check)."""
    basis = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    basis[0, 0, 1] = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    field = BasisField(basis, torch.ones(1, 1, 8, 10, dtype=torch.float64))
    gray = torch.rand(1, 1, 8, 10, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    mu = 0.1
    symbol = torch.fft.rfft2(basis[0, 0], s=(8, 10)).abs().square()
    freq_y = torch.arange(8, dtype=torch.float64)[:, None] / 8
    freq_x = torch.arange(6, dtype=torch.float64)[None] / 10
    symbol = symbol + mu * (4 * torch.sin(torch.pi * freq_y)**2 + 4 * torch.sin(torch.pi * freq_x)**2)
    expected = torch.fft.irfft2(torch.fft.rfft2(gray) / symbol, s=(8, 10))
    inverse = mixture_preconditioner(field)(torch.tensor([mu], dtype=torch.float64))
    assert torch.allclose(inverse(gray), expected, atol=1e-12)
    assert torch.allclose(inverse(gray.expand(1, 3, 8, 10)), expected.expand(1, 3, 8, 10), atol=1e-12)
    chroma = torch.cat((gray, -gray, torch.zeros_like(gray)), 1)
    assert torch.allclose(inverse(chroma), chroma, atol=1e-14)


def test_precondition_true_picks_the_mixture_for_basis_fields_and_names_are_checked():
    field = two_region_field()
    blurry = field.blur(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(12), dtype=torch.float64))
    options = dict(prior='tv', num_iter=2, cg_iter=3, clip=False)
    default = deconvolve_cg(blurry, field, precondition=True, **options)
    assert torch.equal(default, deconvolve_cg(blurry, field, precondition='mixture', **options))
    assert not torch.allclose(default, deconvolve_cg(blurry, field, precondition='circulant', **options))
    dense = field.dense()
    assert torch.equal(
        deconvolve_cg(blurry, dense, precondition=True, **options),
        deconvolve_cg(blurry, dense, precondition='circulant', **options))
    assert PRECONDITIONERS == ('circulant', 'mixture')
    with pytest.raises(
            ValueError, match=r"precondition: expected True, False or one of \('circulant', 'mixture'\), "
            r"got 'fourier'"):
        deconvolve_cg(blurry, field, precondition='fourier')
    with pytest.raises(TypeError, match="precondition='mixture': expected a BasisField, got KernelField"):
        deconvolve_cg(blurry, dense, precondition='mixture')


def test_cg_solves_each_sample_of_a_batch_on_its_own():
    generator = torch.Generator().manual_seed(3)
    matrices = torch.rand(2, 5, 5, generator=generator, dtype=torch.float64)
    matrices = matrices @ matrices.transpose(1, 2) + 0.1 * torch.eye(5, dtype=torch.float64)
    matrices[1] *= 1e3  # very different scales: shared step sizes would fail on one sample
    rhs = torch.rand(2, 5, generator=generator, dtype=torch.float64)
    solution, steps, residual, _ = conjugate_gradient(
        lambda x: (matrices @ x[..., None])[..., 0], rhs, max_iter=50, tol=1e-12)
    assert torch.allclose(solution, torch.linalg.solve(matrices, rhs), atol=1e-9)
    assert steps <= 10 and residual <= 1e-12


def test_cg_stops_at_the_tolerance():
    field, shape = tiny_field('basis', 'replicate'), (1, 1, 6, 7)
    blurry = torch.rand(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    operator = lambda x: field.adjoint(field.blur(x)) + 0.05 * image_gradient_adjoint(image_gradient(x))  # noqa: E731
    rhs = field.adjoint(blurry)
    _, loose_steps, loose, _ = conjugate_gradient(operator, rhs, blurry, max_iter=100, tol=1e-2)
    solution, tight_steps, tight, residual = conjugate_gradient(operator, rhs, blurry, max_iter=100, tol=1e-10)
    assert loose <= 1e-2 and tight <= 1e-10 and loose_steps < tight_steps
    assert torch.allclose(residual, rhs - operator(solution), atol=1e-12)
    # a given first residual replaces the operator call, same path
    again = conjugate_gradient(operator, rhs, blurry, max_iter=5, tol=0, residual=rhs - operator(blurry))[0]
    assert torch.allclose(again, conjugate_gradient(operator, rhs, blurry, max_iter=5, tol=0)[0], atol=1e-14)


def test_image_gradient_adjoint_is_its_exact_transpose():
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(2, 3, 5, 8, generator=generator, dtype=torch.float64)
    grad = torch.rand(2, 3, 2, 5, 8, generator=generator, dtype=torch.float64)
    lhs = (image_gradient(image) * grad).sum()
    assert torch.isclose(lhs, (image * image_gradient_adjoint(grad)).sum(), rtol=1e-12)
    # the same differences as RL-TV's divergence: for a huge eps, div(grad u / eps) * eps = -D^T D u
    laplacian = image_gradient_adjoint(image_gradient(image))
    assert torch.allclose(-tv_divergence(image, eps=1e6) * 1e6, laplacian, atol=1e-9)


def tv_objective(restored, blurry, field, weight, eps=1e-2):
    tv = (image_gradient(restored).square().sum(2) + eps * eps).sqrt().sum()
    return float(0.5 * (field.blur(restored) - blurry).square().sum() + weight * tv)


def test_half_quadratic_rounds_lower_the_tv_objective():
    sharp, field = sharp_photo(), basis_field()
    blurry = (field.blur(sharp) + 0.01 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(6))).clamp(
        0, 1)
    rounds = [deconvolve_cg(blurry, field, prior='tv', num_iter=count, cg_iter=30, clip=False) for count in (1, 2, 4)]
    objectives = [tv_objective(image, blurry, field, 1e-3) for image in [blurry] + rounds]
    assert all(a > b for a, b in zip(objectives, objectives[1:])), objectives


def test_half_quadratic_rounds_solve_the_weighted_normal_equations():
    field, shape, weight, eps = tiny_field('offset', 'reflect'), (1, 1, 6, 7), 0.05, 0.1
    blurry = torch.rand(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grad, blur = dense_matrix(image_gradient, shape), dense_matrix(field.blur, shape)
    expected = blurry.flatten()
    for rounds in (1, 2, 3):  # each round: weights of the previous image, then an exact solve
        magnitude = (grad @ expected).view(2, -1).square().sum(0).add(eps * eps).sqrt()
        weights = (weight / magnitude).repeat(2)
        expected = torch.linalg.solve(blur.T @ blur + grad.T @ (weights[:, None] * grad), blur.T @ blurry.flatten())
        restored = deconvolve_cg(
            blurry, field, prior='tv', weight=weight, tv_eps=eps, num_iter=rounds, cg_iter=500, tol=1e-13, clip=False)
        assert torch.allclose(restored.flatten(), expected, atol=1e-9), rounds


@pytest.mark.parametrize('method', sorted(METHODS))
def test_results_stay_in_the_unit_range(method):
    field = basis_field()
    checker = (torch.arange(48)[:, None] // 6 + torch.arange(48) // 6) % 2
    sharp = checker.float().expand(1, 3, 48, 48).contiguous()
    blurry = field.blur(sharp)
    restored = METHODS[method](blurry, field)
    assert float(restored.min()) >= 0 and float(restored.max()) <= 1
    if method != 'rl_tv':  # unclipped, the linear solvers overshoot on saturated edges: the clip is what holds
        prior = method.split('_')[1]
        unclipped = deconvolve_cg(blurry, field, prior=prior, clip=False, precondition=method.startswith('p'))
        assert float(unclipped.max()) > 1 or float(unclipped.min()) < 0


CONVERGED = {
    'rl_tv': lambda blurry, field: richardson_lucy_tv(blurry, field, num_iter=100, tv_weight=2e-3),
    'cg_gradient': lambda blurry, field: deconvolve_cg(blurry, field, prior='gradient', cg_iter=200),
    'cg_tv': lambda blurry, field: deconvolve_cg(blurry, field, prior='tv', num_iter=4, cg_iter=60),
    'pcg_tv': lambda blurry, field: deconvolve_cg(blurry, field, prior='tv', num_iter=4, cg_iter=30, precondition=True),
}


@pytest.mark.parametrize('method', sorted(CONVERGED))
def test_borders_are_restored_like_the_field_pads_them(method):
    zeros = BasisField(basis_field().basis, basis_field().mixing, padding='zeros')
    flat = torch.full((1, 3, 48, 48), 0.6)
    blurry = zeros.blur(flat)  # zeros padding: the borders darken
    assert float(blurry[..., 0, 0].max()) < 0.45
    restored = CONVERGED[method](blurry, zeros)
    assert float((restored - flat).abs().max()) < 0.03, float((restored - flat).abs().max())
    # the same image deconvolved as if the borders were replicated keeps them dark
    replicate = basis_field()
    assert float((CONVERGED[method](blurry, replicate) - flat).abs().max()) > 0.1


def test_plain_richardson_lucy_keeps_an_exact_fixed_point():
    sharp, field = sharp_photo().double().clamp_min(1e-3), basis_field().to(torch.float64)
    blurry = field.blur(sharp)
    restored = richardson_lucy_tv(blurry, field, num_iter=3, tv_weight=0.0, init=sharp)
    assert torch.allclose(restored, sharp, atol=1e-10)
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
    for solve in (richardson_lucy_tv, deconvolve_cg):
        with pytest.raises(
                ValueError,
                match='the field is for N, H, W = \\(1, 48, 48\\), got an image of shape '
                '\\(1, 3, 40, 48\\); estimate the field on this image'):
            solve(torch.rand(1, 3, 40, 48), basis_field())
        with pytest.raises(TypeError, match='expected dtype torch.float32 like the field, got torch.float64'):
            solve(torch.rand(1, 3, 48, 48, dtype=torch.float64), basis_field())
        with pytest.raises(TypeError, match='expected a blur field with blur and adjoint'):
            solve(torch.rand(1, 3, 48, 48), torch.rand(1, 9, 48, 48))
    with pytest.raises(ValueError, match='without rhs, pass init and its residual'):
        conjugate_gradient(lambda x: x, None, torch.zeros(2))
    with pytest.raises(ValueError, match="prior: expected one of \\('gradient', 'tv'\\), got 'l1'"):
        deconvolve_cg(torch.rand(1, 3, 48, 48), basis_field(), prior='l1')


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('method', sorted(METHODS))
def test_the_gpu_gives_the_cpus_restoration(method):
    sharp, field = sharp_photo(), basis_field()
    blurry = field.blur(sharp)
    expected = METHODS[method](blurry, field)
    assert torch.allclose(METHODS[method](blurry.cuda(), field.to('cuda')).cpu(), expected, atol=1e-3)
