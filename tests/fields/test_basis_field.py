"""BasisField: FFT and direct paths against the pixel-loop reference, adjointness, gradcheck, dense, validation."""
import pytest
import torch
from field_reference import per_pixel_blur, real_image

from basicsr_blurfield.fields import PADDING_MODES, BasisField, normalize_kernels
from basicsr_blurfield.fields.basis_field import choose_method, fast_fft_length


def random_basis_field(num, num_basis, size, height, width, padding='replicate', seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    basis = normalize_kernels(torch.rand(num, num_basis, size, size, generator=gen, dtype=dtype)**4, (2, 3))
    mixing = torch.softmax(3 * torch.randn(num, num_basis, height, width, generator=gen, dtype=dtype), 1)
    return BasisField(basis, mixing, padding)


def reference(field, sharp):
    kernels = torch.einsum('nbij,nbhw->nijhw', field.basis, field.mixing)
    return per_pixel_blur(sharp, kernels, field.padding)


@pytest.mark.parametrize('method', ('fft', 'direct'))
@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('channels', (1, 3))
@pytest.mark.parametrize('size', (3, 5))
def test_blur_matches_pixel_loop_reference(size, channels, padding, method):
    field = random_basis_field(2, 3, size, 7, 6, padding, seed=size)
    sharp = torch.rand(2, channels, 7, 6, generator=torch.Generator().manual_seed(channels), dtype=torch.float64)
    assert torch.allclose(field.blur(sharp, method), reference(field, sharp), atol=1e-12)


@pytest.mark.parametrize('method', ('fft', 'direct'))
@pytest.mark.parametrize('padding', PADDING_MODES)
def test_blur_matches_pixel_loop_reference_on_a_real_image(padding, method):
    sharp = real_image(3, size=(9, 10))
    field = random_basis_field(1, 4, 7, 9, 10, padding, seed=7)
    assert torch.allclose(field.blur(sharp, method), reference(field, sharp), atol=1e-12)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('size', (5, 11))
def test_fft_and_direct_paths_agree_with_dense_kernel_field_in_float32(size, padding):
    field = random_basis_field(2, 5, size, 23, 18, padding, dtype=torch.float32)
    sharp = torch.rand(2, 3, 23, 18, generator=torch.Generator().manual_seed(4))
    dense = field.dense().blur(sharp)
    assert torch.allclose(field.blur(sharp, 'fft'), dense, atol=2e-6)
    assert torch.allclose(field.blur(sharp, 'direct'), dense, atol=2e-6)
    assert torch.allclose(field.blur(sharp), dense, atol=2e-6)


@pytest.mark.parametrize('method', ('fft', 'direct'))
@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('num,channels', ((1, 1), (2, 3)))
@pytest.mark.parametrize('height,width', ((9, 8), (8, 9)))
def test_adjoint_satisfies_inner_product_identity(height, width, num, channels, padding, method):
    gen = torch.Generator().manual_seed(height + 10 * width)
    x = torch.rand(num, channels, height, width, generator=gen, dtype=torch.float64)
    y = torch.rand(num, channels, height, width, generator=gen, dtype=torch.float64)
    field = random_basis_field(num, 3, 5, height, width, padding, seed=num)
    assert torch.isclose((field.blur(x, method) * y).sum(), (x * field.adjoint(y, method)).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize('method', ('fft', 'direct'))
def test_adjoint_equals_dense_kernel_field_adjoint(method):
    field = random_basis_field(2, 4, 5, 8, 7, 'reflect')
    y = torch.rand(2, 3, 8, 7, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    assert torch.allclose(field.adjoint(y, method), field.dense().adjoint(y), atol=1e-12)


@pytest.mark.parametrize('method', ('fft', 'direct'))
@pytest.mark.parametrize('padding', PADDING_MODES)
def test_gradcheck_blur_and_adjoint_in_image_basis_and_mixing(padding, method):
    field = random_basis_field(2, 2, 3, 5, 4)
    sharp = torch.rand(2, 2, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inputs = (sharp.requires_grad_(), field.basis.clone().requires_grad_(), field.mixing.clone().requires_grad_())

    def blur(x, basis, mixing):
        return BasisField(basis, mixing, padding, check=False).blur(x, method)

    def adjoint(x, basis, mixing):
        return BasisField(basis, mixing, padding, check=False).adjoint(x, method)

    assert torch.autograd.gradcheck(blur, inputs)
    assert torch.autograd.gradcheck(adjoint, inputs)


@pytest.mark.parametrize('wanted', ('sharp', 'basis', 'mixing'))
def test_fft_blur_gradients_of_one_input_at_a_time_equal_the_direct_paths(wanted):
    field = random_basis_field(2, 3, 5, 9, 8, 'reflect', seed=3)
    gen = torch.Generator().manual_seed(5)
    sharp = torch.rand(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    weights = torch.rand(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    grads = {}
    for method in ('fft', 'direct'):
        inputs = {'sharp': sharp.clone(), 'basis': field.basis.clone(), 'mixing': field.mixing.clone()}
        inputs[wanted].requires_grad_()
        blurry = BasisField(inputs['basis'], inputs['mixing'], 'reflect', check=False).blur(inputs['sharp'], method)
        grads[method], = torch.autograd.grad((blurry * weights).sum(), inputs[wanted])
    assert torch.allclose(grads['fft'], grads['direct'], atol=1e-12)


def test_fft_blur_keeps_only_its_inputs_for_the_backward():
    field = random_basis_field(1, 6, 5, 12, 10, seed=2)
    basis, mixing = field.basis.clone().requires_grad_(), field.mixing.clone().requires_grad_()
    sharp = torch.rand(1, 3, 12, 10, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        BasisField(basis, mixing, check=False).blur(sharp, 'fft').sum().backward()
    padded_numel = 3 * (12 + 4) * (10 + 4)  # the padded image (the padding keeps the image itself)
    assert sum(saved) <= sharp.numel() + padded_numel + basis.numel() + mixing.numel()  # no B filtered images


def test_batch_samples_are_blurred_only_with_their_own_basis_and_mixing():
    field = random_basis_field(3, 3, 5, 8, 8)
    sharp = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for method in ('fft', 'direct'):
        batched = field.blur(sharp, method)
        for n in range(3):
            alone = BasisField(field.basis[n:n + 1], field.mixing[n:n + 1]).blur(sharp[n:n + 1], method)
            assert torch.allclose(batched[n], alone[0], atol=1e-14)


def test_dense_and_kernels_at_are_the_mixed_basis():
    field = random_basis_field(2, 3, 5, 6, 7, 'zeros')
    dense = field.dense()
    assert dense.kernel_size == 5 and dense.padding == 'zeros'
    points = torch.tensor([[1, 5, 6], [0, 2, 3]])
    kernels = field.kernels_at(points)
    for p, (n, y, x) in enumerate(points.tolist()):
        expected = sum(field.mixing[n, b, y, x] * field.basis[n, b] for b in range(3))
        assert torch.allclose(kernels[p], expected, atol=1e-15)
    assert torch.allclose(dense.kernels_at(points), kernels, atol=1e-15)
    wide = random_basis_field(1, 3, 5, 9, 8, 'reflect').dense(7)
    sharp = torch.rand(1, 3, 9, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert wide.kernel_size == 7
    assert torch.allclose(wide.blur(sharp), random_basis_field(1, 3, 5, 9, 8, 'reflect').blur(sharp), atol=1e-12)


def test_choose_method_prefers_fft_for_large_kernels_and_direct_for_small_ones():
    assert choose_method(720, 1280, 33, 25) == 'fft'
    assert choose_method(720, 1280, 3, 25) == 'direct'
    assert choose_method(64, 64, 5, 25) == 'direct'


def test_fast_fft_length_is_the_next_5_smooth_integer():
    assert [fast_fft_length(n) for n in (1, 7, 11, 17, 97, 752, 1312)] == [1, 8, 12, 18, 100, 768, 1350]


def test_to_and_repr():
    field = random_basis_field(1, 2, 3, 4, 4, 'reflect').to(torch.float32)
    assert field.basis.dtype == torch.float32 and field.mixing.dtype == torch.float32 and field.padding == 'reflect'
    assert repr(field) == "BasisField(basis=(1, 2, 3, 3), mixing=(1, 2, 4, 4), padding='reflect')"


def test_validation_messages():
    field = random_basis_field(1, 2, 3, 5, 5)
    basis, mixing = field.basis, field.mixing
    with pytest.raises(ValueError, match=r'basis: expected square kernels \(N, B, K, K\), got \(1, 2, 3, 1\)'):
        BasisField(basis[..., :1], mixing)
    with pytest.raises(
            ValueError, match=r'mixing: expected \(1, 2, H, W\) to match basis \(1, 2, 3, 3\), got '
            r'\(1, 3, 5, 5\)'):
        BasisField(basis, torch.cat([mixing, mixing[:, :1]], 1))
    with pytest.raises(TypeError, match='mixing: expected dtype torch.float64'):
        BasisField(basis, mixing.float())
    with pytest.raises(ValueError, match='kernel_size: expected an odd size'):
        BasisField(torch.full((1, 2, 4, 4), 1 / 16, dtype=torch.float64), mixing)
    with pytest.raises(ValueError, match=r'no larger than the image \(2x5\)'):
        BasisField(basis, mixing[:, :, :2])
    with pytest.raises(ValueError, match='basis: expected non-negative values'):
        BasisField(basis - 0.5, mixing)
    with pytest.raises(ValueError, match=r'basis: expected values summing to 1 over dim \(2, 3\)'):
        BasisField(basis * 0.5, mixing)
    with pytest.raises(ValueError, match='mixing: expected values summing to 1 over dim 1'):
        BasisField(basis, mixing * 0.5)
    with pytest.raises(ValueError, match=r"method: expected one of \('auto', 'fft', 'direct'\), got 'fast'"):
        field.blur(torch.rand(1, 3, 5, 5, dtype=torch.float64), 'fast')


def test_the_basis_spectra_are_kept_between_calls_and_see_in_place_changes():
    field = random_basis_field(1, 3, 7, 32, 32, padding='zeros', seed=13)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    size = (fast_fft_length(32 + 6), ) * 2  # the FFT size of a 32 x 32 image and K = 7
    first = field.blur(x, 'fft')
    kept = field.basis_spectra(size)
    field.adjoint(x, 'fft')
    assert field.basis_spectra(size) is kept  # the blur's spectra, reused by the adjoint and later calls
    assert torch.equal(kept, torch.fft.rfft2(field.basis, s=size))
    assert torch.allclose(first, reference(field, x), atol=1e-12)
    field.basis[:, :, 3, 3] += 1.0  # an in-place change of the basis is seen
    field.basis.div_(field.basis.sum((2, 3), keepdim=True))
    fresh = BasisField(field.basis.clone(), field.mixing, padding='zeros')
    assert torch.allclose(field.blur(x, 'fft'), fresh.blur(x, 'fft'), atol=1e-14)
    assert torch.allclose(field.adjoint(x, 'fft'), fresh.adjoint(x, 'fft'), atol=1e-14)
    trained = BasisField(field.basis.clone().requires_grad_(), field.mixing, check=False)
    assert trained.basis_spectra(size).requires_grad and trained._spectra is None  # nothing kept with autograd
