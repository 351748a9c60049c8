"""MPRNet's Charbonnier + edge loss and MIMO-UNet's L1 + FFT loss: closed-form values, the Laplacians' null spaces,
a NumPy FFT reference, YAML construction, and a multi-output DeblurModel step with each."""
import numpy as np
import pytest
import torch

from basicsr.losses import build_loss
from basicsr.models import build_model
from basicsr_blurfield.losses.backbone_loss import discrete_laplacian, pyramid_laplacian


def test_both_laplacians_vanish_on_constant_and_linear_images_and_not_on_edges():
    yy, xx = torch.meshgrid(torch.arange(12.).double(), torch.arange(15.).double(), indexing='ij')
    ramp = (0.3 * yy - 0.2 * xx + 1)[None, None]
    for laplacian in (pyramid_laplacian, discrete_laplacian):
        constant = laplacian(torch.full((1, 3, 9, 10), 0.7, dtype=torch.float64))
        assert torch.allclose(constant[..., 4:-4, 4:-4], torch.zeros(1, 3, 1, 2, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(laplacian(ramp)[..., 4:-4, 4:-4], torch.zeros(1, 1, 4, 7, dtype=torch.float64),
                              atol=1e-12)
        step = (xx >= 7).double()[None, None]
        assert laplacian(step)[..., 6, 6:8].abs().min() > 0.05
    assert torch.equal(discrete_laplacian(torch.full((1, 3, 9, 10), 0.7)), torch.zeros(1, 3, 9, 10))
    quadratic = discrete_laplacian((xx**2)[None, None])[..., 1:-1, 1:-1]
    assert torch.allclose(quadratic, torch.full((1, 1, 10, 13), 2., dtype=torch.float64))


def test_charbonnier_edge_loss_has_its_closed_form_on_a_constant_difference():
    loss = build_loss({'type': 'CharbonnierEdgeLoss', 'loss_weight': 2.0, 'edge_weight': 0.05, 'eps': 1e-3,
                       'laplacian': 'discrete'})
    target = torch.rand(2, 3, 8, 9)
    assert loss(target + 0.1, target).item() == pytest.approx(2.0 * (np.sqrt(0.1**2 + 1e-6) + 0.05 * 1e-3), rel=1e-5)
    assert loss(target, target).item() == pytest.approx(2.0 * 1.05e-3, rel=1e-5)
    published = build_loss({'type': 'CharbonnierEdgeLoss'})
    assert published(target, target).item() == pytest.approx(1.05e-3, rel=1e-5)
    edges = target.clone()
    edges[..., 4:, :] += 0.3
    assert published(edges, target).item() > published(target + 0.3 * 4 / 8, target).item()


def test_l1_frequency_loss_matches_numpy_fft():
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 7, 10, generator=generator), torch.rand(2, 3, 7, 10, generator=generator)
    loss = build_loss({'type': 'L1FrequencyLoss', 'frequency_weight': 0.1})
    spectrum = np.fft.fft2(pred.double().numpy()) - np.fft.fft2(target.double().numpy())
    expected = np.abs(pred - target).mean().item() + 0.1 * np.abs(np.concatenate([spectrum.real, spectrum.imag])).mean()
    assert abs(loss(pred, target).item() - expected) < 1e-5 * expected
    delta = torch.zeros(1, 1, 4, 5)
    delta[0, 0, 0, 0] = 2.0
    assert loss(delta, torch.zeros_like(delta)).item() == pytest.approx(2.0 / 20 + 0.1 * 2.0 / 2, rel=1e-6)


def test_wrong_inputs_and_options_are_refused():
    with pytest.raises(ValueError, match='two \\(N, C, H, W\\) tensors of one shape'):
        build_loss({'type': 'L1FrequencyLoss'})(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match="laplacian: expected one of \\['discrete', 'pyramid'\\]"):
        build_loss({'type': 'CharbonnierEdgeLoss', 'laplacian': 'sobel'})


@pytest.mark.parametrize('pixel_opt', [{'type': 'CharbonnierEdgeLoss'}, {'type': 'L1FrequencyLoss'}])
def test_a_multi_scale_deblur_model_trains_a_step_with_each_published_loss(pixel_opt):
    option = {
        'name': 'loss_test', 'model_type': 'DeblurModel', 'num_gpu': 0, 'is_train': True, 'dist': False,
        'network_g': {'type': 'MIMOUNet', 'num_res': 1, 'base_channel': 4},
        'path': {'models': '', 'training_states': ''},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'pixel_opt': pixel_opt,
                  'scheduler': {'type': 'TrueCosineAnnealingLR', 'T_max': 10, 'eta_min': 1e-7}},
    }
    model = build_model(option)
    gt = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model.feed_data({'lq': (gt + gt.roll(1, -1)) / 2, 'gt': gt})
    model.optimize_parameters(1)
    assert np.isfinite(model.get_current_log()['l_pix']) and model.get_current_log()['l_pix'] > 0
