"""Blind deblurring in the encoded blur-kernel space (Tran et al., Alg. 1, eq. 5-7) with a tiny random frozen F."""
import numpy as np
import pytest
import torch

import basicsr_blurfield  # noqa: F401  (compat: torchvision import)
from basicsr_blurfield.archs.blur_kernel_space_arch import BlurOperatorFamily
from basicsr_blurfield.restoration.blind_deblur import (blind_deblur, charbonnier, hyper_laplacian, normalized_sparsity,
                                                       vgg_perceptual)

TINY = dict(num_iter=12, warmup_iter=2, num_feat=8, num_skip=4, num_levels=2, progress=False)


def tiny_operator() -> BlurOperatorFamily:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return BlurOperatorFamily(
            num_feat=8, num_front_block=1, num_back_block=1, unet_feat=8, num_levels=2, code_channels=16)


def blurry_photo(height: int = 30, width: int = 36) -> torch.Tensor:
    from skimage import data as skimage_data
    photo = skimage_data.chelsea()[100:100 + 4 * height:4, 150:150 + 4 * width:4]
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))).float().div(255)[None]


@pytest.mark.parametrize('mode', ['alternating', 'joint'])
def test_blind_deblur_is_reproducible_keeps_the_range_and_lowers_the_loss(mode):
    operator, blurry = tiny_operator(), blurry_photo()
    before = {key: value.clone() for key, value in operator.state_dict().items()}
    first = blind_deblur(blurry, operator, mode=mode, seed=3, **TINY)
    again = blind_deblur(blurry, operator, mode=mode, seed=3, **TINY)
    other = blind_deblur(blurry, operator, mode=mode, seed=4, **TINY)
    assert torch.equal(first.image, again.image) and torch.equal(first.code, again.code)
    assert not torch.equal(first.image, other.image)
    assert first.image.shape == blurry.shape and first.code.shape == (1, 16) + operator.code_size(30, 36)
    assert float(first.image.min()) >= 0 and float(first.image.max()) <= 1
    assert first.steps == len(first.losses) == 12 and not first.stopped_early
    assert np.mean(first.losses[-3:]) < first.losses[0], first.losses
    # F stays frozen and is handed back as it came (train mode, trainable, same weights)
    assert operator.training and all(param.requires_grad for param in operator.parameters())
    assert all(torch.equal(value, before[key]) for key, value in operator.state_dict().items())


def test_released_variant_adds_the_callers_perceptual_term():
    calls = []

    def perceptual(pred, target):
        calls.append(pred.shape)
        return (pred - target).abs().mean()

    result = blind_deblur(blurry_photo(), tiny_operator(), mode='joint', perceptual=perceptual, seed=0, **TINY)
    assert len(calls) == 12 and calls[0] == (1, 3, 30, 36)
    plain = blind_deblur(blurry_photo(), tiny_operator(), mode='joint', seed=0, **TINY)
    assert result.losses[0] > plain.losses[0]


def test_algorithm_1_reinitialises_the_code_prior_and_stops_early():
    operator, blurry = tiny_operator(), blurry_photo()
    warm = blind_deblur(blurry, operator, seed=0, **TINY)
    cold = blind_deblur(blurry, operator, seed=0, reinit_kernel=True, **TINY)
    assert not torch.equal(warm.code, cold.code)
    stopped = blind_deblur(blurry, operator, seed=0, patience=1, tol=0.5, **TINY)
    assert stopped.stopped_early and stopped.steps == 2


def test_init_code_starts_the_code_prior_at_the_given_code():
    operator, blurry = tiny_operator(), blurry_photo()
    target = torch.linspace(-1, 1, 16).view(1, 16, 1, 1)
    options = dict(TINY, num_iter=1, kernel_iter=1)
    started = blind_deblur(blurry, operator, seed=0, init_code=target, **dict(options, warmup_iter=150))
    plain = blind_deblur(blurry, operator, seed=0, **dict(options, warmup_iter=150))
    # after the warm-up (and one code step) the code sits near the target on every cell, unlike G^k's own output
    distance = (started.code - target).abs().mean()
    assert distance < 0.1 < (plain.code - target).abs().mean(), float(distance)
    grid = (1, 16) + operator.code_size(30, 36)
    full = blind_deblur(blurry, operator, seed=0, init_code=target.expand(grid), **dict(options, warmup_iter=150))
    assert torch.allclose(full.code, started.code)
    with pytest.raises(ValueError, match='init_code: expected a code of shape \\(1, 16, 1, 1\\)'):
        blind_deblur(blurry, operator, init_code=torch.zeros(1, 8, 1, 1), **TINY)


def test_code_prior_adds_the_gaussian_negative_log_likelihood_and_pulls_the_code_to_its_mean():
    operator, blurry = tiny_operator(), blurry_photo()
    mean = torch.linspace(-1, 1, 16).view(1, 16, 1, 1)
    std = torch.full((1, 16, 1, 1), 0.1)
    # the joint mode's first loss is taken at the generators' initial outputs, the same in every run of one seed
    options = dict(TINY, mode='joint', num_iter=1, warmup_iter=0)
    plain = blind_deblur(blurry, operator, seed=0, **options)
    weighted = blind_deblur(blurry, operator, seed=0, code_prior=(mean, std), code_prior_weight=0.5, **options)
    initial = blind_deblur(blurry, operator, seed=0, **dict(options, num_iter=0)).code
    term = 0.5 * ((initial - mean) / std).square().mean()
    assert torch.isclose(torch.tensor(weighted.losses[0] - plain.losses[0]), term, rtol=1e-4)
    # a strong prior drags the code to its mean; without it the code stays where G^k put it
    pulled = blind_deblur(blurry, operator, seed=0, code_prior=(mean, std), code_prior_weight=10.0,
                          **dict(TINY, num_iter=30, kernel_iter=5, warmup_iter=0))
    assert (pulled.code - mean).abs().mean() < 0.5 * (initial - mean).abs().mean()
    grid = (1, 16) + operator.code_size(30, 36)
    with pytest.raises(ValueError, match='code_prior std: every entry must be > 0'):
        blind_deblur(blurry, operator, code_prior=(mean, torch.zeros(1, 16, 1, 1)), **TINY)
    with pytest.raises(ValueError, match='code_prior mean: expected shape \\(1, 16, 1, 1\\)'):
        blind_deblur(blurry, operator, code_prior=(torch.zeros(1, 8, 1, 1), std), **TINY)
    with pytest.raises(ValueError, match='code_prior: expected \\(mean, std\\)'):
        blind_deblur(blurry, operator, code_prior=mean, **TINY)
    with pytest.raises(ValueError, match='code_prior std: holds NaN'):
        blind_deblur(blurry, operator, code_prior=(mean, torch.full(grid, float('nan'))), **TINY)


