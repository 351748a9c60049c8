"""PSNRLoss and ReblurLoss against direct formulas; weighted_distance reductions and errors."""
import math

import pytest
import torch

from basicsr.losses import build_loss
from basicsr_blurfield.fields import KernelField
from basicsr_blurfield.losses.reblur_loss import weighted_distance


def test_psnr_loss_is_the_negative_mean_psnr_of_the_samples():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 9, generator=generator)
    pred = target + 0.05 * torch.randn(2, 3, 8, 9, generator=generator)
    loss = build_loss({'type': 'PSNRLoss', 'loss_weight': 0.5})(pred, target)
    psnr = [10 * math.log10(1 / float(((pred[n] - target[n])**2).mean())) for n in range(2)]
    assert loss.item() == pytest.approx(-0.5 * sum(psnr) / 2, rel=1e-4)


def test_psnr_loss_rejects_unknown_reduction_and_shape_mismatch():
    with pytest.raises(ValueError, match=r"Supported ones are: \['mean'\]"):
        build_loss({'type': 'PSNRLoss', 'reduction': 'sum'})
    with pytest.raises(ValueError, match='same shape|one shape'):
        build_loss({'type': 'PSNRLoss'})(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


def test_reblur_loss_blurs_the_sharp_image_through_the_field_and_weights_pixels():
    generator = torch.Generator().manual_seed(1)
    sharp = torch.rand(2, 3, 9, 10, generator=generator)
    kernels = torch.rand(2, 9, 9, 10, generator=generator)
    field = KernelField(kernels / kernels.sum(1, keepdim=True))
    blurry = torch.rand(2, 3, 9, 10, generator=generator)
    weight = torch.rand(2, 1, 9, 10, generator=generator)
    loss = build_loss({'type': 'ReblurLoss', 'loss_weight': 0.01, 'criterion': 'l2'})(field, sharp, blurry, weight)
    expected = 0.01 * ((field.blur(sharp) - blurry)**2 * weight).sum() / weight.expand(2, 3, 9, 10).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    charbonnier = build_loss({'type': 'ReblurLoss', 'criterion': 'charbonnier', 'eps': 1e-3})(field, sharp, blurry)
    expected = torch.sqrt((field.blur(sharp) - blurry)**2 + 1e-6).mean()
    assert charbonnier.item() == pytest.approx(expected.item(), rel=1e-5)


def test_weighted_distance_reductions_and_errors():
    pred, target = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    assert weighted_distance(pred, target, reduction='sum').item() == 4
    assert weighted_distance(pred, target, reduction='none').shape == (1, 1, 2, 2)
    message = r"Unsupported criterion: l3. Supported ones are: \['l1', 'l2', 'charbonnier'\]"
    with pytest.raises(ValueError, match=message):
        weighted_distance(pred, target, criterion='l3')
    with pytest.raises(ValueError, match='does not broadcast'):
        weighted_distance(pred, target, weight=torch.ones(2, 1, 3, 3))
    with pytest.raises(TypeError, match='expects a blur field'):
        build_loss({'type': 'ReblurLoss'})(pred, pred, pred)
