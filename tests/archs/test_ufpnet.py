"""UFPNet / UFPNetLocal / FlowKernelEstimator / KAM: published layout, batch consistency, determinism, KAM maths."""
import json
import os

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr_blurfield.archs.checkpoints import load_published_weights
from basicsr_blurfield.archs.kernel_attention import KernelAttention
from basicsr_blurfield.archs.kernel_estimator_arch import resample_codes
from basicsr_blurfield.archs.ufpnet_arch import remap_official_keys
from basicsr_blurfield.fields import KernelField
from tests.conftest import FIXTURES

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
TINY = {'width': 4, 'enc_blk_nums': (1, 1, 1, 1), 'dec_blk_nums': (1, 1, 1, 1), 'kernel_size': 5, 'estimator_feat': 4}


def _fixture(name: str) -> dict:
    path = os.path.join(FIXTURES, name)
    return json.load(open(path))


def _official_state(fixture: dict) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator) for key, shape in fixture['state_dict'].items()}


def test_ufpnet_from_the_option_file_has_the_published_parameter_count_and_layout():
    fixture = _fixture('ufpnet_gopro_state_dict.json')
    opt = yaml.safe_load(open(os.path.join(ROOT, 'options', 'ufpnet_gopro.yml')))
    net = build_network(opt['network_g'])
    assert sum(p.numel() for p in net.parameters()) == fixture['num_params'] == 80343663
    ours = net.state_dict()
    mapped = remap_official_keys({'params': {k: torch.empty(0) for k in fixture['state_dict']}})
    assert set(ours) == set(mapped)
    for key, shape in fixture['state_dict'].items():
        assert list(ours[key.replace('kernel_atttion', 'kernel_attention')].shape) == shape, key
    by_module = {}
    for name, param in net.named_parameters():
        by_module[name.split('.')[0]] = by_module.get(name.split('.')[0], 0) + param.numel()
    assert by_module == fixture['params_by_top_module']


def test_a_published_state_dict_loads_through_the_converter_and_directly():
    fixture = _fixture('ufpnet_gopro_state_dict.json')
    official = _official_state(fixture)
    net = build_network({'type': 'UFPNetLocal', 'train_size': (1, 3, 32, 32)})
    load_published_weights(net, {'params': official})
    key = 'encoders.1.0.kernel_atttion.conv_kernel.0.weight'
    assert torch.equal(net.state_dict()[key.replace('atttion', 'attention')], official[key])
    fresh = build_network({'type': 'UFPNet'})
    fresh.load_state_dict(official, strict=True)
    assert torch.equal(fresh.flow.net[3].running_var, official['flow.net.3.running_var'])


def test_published_nafnet_weights_load_into_the_nafnet_part():
    fixture = _fixture('nafnet_width64_state_dict.json')
    official = {key: torch.zeros(shape) for key, shape in fixture['state_dict'].items()}
    result = build_network({'type': 'UFPNet'}).load_state_dict(official, strict=False)
    assert not result.unexpected_keys
    assert all(key.split('.')[0] in ('kernel_extra', 'flow', 'kernel_down') or 'kernel_attention' in key
               for key in result.missing_keys)


def test_kernel_attention_follows_eq_7():
    torch.manual_seed(0)
    kam = KernelAttention(3, kernel_taps=4).double()
    x, kernels = torch.rand(2, 3, 5, 6, dtype=torch.float64), torch.rand(2, 4, 5, 6, dtype=torch.float64)
    conv1 = torch.nn.functional.gelu(kam.conv_1[0](x))
    conv2 = torch.nn.functional.gelu(kam.conv_kernel[2](torch.nn.functional.gelu(kam.conv_kernel[0](kernels))))
    attention = torch.sigmoid(kam.conv_2[0](torch.cat([conv1, conv2], 1)))
    assert torch.allclose(kam(x, kernels), attention * conv1 + x, atol=1e-12)
    with torch.no_grad():  # the in-place path
        assert torch.allclose(kam(x, kernels), attention * conv1 + x, atol=1e-12)
    with pytest.raises(ValueError, match='must agree in N, H and W'):
        kam(x, kernels[..., :5])


