"""MSSSIMLoss / ms_ssim against the pytorch-msssim package's own definition, small crops, gradients, errors."""
import pytest
import torch
import yaml
from pytorch_msssim import ms_ssim as package_ms_ssim
from pytorch_msssim import ssim as package_ssim
from skimage import data as skimage_data

from basicsr.losses import build_loss
from basicsr_blurfield.losses.msssim_loss import MSSSIM_WEIGHTS, ms_ssim


def _pair(size, dtype=torch.float64):
    photo = torch.from_numpy(skimage_data.astronaut()[:size[0], 100:100 + size[1]].copy()).permute(2, 0, 1)
    sharp = photo[None].to(dtype) / 255
    generator = torch.Generator().manual_seed(0)
    noisy = (sharp + 0.08 * torch.randn(sharp.shape, generator=generator, dtype=dtype)).clamp(0, 1)
    return torch.cat((sharp, noisy.flip(-1))), torch.cat((noisy, sharp))


def _window64(channels: int = 3) -> torch.Tensor:
    """The package's 11-tap sigma-1.5 window in float64 (its default one is built in float32)."""
    taps = torch.arange(11, dtype=torch.float64) - 5
    window = torch.exp(-taps**2 / (2 * 1.5**2))
    return (window / window.sum()).view(1, 1, -1).repeat(channels, 1, 1, 1)


@pytest.mark.parametrize('size', [(176, 169), (161, 200)])  # odd and even sides: the pooling pads odd ones
def test_five_scales_match_the_package(size):
    x, y = _pair(size)
    ours = ms_ssim(x, y)
    assert 0.1 < ours.item() < 0.99
    assert ours.item() == pytest.approx(package_ms_ssim(x, y, data_range=1.0, win=_window64()).item(), abs=1e-12)
    x, y = x.float(), y.float()
    assert ms_ssim(x, y).item() == pytest.approx(package_ms_ssim(x, y, data_range=1.0).item(), abs=1e-6)


def test_fewer_scales_use_the_renormalised_published_weights_and_match_the_package():
    x, y = _pair((176, 176))
    weights = [w / sum(MSSSIM_WEIGHTS[:3]) for w in MSSSIM_WEIGHTS[:3]]
    theirs = package_ms_ssim(x, y, data_range=1.0, weights=weights, win=_window64())
    assert ms_ssim(x, y, num_scales=3).item() == pytest.approx(theirs.item(), abs=1e-12)


def test_one_scale_is_ssim():
    x, y = _pair((64, 70))
    theirs = package_ssim(x, y, data_range=1.0, nonnegative_ssim=True, win=_window64())
    assert ms_ssim(x, y, num_scales=1).item() == pytest.approx(theirs.item(), abs=1e-12)


def test_loss_from_yaml_trains_on_small_crops_with_fewer_scales():
    loss = build_loss(yaml.safe_load('{type: MSSSIMLoss, loss_weight: 0.1, num_scales: 3}'))
    assert loss.min_size() == 41
    x, y = _pair((48, 48), torch.float32)
    pred = x.clone().requires_grad_(True)
    value = loss(pred, y)
    assert value.item() == pytest.approx(0.1 * (1 - ms_ssim(x, y, num_scales=3).item()), rel=1e-6)
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert loss(y, y).item() == pytest.approx(0, abs=1e-6)


def test_gradcheck_in_float64():
    x, y = _pair((20, 21))
    pred = x[:1, :1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: ms_ssim(p, y[:1, :1], num_scales=2, win_size=5), (pred, ))


def test_too_small_images_name_the_usable_number_of_scales():
    loss = build_loss({'type': 'MSSSIMLoss'})
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r'must exceed .* = 160 .*set num_scales: 3'):
        loss(x, x)
    with pytest.raises(ValueError, match=r'num_scales: expected an int in 1..5'):
        build_loss({'type': 'MSSSIMLoss', 'num_scales': 6})
    with pytest.raises(ValueError, match='one shape'):
        ms_ssim(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 63), num_scales=1)
