"""GaussianKLLoss (VAE term of the blur-kernel space) and the Charbonnier reduction the paper uses, from YAML."""
import math

import pytest
import torch
import yaml

from basicsr.losses import build_loss


def test_kl_loss_from_yaml_is_twice_the_gaussian_kl_summed():
    loss = build_loss(yaml.safe_load('{type: GaussianKLLoss, loss_weight: 10, reduction: sum, eps: 0}'))
    torch.manual_seed(0)
    mu, sigma = torch.randn(2, 4, 3, 3, dtype=torch.float64), torch.rand(2, 4, 3, 3, dtype=torch.float64) + 0.1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0, 1)).sum()
    assert torch.isclose(loss(mu, sigma), 10 * 2 * expected, rtol=1e-12)
    assert loss(torch.zeros(1, 2, 1, 1), torch.ones(1, 2, 1, 1)).abs() < 1e-12


def test_kl_loss_mean_reduction_and_errors():
    loss = build_loss({'type': 'GaussianKLLoss', 'reduction': 'mean'})
    mu, sigma = torch.full((1, 2, 2, 2), 0.5), torch.ones(1, 2, 2, 2)
    assert torch.isclose(loss(mu, sigma), torch.tensor(0.25 + 1 - math.log(1 + 1e-8) - 1))
    with pytest.raises(ValueError, match='VAE extractor'):
        loss(mu, None)
    with pytest.raises(ValueError, match='Supported ones are'):
        build_loss({'type': 'GaussianKLLoss', 'reduction': 'none'})


def test_basicsr_charbonnier_with_sum_is_the_papers_penalty():
    loss = build_loss({'type': 'CharbonnierLoss', 'loss_weight': 1.0, 'reduction': 'sum', 'eps': 1e-6})
    pred, target = torch.rand(2, 3, 5, 4, dtype=torch.float64), torch.rand(2, 3, 5, 4, dtype=torch.float64)
    assert torch.isclose(loss(pred, target), torch.sqrt((pred - target)**2 + 1e-6).sum(), rtol=1e-12)