def test_sparsity_prior_is_the_l1_over_l2_ratio_and_rises_with_blur():
    ramp = torch.arange(6, dtype=torch.float64).mul(0.1).expand(1, 1, 4, 6)
    # 20 differences of 0.1 among 48 entries: 2.0 / (sqrt(48) * sqrt(20 * 0.01))
    assert torch.isclose(normalized_sparsity(ramp), torch.tensor(2.0 / (48**0.5 * 0.2**0.5), dtype=torch.float64))
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(edge, (2, 2, 0, 0), mode='replicate'), (1, 5), 1)
    assert float(normalized_sparsity(blurred)) > float(normalized_sparsity(edge))
    operator, blurry = tiny_operator(), blurry_photo()
    options = dict(TINY, mode='joint', num_iter=1, warmup_iter=0)
    plain = blind_deblur(blurry, operator, seed=0, **options)
    weighted = blind_deblur(blurry, operator, seed=0, sparsity_weight=0.3, **options)
    initial = blind_deblur(blurry, operator, seed=0, **dict(options, num_iter=0)).image
    expected = 0.3 * normalized_sparsity(initial)
    assert torch.isclose(torch.tensor(weighted.losses[0] - plain.losses[0]), expected, rtol=1e-4)


def test_loss_terms_match_their_formulas():
    ramp = torch.arange(6, dtype=torch.float64).mul(0.1).expand(1, 1, 4, 6)
    # forward differences: 0.1 along x except the zero past the last column, 0 along y
    expected = (5 * (0.01 + 1e-6)**0.4 + (1e-6)**0.4) / 6
    assert torch.isclose(hyper_laplacian(ramp, alpha=0.8), torch.tensor(expected, dtype=torch.float64))
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([0.0, 0.3, 0.4, 1.0]).view(1, 1, 2, 2)
    assert torch.isclose(charbonnier(a, b), torch.sqrt(b.square() + 1e-6).mean())


def test_vgg_perceptual_reads_the_callers_weights(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state = {  # torchvision's vgg19().features indices: conv 0, relu 1, conv 2, relu 3
        'features.0.weight': torch.randn(64, 3, 3, 3, generator=generator) * 0.1,
        'features.0.bias': torch.randn(64, generator=generator) * 0.1,
        'features.2.weight': torch.randn(64, 64, 3, 3, generator=generator) * 0.05,
        'features.2.bias': torch.randn(64, generator=generator) * 0.1,
        'classifier.0.weight': torch.zeros(1),
    }
    path = tmp_path / 'vgg.pth'
    torch.save({'params': state}, path)
    distance = vgg_perceptual(str(path), num_layers=4)
    image, other = torch.rand(2, 1, 3, 16, 16, generator=generator)

    def features(x):
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
            1, 3, 1, 1)
        x = torch.relu(torch.nn.functional.conv2d(x, state['features.0.weight'], state['features.0.bias'], padding=1))
        return torch.relu(
            torch.nn.functional.conv2d(x, state['features.2.weight'], state['features.2.bias'], padding=1))

    assert float(distance(image, image)) == 0
    assert torch.isclose(distance(image, other), (features(image) - features(other)).abs().mean(), rtol=1e-5)
    torch.save({'conv.weight': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='expected torchvision vgg19 weights'):
        vgg_perceptual(str(tmp_path / 'other.pth'), num_layers=4)


def test_bad_inputs_are_rejected_clearly():
    operator = tiny_operator()
    with pytest.raises(ValueError, match='expected one image \\(1, C, H, W\\)'):
        blind_deblur(torch.rand(2, 3, 32, 32), operator, **TINY)
    with pytest.raises(TypeError, match='expected a BlurOperatorFamily'):
        blind_deblur(torch.rand(1, 3, 32, 32), torch.nn.Conv2d(3, 3, 1), **TINY)
    with pytest.raises(ValueError, match='the operator takes 3-channel images, got 1'):
        blind_deblur(torch.rand(1, 1, 32, 32), operator, **TINY)
    with pytest.raises(ValueError, match="mode: expected one of \\('alternating', 'joint'\\)"):
        blind_deblur(torch.rand(1, 3, 32, 32), operator, mode='em', **TINY)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_blind_deblur_runs_on_the_gpu_like_on_the_cpu():
    operator, blurry = tiny_operator(), blurry_photo()
    on_cpu = blind_deblur(blurry, operator, seed=3, **TINY)
    on_gpu = blind_deblur(blurry.cuda(), operator.cuda(), seed=3, **TINY)
    assert on_gpu.image.is_cuda and on_gpu.steps == on_cpu.steps
    assert abs(on_gpu.losses[0] - on_cpu.losses[0]) < 1e-3 * abs(on_cpu.losses[0])
