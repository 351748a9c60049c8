"""KernelField: blur/adjoint of both engines against pixel-loop and unfold references, adjointness, gradcheck, tiling,
memory, validation, spatial smoothing against a pixel loop."""
import math
import mmap

import pytest
import torch
from field_reference import per_pixel_blur, real_image, unfold_blur

from basicsr_blurfield.fields import PADDING_MODES, KernelField, normalize_kernels
from basicsr_blurfield.fields import _taps as taps
from basicsr_blurfield.fields._taps import TapCorrelate, TapGather, TapScatter


@pytest.fixture(params=('taps', 'unfold'))
def engine(request, monkeypatch):
    """Forces one engine of ``fields._taps`` (on CPU ``'auto'`` would always pick ``'taps'``)."""
    monkeypatch.setattr(taps, 'ENGINE', request.param)
    return request.param


def random_kernels(num, size, height, width, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return normalize_kernels(torch.rand(num, size * size, height, width, generator=gen, dtype=dtype)**3, 1)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('channels', (1, 3))
@pytest.mark.parametrize('size', (1, 3, 5))
def test_blur_matches_pixel_loop_reference_on_random_images(size, channels, padding, engine):
    gen = torch.Generator().manual_seed(size + channels)
    sharp = torch.rand(2, channels, 7, 6, generator=gen, dtype=torch.float64)
    kernels = random_kernels(2, size, 7, 6, seed=size)
    expected = per_pixel_blur(sharp, kernels.view(2, size, size, 7, 6), padding)
    assert torch.allclose(KernelField(kernels, padding).blur(sharp), expected, atol=1e-12)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('channels', (1, 3))
def test_blur_matches_pixel_loop_reference_on_real_images(channels, padding, engine):
    sharp = real_image(channels, size=(9, 8))
    kernels = random_kernels(1, 5, 9, 8, seed=3)
    expected = per_pixel_blur(sharp, kernels.view(1, 5, 5, 9, 8), padding)
    blurry = KernelField(kernels, padding).blur(sharp)
    assert torch.allclose(blurry, expected, atol=1e-12)
    assert (blurry - sharp).abs().max() > 1e-2


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('size', (7, 9))
def test_blur_matches_unfold_reference_in_float32(size, padding, engine):
    sharp = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(1))
    kernels = random_kernels(2, size, 20, 17, dtype=torch.float32)
    expected = unfold_blur(sharp, kernels, padding)
    assert torch.allclose(KernelField(kernels, padding).blur(sharp), expected, atol=1e-6)


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('num,channels', ((1, 1), (2, 3)))
@pytest.mark.parametrize('height,width', ((9, 8), (8, 9), (7, 7)))
def test_adjoint_satisfies_inner_product_identity(height, width, num, channels, padding, engine):
    gen = torch.Generator().manual_seed(height * width)
    x = torch.rand(num, channels, height, width, generator=gen, dtype=torch.float64)
    y = torch.rand(num, channels, height, width, generator=gen, dtype=torch.float64)
    field = KernelField(random_kernels(num, 5, height, width, seed=width), padding)
    assert torch.isclose((field.blur(x) * y).sum(), (x * field.adjoint(y)).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_gradcheck_blur_in_image_and_kernels(padding, engine):
    gen = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 2, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    kernels = random_kernels(2, 3, 5, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, k: KernelField(k, padding, check=False).blur(x), (sharp, kernels))
    assert torch.autograd.gradcheck(lambda x, k: KernelField(k, padding, check=False).adjoint(x), (sharp, kernels))


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_row_tiles_give_the_untiled_result_and_gradients(monkeypatch, padding, engine):
    gen = torch.Generator().manual_seed(6)
    sharp = torch.rand(2, 3, 11, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    kernels = random_kernels(2, 5, 11, 7).requires_grad_()
    y = torch.rand(2, 3, 11, 7, generator=gen, dtype=torch.float64)
    expected = unfold_blur(sharp, kernels, padding)
    expected_grads = torch.autograd.grad((expected * y).sum(), (sharp, kernels))
    # tiles of 3 rows (the last one of 2) for gather / scatter, of 1 row for the tap engine's correlate
    monkeypatch.setattr(taps, 'TILE_ELEMENTS', 2 * 3 * 7 * 3)
    monkeypatch.setattr(taps, 'UNFOLD_ELEMENTS', 2 * 2 * 3 * 25 * 7 * 3)
    assert taps._row_tiles(11, 2 * 3 * 7, taps.TILE_ELEMENTS)[:2] == [(0, 3), (3, 6)]
    assert taps._row_tiles(11, 2 * 2 * 3 * 25 * 7, taps.UNFOLD_ELEMENTS)[-1] == (9, 11)
    assert len(taps._row_tiles(11, 2 * 5 * 7, taps.TILE_ELEMENTS)) == 11
    field = KernelField(kernels, padding, check=False)
    blurry = field.blur(sharp)
    assert torch.allclose(blurry, expected, atol=1e-12)
    for got, want in zip(torch.autograd.grad((blurry * y).sum(), (sharp, kernels)), expected_grads):
        assert torch.allclose(got, want, atol=1e-12)
    assert torch.isclose((blurry * y).sum(), (sharp * field.adjoint(y)).sum(), rtol=1e-12)


def test_engines_agree_on_strided_and_expanded_operands(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    padded = torch.rand(2, 7, 3, 8, generator=gen, dtype=torch.float64).permute(0, 2, 1, 3)  # (2, 3, 7, 8), strided
    kernels = torch.rand(2, 5, 6, 9, generator=gen, dtype=torch.float64).permute(0, 3, 1, 2)  # (2, 9, 5, 6), strided
    values = torch.ones(1, 1, 1, 1, dtype=torch.float64).expand(2, 3, 5, 6)  # what sum().backward() passes down
    columns = torch.nn.functional.unfold(padded, 3).view(2, 3, 9, 5, 6)
    expected = (torch.einsum('nctyx,ntyx->ncyx', columns, kernels),
                torch.nn.functional.fold((kernels[:, None] * values[:, :, None]).reshape(2, 27, 30), (7, 8),
                                         3), torch.einsum('nctyx,ncyx->ntyx', columns, values))
    for name in ('taps', 'unfold'):
        monkeypatch.setattr(taps, 'ENGINE', name)
        got = (taps._gather(padded, kernels), taps._scatter(values, kernels), taps._correlate(values, padded, 3))
        for value, want in zip(got, expected):
            assert torch.allclose(value, want, atol=1e-12), name


def test_auto_engine_is_taps_on_cpu_and_a_wrong_engine_names_the_choices(monkeypatch):
    assert taps.engine_for(torch.zeros(1)) == 'taps'
    assert taps.engine_for(torch.zeros(1, device='meta')) == 'unfold'
    monkeypatch.setattr(taps, 'ENGINE', 'loops')
    with pytest.raises(ValueError, match=r"ENGINE: expected one of \('auto', 'taps', 'unfold'\), got 'loops'"):
        KernelField(random_kernels(1, 3, 4, 4)).blur(torch.rand(1, 1, 4, 4, dtype=torch.float64))


def test_gradgradcheck_of_the_tap_functions(engine):
    gen = torch.Generator().manual_seed(1)
    padded = torch.rand(1, 2, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    values = torch.rand(1, 2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    kernels = torch.rand(1, 9, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(TapGather.apply, (padded, kernels))
    assert torch.autograd.gradgradcheck(TapScatter.apply, (values, kernels))
    assert torch.autograd.gradgradcheck(TapCorrelate.apply, (values, padded))


def test_huge_page_range_holds_only_the_whole_2mib_pages_inside_the_buffer():
    mib = 1 << 20
    assert taps.huge_page_range(2 * mib, 4 * mib) == (2 * mib, 4 * mib)
    assert taps.huge_page_range(2 * mib + 64, 6 * mib) == (4 * mib, 4 * mib)
    assert taps.huge_page_range(mib, 5 * mib - 1) == (2 * mib, 2 * mib)
    assert taps.huge_page_range(mib, 3 * mib - 1) == (2 * mib, 0)


def test_huge_page_advice_covers_large_cpu_outputs_and_leaves_the_gradients_unchanged(monkeypatch):
    gen = torch.Generator().manual_seed(9)
    sharp = torch.rand(1, 3, 64, 320, generator=gen, requires_grad=True)
    kernels = random_kernels(1, 9, 64, 320, dtype=torch.float32).requires_grad_()  # kernel gradient: 6.3 MiB
    y = torch.rand(1, 3, 64, 320, generator=gen)
    expected = torch.autograd.grad((KernelField(kernels, check=False).blur(sharp) * y).sum(), (sharp, kernels))
    calls = []
    advise = taps._huge_page_advice()
    monkeypatch.setattr(taps, '_huge_page_advice', lambda: lambda start, length: calls.append((start, length)))
    monkeypatch.setattr(taps, 'ADVISE_BYTES', 1 << 20)
    got = torch.autograd.grad((KernelField(kernels, check=False).blur(sharp) * y).sum(), (sharp, kernels))
    assert len(calls) == 1  # the kernel gradient; the image-sized buffers are below 1 MiB
    start, length = calls[0]
    assert start % taps.HUGE_PAGE_BYTES == 0 and length in (2 * taps.HUGE_PAGE_BYTES, 3 * taps.HUGE_PAGE_BYTES)
    for value, want in zip(got, expected):
        assert torch.equal(value, want)
    if hasattr(mmap, 'MADV_HUGEPAGE'):  # Linux: the real call exists and answers 0 (done) or -1 (refused)
        assert advise(*taps.huge_page_range(got[1].data_ptr(), got[1].numel() * 4)) in (0, -1)
    else:
        assert advise is None


def largest_allocation(fn) -> int:
    """Largest memory (bytes) any profiled CPU operation allocated, its children included."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(event.cpu_memory_usage for event in prof.events())


def test_blur_and_backward_never_allocate_a_k2_times_image_tensor(monkeypatch):
    sharp = torch.rand(2, 3, 32, 32, requires_grad=True)
    kernels = random_kernels(2, 9, 32, 32, dtype=torch.float32).requires_grad_()
    field_bytes = kernels.numel() * 4  # the kernel gradient is field-sized; the unfold tensor is C times that
    ours = largest_allocation(lambda: KernelField(kernels).blur(sharp).sum().backward())
    unfold = largest_allocation(lambda: unfold_blur(sharp, kernels, 'replicate').sum().backward())
    assert ours < 1.2 * field_bytes
    assert unfold >= 3 * field_bytes
    monkeypatch.setattr(taps, 'ENGINE', 'unfold')
    monkeypatch.setattr(taps, 'UNFOLD_ELEMENTS', kernels.numel())  # tiles of C*K*K*rows*W <= half the field
    tiled = largest_allocation(lambda: KernelField(kernels).blur(sharp).sum().backward())
    assert tiled < 1.2 * field_bytes


def test_batch_samples_are_blurred_only_with_their_own_kernels():
    gen = torch.Generator().manual_seed(2)
    sharp = torch.rand(3, 3, 8, 9, generator=gen, dtype=torch.float64)
    kernels = random_kernels(3, 5, 8, 9, seed=4)
    batched = KernelField(kernels).blur(sharp)
    for n in range(3):
        alone = KernelField(kernels[n:n + 1]).blur(sharp[n:n + 1])
        assert torch.equal(batched[n:n + 1], alone)


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_delta_kernels_leave_the_image_unchanged(padding):
    sharp = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(3))
    kernels = torch.zeros(1, 9, 6, 7)
    kernels[:, 4] = 1
    field = KernelField(kernels, padding)
    assert torch.equal(field.blur(sharp), sharp)
    assert torch.equal(field.adjoint(sharp), sharp)


@pytest.mark.parametrize('padding', ('replicate', 'reflect'))
def test_normalised_kernels_keep_a_constant_image_constant(padding):
    sharp = torch.full((2, 1, 7, 6), 0.3, dtype=torch.float64)
    assert torch.allclose(KernelField(random_kernels(2, 5, 7, 6), padding).blur(sharp), sharp, atol=1e-14)


def test_shifted_delta_reads_the_neighbour_in_gather_orientation():
    sharp = torch.arange(30, dtype=torch.float32).view(1, 1, 5, 6)
    kernels = torch.zeros(1, 9, 5, 6)
    kernels[:, 2 * 3 + 1] = 1  # i = 2, j = 1: offset (+1, 0), the pixel below
    blurry = KernelField(kernels, 'zeros').blur(sharp)
    assert torch.equal(blurry[0, 0, :4], sharp[0, 0, 1:])
    assert torch.equal(blurry[0, 0, 4], torch.zeros(6))


def test_dense_zero_pads_to_a_larger_kernel_and_blurs_identically():
    sharp = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    field = KernelField(random_kernels(1, 3, 9, 9), 'reflect')
    assert field.dense() is field
    larger = field.dense(7)
    assert larger.kernel_size == 7 and larger.padding == 'reflect'
    assert torch.allclose(larger.blur(sharp), field.blur(sharp), atol=1e-14)
    with pytest.raises(ValueError, match='at least the field\'s own size 3, got 1'):
        field.dense(1)


def test_kernels_at_returns_the_kernels_of_the_requested_samples_and_pixels():
    kernels = random_kernels(2, 3, 5, 6)
    field = KernelField(kernels)
    points = torch.tensor([[0, 0, 0], [1, 4, 5], [1, 2, 3]])
    got = field.kernels_at(points)
    assert got.shape == (3, 3, 3)
    for p, (n, y, x) in enumerate(points.tolist()):
        assert torch.equal(got[p].flatten(), kernels[n, :, y, x])


def test_a_channels_last_field_is_stored_contiguous_and_blurs_the_same():
    kernels = random_kernels(1, 5, 9, 11, seed=4)
    image = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    strided = kernels.contiguous(memory_format=torch.channels_last)  # what an estimator's per-pixel decode returns
    field = KernelField(strided)
    assert not strided.is_contiguous() and field.kernels.is_contiguous()
    assert torch.equal(field.kernels, kernels)
    expected = per_pixel_blur(image, kernels.view(1, 5, 5, 9, 11), 'replicate')
    assert torch.allclose(field.blur(image), expected, atol=1e-12)
    assert torch.allclose(field.adjoint(image), KernelField(kernels).adjoint(image), atol=1e-12)


def test_to_changes_dtype_and_keeps_padding():
    field = KernelField(random_kernels(1, 3, 4, 4), 'zeros').to(torch.float32)
    assert field.kernels.dtype == torch.float32 and field.padding == 'zeros'
    assert 'KernelField(kernels=(1, 9, 4, 4)' in repr(field)


def test_validation_messages():
    good = random_kernels(1, 3, 5, 5)
    with pytest.raises(TypeError, match='kernels: expected a torch.Tensor'):
        KernelField(good.numpy())
    with pytest.raises(ValueError, match=r'kernels: expected 4 dimensions \(N, K\*K, H, W\), got shape \(9, 5, 5\)'):
        KernelField(good[0])
    with pytest.raises(ValueError, match='square number of taps, got 10 taps'):
        KernelField(torch.full((1, 10, 5, 5), 0.1))
    with pytest.raises(ValueError, match='expected an odd size .* got 4'):
        KernelField(torch.full((1, 16, 5, 5), 1 / 16))
    with pytest.raises(ValueError, match=r'no larger than the image \(5x4\), got 5x5'):
        KernelField(torch.full((1, 25, 5, 4), 1 / 25))
    with pytest.raises(ValueError, match='non-negative values, got a minimum of -0.5'):
        KernelField(torch.cat([good[:, :1] * 0 - 0.5, good[:, 1:]], 1))
    with pytest.raises(ValueError, match='summing to 1 over dim 1, got a sum off by 1'):
        KernelField(good * 2)
    with pytest.raises(ValueError, match=r"padding: expected one of \('replicate', 'reflect', 'zeros'\), got 'edge'"):
        KernelField(good, 'edge')
    field = KernelField(good)
    with pytest.raises(
            ValueError, match=r'sharp: expected shape \(1, C, 5, 5\) to match the field, '
            r'got \(1, 3, 5, 6\)'):
        field.blur(torch.rand(1, 3, 5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r'image: expected shape \(1, C, 5, 5\)'):
        field.adjoint(torch.rand(2, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match='sharp: expected dtype torch.float64 like the field, got torch.float32'):
        field.blur(torch.rand(1, 3, 5, 5))
    with pytest.raises(TypeError, match='points: expected an integer'):
        field.kernels_at(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r'points: expected a \(P, 3\) tensor'):
        field.kernels_at(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='points: expected 0 <= n < 1, 0 <= y < 5, 0 <= x < 5'):
        field.kernels_at(torch.tensor([[0, 5, 0]]))


def test_check_false_accepts_unnormalised_kernels():
    field = KernelField(torch.ones(1, 9, 4, 4, dtype=torch.float64), check=False)
    assert torch.allclose(
        field.blur(torch.ones(1, 1, 4, 4, dtype=torch.float64)), torch.full((1, 1, 4, 4), 9.0, dtype=torch.float64))


def test_normalize_kernels_clamps_and_divides_by_the_sum():
    raw = torch.tensor([[[-1.0, 1.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = normalize_kernels(raw, (-2, -1))
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.25], [0.5, 0.25]]))
    assert torch.equal(out[1], torch.zeros(2, 2))


def slow_smoothed(kernels, sigma):
    """Pixel-loop reference of ``KernelField.smoothed``: weighted sum of clamped neighbours' kernels."""
    radius = max(1, math.ceil(3 * sigma))
    weights = [math.exp(-d * d / (2 * sigma * sigma)) for d in range(-radius, radius + 1)]
    weights = torch.tensor(weights, dtype=kernels.dtype) / sum(weights)
    height, width = kernels.shape[-2:]
    out = torch.zeros_like(kernels)
    for y in range(height):
        for x in range(width):
            for i, dy in enumerate(range(-radius, radius + 1)):
                for j, dx in enumerate(range(-radius, radius + 1)):
                    source_y, source_x = min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1)
                    out[:, :, y, x] += weights[i] * weights[j] * kernels[:, :, source_y, source_x]
    return out


@pytest.mark.parametrize('sigma', (0.4, 1.0, 2.5))
def test_smoothed_matches_the_pixel_loop_reference_and_stays_normalised(sigma):
    kernels = random_kernels(2, 3, 6, 5, seed=4)
    smoothed = KernelField(kernels, 'reflect').smoothed(sigma)
    assert torch.allclose(smoothed.kernels, slow_smoothed(kernels, sigma), atol=1e-12)
    assert torch.allclose(smoothed.kernels.sum(1), torch.ones(2, 6, 5, dtype=torch.float64), atol=1e-12)
    assert smoothed.padding == 'reflect' and smoothed.kernel_size == 3 and (smoothed.kernels >= 0).all()
    assert (smoothed.kernels - kernels).abs().max() > 1e-3


def test_smoothed_keeps_a_uniform_field_and_sigma_zero_is_the_field_itself():
    field = KernelField(random_kernels(1, 5, 1, 1, seed=2).expand(1, 25, 7, 8))
    assert torch.allclose(field.smoothed(3.0).kernels, field.kernels, atol=1e-6)
    assert field.smoothed(0) is field
    for bad in (-1.0, float('nan'), '2'):
        with pytest.raises(ValueError, match='sigma'):
            field.smoothed(bad)


def test_gradcheck_smoothed_in_the_kernels():
    kernels = random_kernels(1, 3, 4, 5, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(lambda k: KernelField(k, check=False).smoothed(0.8).kernels, (kernels, ))


@pytest.mark.parametrize('padding', PADDING_MODES)
@pytest.mark.parametrize('horizontal, vertical', ((True, False), (False, True), (True, True)))
def test_flipped_field_blurs_mirrored_images_as_the_field_blurs_the_originals(horizontal, vertical, padding):
    kernels = random_kernels(2, 3, 6, 5, seed=5)
    sharp = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dims = (() if not horizontal else (-1, )) + (() if not vertical else (-2, ))
    field = KernelField(kernels, padding)
    flipped = field.flipped(horizontal, vertical)
    assert torch.allclose(flipped.blur(sharp.flip(dims)), field.blur(sharp).flip(dims), atol=1e-12)
    assert torch.equal(flipped.flipped(horizontal, vertical).kernels, kernels) and flipped.padding == padding
    assert field.flipped() is field


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_transposed_field_blurs_transposed_images_as_the_field_blurs_the_originals(padding):
    kernels = random_kernels(2, 3, 6, 5, seed=6)
    sharp = torch.rand(2, 1, 6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    field = KernelField(kernels, padding)
    transposed = field.transposed()
    assert (transposed.height, transposed.width) == (5, 6)
    assert torch.allclose(transposed.blur(sharp.mT), field.blur(sharp).mT, atol=1e-12)
    assert torch.equal(transposed.transposed().kernels, kernels)