def test_resampling_keeps_the_code_standard_normal_and_is_deterministic_without_noise():
    z = torch.randn(4, 9, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((4, 1, 16, 16), 0.6)
    assert torch.allclose(resample_codes(z, sigma, sample=False), 0.8 * z)
    first = resample_codes(z, sigma, True, torch.Generator().manual_seed(1))
    assert torch.equal(first, resample_codes(z, sigma, True, torch.Generator().manual_seed(1)))
    assert float(first.std()) == pytest.approx(1.0, abs=0.03)


def test_resampling_gradient_stays_finite_when_sigma_saturates():
    logits = torch.full((1, 1, 1, 1), 200.0, requires_grad=True)  # sigmoid(200) == 1 exactly in float32
    sigma = torch.sigmoid(logits)
    z = torch.randn(1, 4, 1, 1, requires_grad=True)
    resample_codes(z, sigma, sample=False).sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(z.grad).all()


def test_estimator_returns_a_normalized_kernel_field_and_is_deterministic_at_test():
    estimator = build_network({'type': 'FlowKernelEstimator', 'kernel_size': 5, 'num_feat': 4}).eval()
    lq = torch.rand(2, 3, 13, 18)
    field = estimator(lq)
    assert isinstance(field, KernelField) and field.kernels.shape == (2, 25, 13, 18)
    assert bool((field.kernels >= 0).all())
    assert torch.allclose(field.kernels.sum(1), torch.ones(2, 13, 18), atol=1e-5)
    assert torch.equal(estimator(lq).kernels, field.kernels)
    noisy = estimator(lq, sample=True, generator=torch.Generator().manual_seed(0)).kernels
    assert not torch.equal(noisy, field.kernels)
    estimator.sample_at_test = True
    assert torch.equal(estimator(lq, generator=torch.Generator().manual_seed(0)).kernels, noisy)


def test_estimation_and_reblur_of_a_batch_equal_each_sample_alone():
    estimator = build_network({'type': 'FlowKernelEstimator', 'kernel_size': 5, 'num_feat': 4}).eval()
    lq, sharp = torch.rand(3, 3, 12, 16), torch.rand(3, 3, 12, 16)
    with torch.no_grad():
        batch = estimator(lq)
        reblurred = batch.blur(sharp)
        for index in range(3):
            alone = estimator(lq[index:index + 1])
            assert torch.allclose(alone.kernels, batch.kernels[index:index + 1], atol=1e-6)
            assert torch.allclose(alone.blur(sharp[index:index + 1]), reblurred[index:index + 1], atol=1e-6)


def test_ufpnet_batch_consistency_with_its_field():
    net = build_network(dict(TINY, type='UFPNet')).eval()
    lq = torch.rand(2, 3, 20, 23)
    with torch.no_grad():
        out, field = net(lq, return_field=True)
        for index in range(2):
            alone, alone_field = net(lq[index:index + 1], return_field=True)
            assert torch.allclose(alone, out[index:index + 1], atol=1e-5)
            assert torch.allclose(alone_field.blur(out[index:index + 1]), field.blur(out)[index:index + 1], atol=1e-5)
    assert out.shape == lq.shape and field.kernels.shape == (2, 25, 20, 23)


def test_two_runs_of_ufpnet_local_give_identical_output():
    net = build_network(dict(TINY, type='UFPNetLocal', train_size=(1, 3, 32, 32))).eval()
    lq = torch.rand(1, 3, 56, 48)
    with torch.no_grad():
        assert torch.equal(net(lq), net(lq))


def test_ufpnet_trains_only_the_deblurrer_by_default_and_the_estimator_on_request():
    net = build_network(dict(TINY, type='UFPNet')).train()
    out, field = net(torch.rand(2, 3, 16, 16), return_field=True, generator=torch.Generator().manual_seed(0))
    (out.mean() + field.blur(out).mean()).backward()
    trainable = {name for name, param in net.named_parameters() if param.requires_grad}
    assert not any(name.startswith(('kernel_extra.', 'flow.', 'kernel_down.2', 'kernel_down.3')) for name in trainable)
    assert all(net.get_parameter(name).grad is not None for name in trainable)
    tuned = build_network(dict(TINY, type='UFPNet', freeze_estimator=False)).train()
    out, field = tuned(torch.rand(1, 3, 16, 16), return_field=True)
    field.blur(out).mean().backward()
    assert tuned.kernel_extra.Conv_tail['mean'][2].weight.grad is not None
    assert all(param.grad is None for param in tuned.flow.parameters())


def test_invalid_options_say_what_was_expected():
    with pytest.raises(ValueError, match='kam_levels: expected 1..4'):
        build_network(dict(TINY, type='UFPNet', kam_levels=5))
    with pytest.raises(ValueError, match=r'expected \(N, C, H, W\)'):
        build_network(dict(TINY, type='UFPNet'))(torch.rand(3, 16, 16))


def test_the_estimator_of_a_published_ufpnet_checkpoint_loads_into_flow_kernel_estimator():
    from basicsr_blurfield.models.ufpnet_model import load_estimator_weights

    fixture = _fixture('ufpnet_gopro_state_dict.json')
    official = {key: torch.randn(shape) for key, shape in fixture['state_dict'].items()
                if key.startswith(('kernel_extra.', 'flow.'))}
    estimator = build_network({'type': 'FlowKernelEstimator'})
    assert load_estimator_weights(estimator, {'params': official}) == 156
    assert torch.equal(estimator.kernel_extra.Conv_tail['var'][2].bias, official['kernel_extra.Conv_tail.var.2.bias'])


def _reference_path():
    """The faithful un-optimised implementation kept as the baseline of ``benchmarks/bench_ufpnet.py``."""
    import importlib.util
    path = os.path.join(ROOT, 'benchmarks', 'bench_ufpnet.py')
    spec = importlib.util.spec_from_file_location('bench_ufpnet', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_path()


def _output_and_gradients(net, lq, target):
    net.zero_grad()
    out, field = net(lq, return_field=True, generator=torch.Generator().manual_seed(5))
    loss = (out - target).abs().mean() + (field.blur(out) - lq).abs().mean()
    loss.backward()
    return out.detach(), field.kernels.detach(), {n: p.grad.clone() for n, p in net.named_parameters()
                                                   if p.grad is not None}


def test_the_fast_path_gives_the_reference_paths_outputs_and_gradients():
    torch.manual_seed(0)
    net = build_network(dict(TINY, type='UFPNetLocal', kernel_size=19, train_size=(1, 3, 32, 32),
                             freeze_estimator=False))
    lq, target = torch.rand(2, 3, 36, 40), torch.rand(2, 3, 36, 40)  # 48x48 padded: two 1024-pixel decode blocks
    net.eval()
    with torch.no_grad():
        fast = net(lq)
        with _reference_path():
            reference = net(lq)
    assert (fast - reference).abs().max() < 1e-5
    net.train()  # noise from the generator, estimator trained: the autograd path
    fast_out, fast_kernels, fast_grads = _output_and_gradients(net, lq, target)
    with _reference_path():
        ref_out, ref_kernels, ref_grads = _output_and_gradients(net, lq, target)
    assert (fast_out - ref_out).abs().max() < 1e-5 and (fast_kernels - ref_kernels).abs().max() < 1e-6
    assert set(fast_grads) == set(ref_grads) and any(n.startswith('kernel_extra.') for n in fast_grads)
    for name, grad in fast_grads.items():
        assert torch.allclose(grad, ref_grads[name], rtol=1e-3, atol=1e-6), name


def test_the_fast_estimator_gives_the_reference_kernels_in_place_and_with_autograd():
    torch.manual_seed(0)
    estimator = build_network({'type': 'FlowKernelEstimator', 'num_feat': 4}).eval()
    lq = torch.rand(1, 3, 37, 45)  # cropped code map, 1665 pixels: a full and a partial decode block
    with torch.no_grad():
        fast = estimator(lq, sample=True, generator=torch.Generator().manual_seed(1)).kernels
        with _reference_path():
            reference = estimator(lq, sample=True, generator=torch.Generator().manual_seed(1)).kernels
    assert fast.shape == (1, 361, 37, 45) and (fast - reference).abs().max() < 1e-6
    with_autograd = estimator(lq, sample=True, generator=torch.Generator().manual_seed(1)).kernels
    assert with_autograd.requires_grad and (with_autograd.detach() - fast).abs().max() < 1e-6
    with torch.no_grad():
        assert (estimator(lq).kernels - fast).abs().max() > 1e-4  # the noise is there and is the same noise
