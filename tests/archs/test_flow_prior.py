"""KernelFlowPrior (UFPNet stage I, eq. (2)-(3)): published layout, exact likelihood, inverse, sampling."""
import json
import math
import os

import pytest
import torch

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr_blurfield.archs.flow_prior_arch import KernelFlowPrior
from basicsr_blurfield.archs.ufpnet_arch import remap_official_keys
from tests.conftest import FIXTURES



def _random_kernels(num: int, size: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    kernels = torch.rand(num, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return kernels / kernels.sum(dim=(1, 2), keepdim=True)


def _perturbed_prior(size: int = 3, num_block: int = 2, seed: int = 0) -> KernelFlowPrior:
    """A prior with non-trivial weights and batch-norm statistics, in float64 eval mode."""
    prior = KernelFlowPrior(kernel_size=size, num_block=num_block, hidden_size=6).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in prior.named_parameters():
            tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
        for layer in prior.net[1::2]:
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator))
            layer.running_var.copy_(0.5 + torch.rand(layer.running_var.shape, generator=generator))
    return prior.eval()


def test_published_layout_and_parameter_count():
    fixture_path = os.path.join(FIXTURES, 'ufpnet_flow_motion_pt.json')
    fixture = json.load(open(fixture_path))
    prior = build_network({'type': 'KernelFlowPrior', 'kernel_size': 19, 'num_block': 5})
    state = prior.state_dict()
    assert sum(p.numel() for p in prior.parameters()) == fixture['num_model_state_params'] == 194470
    assert list(state) == list(fixture['model_state'])
    for key, shape in fixture['model_state'].items():
        assert list(state[key].shape) == shape, key
    assert torch.equal(state['net.0.mask'], (torch.arange(361) % 2).float())
    assert torch.equal(state['net.2.mask'], 1 - (torch.arange(361) % 2).float())
    assert float(state['alpha']) == pytest.approx(fixture['scalar_buffers']['alpha'])
    assert float(state['kernel_size']) == 19.0 and float(state['normalization']) == 1.0


def test_published_flow_checkpoint_loads_through_the_remap():
    prior = KernelFlowPrior()
    checkpoint = {'epoch': 62, 'model_state': {k: v.clone() + 1 for k, v in prior.state_dict().items()}}
    fresh = KernelFlowPrior()
    fresh.load_state_dict(remap_official_keys(checkpoint))
    assert torch.equal(fresh.net[0].s_net[0].weight, prior.net[0].s_net[0].weight + 1)


def test_decode_inverts_encode():
    prior = _perturbed_prior(size=5, num_block=3)
    kernels = _random_kernels(7, 5)
    with torch.no_grad():
        z = prior.encode(kernels)
        assert torch.allclose(prior.decode(z), kernels, atol=1e-10)
        assert torch.allclose(prior.encode(prior.decode(z, normalize=False)), z, atol=1e-8)


def test_log_det_equals_the_log_determinant_of_the_jacobian():
    prior = _perturbed_prior(size=3, num_block=2)
    kernel = _random_kernels(1, 3)[0].flatten()
    jacobian = torch.autograd.functional.jacobian(lambda k: prior.encode(k[None])[0], kernel)
    _, log_det = prior.encode_with_log_det(kernel[None])
    assert float(log_det.detach()) == pytest.approx(float(torch.linalg.slogdet(jacobian)[1]), rel=1e-9, abs=1e-9)


def test_log_prob_is_gaussian_log_density_plus_log_det():
    prior = _perturbed_prior(size=3, num_block=2)
    kernels = _random_kernels(4, 3)
    z, log_det = prior.encode_with_log_det(kernels)
    expected = -0.5 * (z**2).sum(1) - 0.5 * 9 * math.log(2 * math.pi) + log_det
    assert torch.allclose(prior.log_prob(kernels), expected, atol=1e-10)
    assert torch.allclose(prior(kernels.reshape(4, 1, 3, 3)), expected, atol=1e-10)


