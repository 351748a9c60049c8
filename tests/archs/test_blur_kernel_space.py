"""BlurKernelExtractor (G) and BlurOperatorFamily (F): published layout, golden outputs, any size, code fitting, VAE."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from basicsr.archs import build_network
from basicsr_blurfield.archs.blur_kernel_space_arch import (BlurKernelExtractor, BlurOperatorFamily, fit_code,
                                                            load_frozen_blur_space, remap_extractor_keys,
                                                            remap_operator_keys)
from basicsr_blurfield.archs.checkpoints import load_published_weights
from tests.conftest import FIXTURES
from tests.golden import fan_in_scaled, load_golden, recipe_weights

# the golden JSON's recipe: s / sqrt(fan_in) * n with s per top-level module, 0.02 * n for biases
RECIPE_SCALES = {'feature_extractor': 0.5, 'kernel_extractor': 1.6, 'adapter': 2.0, 'recon_trunk': 0.65}
TINY_G = dict(num_feat=8, num_front_block=1, enc_feat=8, num_down=5, code_channels=16, num_block=1)
TINY_F = dict(num_feat=8, num_front_block=1, num_back_block=1, unet_feat=4, num_levels=5, code_channels=16)


def tiny_operator(**extra) -> BlurOperatorFamily:
    """A tiny F with a random last conv (ours starts as the identity operator, which would hide the code's effect)."""
    operator = BlurOperatorFamily(**TINY_F, **extra).eval()
    torch.nn.init.normal_(operator.recon.conv_last.weight, std=0.1)
    return operator


def published_layout() -> dict:
    with open(os.path.join(FIXTURES, 'bks_kernelwizard_state_dict.json')) as handle:
        return json.load(handle)


def bks_rule(key, shape, n):
    return fan_in_scaled(n, RECIPE_SCALES[key.split('.')[0]]) if len(shape) >= 2 else 0.02 * n


@pytest.fixture(scope='module')
def published_pair():
    """G and F at published sizes, with the golden recipe weights loaded strictly through the remaps."""
    weights = recipe_weights(published_layout()['state_dict'], bks_rule)
    extractor, operator = BlurKernelExtractor().eval(), BlurOperatorFamily().eval()
    extractor.load_state_dict(remap_extractor_keys(weights), strict=True)
    operator.load_state_dict(remap_operator_keys(weights), strict=True)
    return extractor, operator, weights


def test_pair_with_shared_features_has_the_published_parameter_count():
    layout = published_layout()
    extractor, operator = BlurKernelExtractor(), BlurOperatorFamily()
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    by_module = layout['params_by_top_module']
    assert count(extractor) == by_module['feature_extractor'] + by_module['kernel_extractor']
    assert count(operator) == by_module['feature_extractor'] + by_module['adapter'] + by_module['recon_trunk']
    operator.features = extractor.features
    assert count(torch.nn.ModuleList([extractor, operator])) == layout['num_params'] == 49205187


def test_remaps_cover_every_published_key_with_its_shape():
    state = {key: torch.zeros(shape) for key, shape in published_layout()['state_dict'].items()}
    g_state, f_state = remap_extractor_keys(state), remap_operator_keys(state)
    ours_g = {k: tuple(v.shape) for k, v in BlurKernelExtractor().state_dict().items()}
    ours_f = {k: tuple(v.shape) for k, v in BlurOperatorFamily().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in g_state.items()} == ours_g
    assert {k: tuple(v.shape) for k, v in f_state.items()} == ours_f
    features = sum(1 for key in state if key.startswith('feature_extractor.'))
    assert len(g_state) + len(f_state) - features == len(state) == 159


def test_published_file_loads_into_both_networks_through_load_published_weights(published_pair, tmp_path):
    _, _, weights = published_pair
    path = tmp_path / 'GOPRO_woVAE.pth'
    torch.save(weights, path)
    extractor, operator = load_frozen_blur_space(extractor_path=str(path), operator_path=str(path))
    assert torch.equal(extractor.downs[4].weight, weights['kernel_extractor.model.16.weight'])
    assert torch.equal(operator.unet.inner.inner.inner.inner.up.weight,
                       weights['adapter.model.submodule.submodule.submodule.submodule.up.1.weight'])
    # our own checkpoint (BasicSR layout) loads through the same function
    torch.save({'params': operator.state_dict()}, tmp_path / 'net_f.pth')
    again = load_published_weights(BlurOperatorFamily(), str(tmp_path / 'net_f.pth'))
    assert torch.equal(again.recon.conv_last.bias, weights['recon_trunk.28.bias'])


def test_golden_outputs_of_the_authors_code_are_reproduced(published_pair):
    extractor, operator, _ = published_pair
    meta, arrays = load_golden('bks')
    sharp, blurry, other = (torch.from_numpy(arrays[k]) for k in ('sharp', 'blurry', 'other_sharp'))
    with torch.no_grad():
        code = extractor(sharp, blurry)
        adapted = operator(other, torch.from_numpy(arrays['code']))
    assert tuple(code.shape) == (1, 512, 2, 2) == arrays['code'].shape
    code_error = (code - torch.from_numpy(arrays['code'])).abs().max().item()
    image_error = (adapted - torch.from_numpy(arrays['adapted_other'])).abs().max().item()
    print(f'golden max abs: code {code_error:.3g}, adapted_other {image_error:.3g}')
    assert code_error < 1e-4 and image_error < 1e-4
    assert meta['output_stats']['mean_abs_change_if_code_replaced_by_zeros'] > 0.01  # the code matters


def test_published_networks_run_at_320x480_and_the_code_has_the_published_grid(published_pair):
    extractor, operator, _ = published_pair
    sharp = torch.rand(1, 3, 320, 480)
    with torch.no_grad():
        code = extractor(sharp, sharp.roll(2, dims=-1))
        out = operator(sharp, code)
    assert tuple(code.shape) == (1, 512, 3, 4) and operator.code_size(320, 480) == (3, 4)
    assert out.shape == sharp.shape and torch.isfinite(out).all()


def test_any_size_including_720p_gives_the_right_shapes():
    extractor, operator = BlurKernelExtractor(**TINY_G).eval(), tiny_operator()
    for height, width in ((720, 1280), (37, 50)):
        sharp = torch.rand(1, 3, height, width)
        with torch.no_grad():
            code = extractor(sharp, sharp)
            out = operator(sharp, code)
        assert tuple(code.shape) == (1, 16, -(-height // 128), -(-width // 128))
        assert out.shape == sharp.shape


@pytest.mark.slow
def test_published_networks_at_720p():
    extractor, operator = BlurKernelExtractor().eval(), BlurOperatorFamily().eval()
    sharp = torch.rand(1, 3, 720, 1280)
    with torch.no_grad():
        code = extractor(sharp, sharp)
        assert tuple(code.shape) == (1, 512, 6, 10)
        assert operator(sharp, code).shape == sharp.shape


def test_code_of_another_size_is_resampled_or_pooled_as_asked():
    torch.manual_seed(0)
    code = torch.randn(2, 16, 2, 2)
    assert fit_code(code, (2, 2), 'global') is code
    assert torch.allclose(fit_code(code, (3, 4), 'global'), code.mean(dim=(2, 3), keepdim=True).expand(-1, -1, 3, 4))
    assert torch.allclose(fit_code(code, (3, 4)), F.interpolate(code, (3, 4), mode='bilinear', align_corners=False))
    sharp = torch.rand(2, 3, 320, 480)
    resample, pooled = tiny_operator(), tiny_operator(code_mode='global')
    pooled.load_state_dict(resample.state_dict())
    with torch.no_grad():
        assert torch.allclose(pooled(sharp, code), resample(sharp, code.mean(dim=(2, 3), keepdim=True)), atol=1e-6)
        assert torch.allclose(resample(sharp, code), resample(sharp, fit_code(code, (3, 4))), atol=1e-6)


def test_a_code_of_batch_one_applies_to_every_image_and_samples_do_not_mix():
    torch.manual_seed(0)
    operator = tiny_operator()
    sharp, codes = torch.rand(3, 3, 128, 128), 20 * torch.randn(3, 16, 1, 1)
    with torch.no_grad():
        batch = operator(sharp, codes)
        for index in range(3):
            single = operator(sharp[index:index + 1], codes[index:index + 1])
            assert torch.allclose(batch[index:index + 1], single, atol=1e-5)
        assert torch.allclose(operator(sharp, codes[:1]), operator(sharp, codes[:1].expand(3, -1, -1, -1)), atol=1e-6)
        assert (batch[1:2] - operator(sharp[1:2], codes[:1])).abs().max() > 1e-4  # the code matters


def test_vae_extractor_samples_around_its_mean_in_training_and_is_deterministic_in_eval():
    extractor = build_network(dict(TINY_G, type='BlurKernelExtractor', vae=True))
    sharp = torch.rand(2, 3, 64, 64)
    blurry = sharp.roll(1, dims=-1)
    extractor.train()
    torch.manual_seed(3)
    code, mu, sigma = extractor(sharp, blurry, return_stats=True)
    torch.manual_seed(3)
    eps = torch.randn_like(mu)
    assert torch.allclose(code, mu + sigma * eps) and (sigma > 0).all() and mu.shape == (2, 16, 1, 1)
    extractor.eval()
    assert torch.equal(extractor(sharp, blurry), extractor(sharp, blurry))
    assert torch.allclose(extractor(sharp, blurry), mu, atol=1e-6)
    assert BlurKernelExtractor(**TINY_G).encode(sharp, blurry)[1] is None


def test_untrained_operator_is_the_identity_and_published_weights_replace_that(published_pair):
    sharp = torch.rand(2, 3, 40, 50)
    with torch.no_grad():
        assert torch.equal(BlurOperatorFamily(**TINY_F)(sharp, torch.randn(2, 16, 1, 1)), sharp)
    assert published_pair[1].recon.conv_last.weight.abs().sum() > 0


def test_random_codes_have_the_grid_of_the_target_size():
    operator = BlurOperatorFamily(**TINY_F)
    codes = operator.random_code(2, 300, 500, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (2, 16, 3, 4)
    assert torch.equal(codes, operator.random_code(2, 300, 500, generator=torch.Generator().manual_seed(0)))


def test_wrong_inputs_are_rejected_with_clear_messages():
    extractor, operator = BlurKernelExtractor(**TINY_G), BlurOperatorFamily(**TINY_F)
    with pytest.raises(ValueError, match='one shape'):
        extractor(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))
    with pytest.raises(ValueError, match=r'expected an \(N, 3, H, W\)'):
        extractor(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r'code: expected an \(N, 16, h, w\)'):
        operator(torch.rand(1, 3, 32, 32), torch.rand(1, 8, 1, 1))
    with pytest.raises(ValueError, match='does not match sharp batch'):
        operator(torch.rand(3, 3, 32, 32), torch.rand(2, 16, 1, 1))
    with pytest.raises(ValueError, match='resample'):
        BlurOperatorFamily(code_mode='nearest')