def test_samples_are_normalized_kernels_and_reproducible():
    prior = _perturbed_prior(size=5, num_block=2)
    first = prior.sample(6, generator=torch.Generator().manual_seed(3))
    second = prior.sample(6, generator=torch.Generator().manual_seed(3))
    assert first.shape == (6, 5, 5)
    assert torch.equal(first, second)
    assert bool((first >= 0).all())
    assert torch.allclose(first.sum(dim=(1, 2)), torch.ones(6, dtype=first.dtype), atol=1e-10)


def test_training_mode_uses_batch_statistics_and_updates_running_averages():
    prior = KernelFlowPrior(kernel_size=3, num_block=1).train()
    kernels = _random_kernels(16, 3, dtype=torch.float32)
    before = prior.net[1].running_mean.clone()
    prior.log_prob(kernels)
    assert not torch.equal(prior.net[1].running_mean, before)
    decoded_train = prior.decode(torch.zeros(2, 9))
    decoded_eval = prior.eval().decode(torch.zeros(2, 9))
    assert torch.equal(decoded_train, decoded_eval)


def test_gradcheck_of_the_log_likelihood():
    prior = _perturbed_prior(size=3, num_block=2)
    kernels = _random_kernels(2, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda k: prior.log_prob(k), (kernels, ))


def test_flow_nll_loss_is_the_mean_negative_log_likelihood():
    loss = build_loss({'type': 'FlowNLLLoss', 'loss_weight': 2.0, 'per_dim': True})
    log_prob = torch.tensor([-3.0, 5.0])
    assert float(loss(log_prob, 4)) == pytest.approx(2.0 * -(-3.0 + 5.0) / 2 / 4)
    with pytest.raises(ValueError, match='Supported ones are'):
        build_loss({'type': 'FlowNLLLoss', 'reduction': 'max'})


def test_invalid_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match='positive odd integer, got 4'):
        KernelFlowPrior(kernel_size=4)
    with pytest.raises(ValueError, match=r'expected \(P, 3, 3\)'):
        KernelFlowPrior(kernel_size=3).log_prob(torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r'z: expected \(P, 9\)'):
        KernelFlowPrior(kernel_size=3).decode(torch.rand(2, 8))


def test_decoding_an_extreme_code_gives_a_kernel_not_nan():
    prior = _perturbed_prior(size=3, num_block=5).float()
    with torch.no_grad():  # scales of exp(60) per coupling overflow float32 before the last coupling
        for coupling in prior.net[0::2]:
            coupling.s_net[-1].bias.fill_(60.0)
    kernels = prior.decode(torch.full((2, 9), 50.0))
    assert torch.isfinite(kernels).all()
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize('size, num_hidden', [(3, 1), (5, 2)])
def test_column_decode_equals_the_layer_by_layer_decode_with_gradients(size, num_hidden):
    prior = KernelFlowPrior(kernel_size=size, num_block=3, hidden_size=6, num_hidden=num_hidden).double()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for tensor in prior.parameters():
            tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
        for layer in prior.net[1::2]:
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator))
            layer.running_var.copy_(0.5 + torch.rand(layer.running_var.shape, generator=generator))
    prior.eval().requires_grad_(False)
    z = torch.randn(size * size, 7, generator=generator, dtype=torch.float64)
    for normalize in (False, True):
        expected = prior.decode(z.T, normalize=normalize).reshape(7, -1).T
        with torch.no_grad():
            assert torch.allclose(prior.decode_columns(z, normalize=normalize), expected, atol=1e-12)
        assert torch.allclose(prior.decode_columns(z.T.contiguous().T, normalize=normalize), expected, atol=1e-12)
    codes = z.clone().requires_grad_(True)
    rows = z.T.clone().requires_grad_(True)
    weights = torch.randn(size * size, 7, generator=generator, dtype=torch.float64)
    (prior.decode_columns(codes) * weights).sum().backward()
    (prior.decode(rows).reshape(7, -1) * weights.T).sum().backward()
    assert torch.allclose(codes.grad, rows.grad.T, atol=1e-12)
    torch.autograd.gradcheck(lambda c: prior.decode_columns(c), (z[:, :2].clone().requires_grad_(True), ))


def test_column_decode_rejects_row_codes():
    with pytest.raises(ValueError, match=r'expected \(9, P\)'):
        KernelFlowPrior(kernel_size=3).decode_columns(torch.rand(4, 8))

