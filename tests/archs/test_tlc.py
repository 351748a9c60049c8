"""TLC local average pooling: against a slow direct window mean, calibration of the windows, NAFNetLocal semantics."""
import pytest
import torch
from torch import nn

from basicsr_blurfield.archs.nafnet_arch import NAFNet, NAFNetLocal
from basicsr_blurfield.archs.tlc import LocalAvgPool2d, local_average_pool, replace_global_pooling

TINY = dict(width=8, middle_blk_num=1, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1))


def reference_local_mean(x: torch.Tensor, kernel_size: tuple) -> torch.Tensor:
    """Direct TLC window mean: window k1 x k2 (k = min(size, kernel)) starting at clamp(y - (k - 1) // 2, 0, h - k)."""
    height, width = x.shape[-2:]
    k1, k2 = min(height, kernel_size[0]), min(width, kernel_size[1])
    out = torch.empty_like(x)
    for y in range(height):
        top = min(max(y - (k1 - 1) // 2, 0), height - k1)
        for col in range(width):
            left = min(max(col - (k2 - 1) // 2, 0), width - k2)
            out[..., y, col] = x[..., top:top + k1, left:left + k2].mean(dim=(-2, -1))
    return out


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return net.eval()


@pytest.mark.parametrize('size,kernel', [((9, 11), (4, 5)), ((10, 7), (3, 3)), ((8, 12), (8, 5)), ((6, 13), (20, 4)),
                                         ((7, 7), (1, 1))])
def test_local_mean_matches_the_direct_window_mean(size, kernel):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(local_average_pool(x, kernel), reference_local_mean(x, kernel), atol=1e-12)


def test_window_covering_the_map_gives_the_global_mean():
    x = torch.rand(2, 4, 6, 9, generator=torch.Generator().manual_seed(2))
    out = local_average_pool(x, (6, 12))
    assert out.shape == (2, 4, 1, 1)
    assert torch.allclose(out, x.mean(dim=(2, 3), keepdim=True))


def test_local_mean_passes_gradcheck():
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: local_average_pool(t, (3, 4)), (x, ))


def test_fast_implementation_without_subsampling_is_exact():
    x = torch.rand(1, 3, 11, 13, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(
        local_average_pool(x, (4, 6), fast_imp=True, max_r=(1, 1)), local_average_pool(x, (4, 6)), atol=1e-6)


def test_fast_implementation_subsamples_and_keeps_constants():
    x = torch.full((1, 2, 20, 30), 0.25)
    out = local_average_pool(x, (10, 10), fast_imp=True, max_r=(5, 5))
    assert out.shape == x.shape
    assert torch.allclose(out, x)
    ramp = torch.linspace(0, 1, 30).expand(1, 1, 20, 30).contiguous()
    fast = local_average_pool(ramp, (10, 10), fast_imp=True, max_r=(5, 5))
    exact = local_average_pool(ramp, (10, 10))
    slope = 1 / 29
    assert (fast - exact).abs().max() <= 6 * slope  # piecewise constant over r = 5 pixels: off by about r pixels
    assert not torch.allclose(fast, exact)


class _Gated(nn.Module):
    """x * pool(x), the way channel attention uses a global pool."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        return x * self.pool(x).mean(dim=(2, 3), keepdim=True)


def test_replacement_swaps_only_global_pools_and_calibrates_windows_by_stride():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), _Gated(nn.AdaptiveAvgPool2d(1)), nn.Conv2d(4, 4, 2, stride=2),
        nn.Sequential(_Gated(nn.AdaptiveAvgPool2d((1, 1))), _Gated(nn.AdaptiveAvgPool2d(2))))
    replace_global_pooling(net, base_size=(24, 30), train_size=(1, 3, 16, 20))
    assert isinstance(net[1].pool, LocalAvgPool2d) and isinstance(net[3][0].pool, LocalAvgPool2d)
    assert type(net[3][1].pool) is nn.AdaptiveAvgPool2d
    assert net[1].pool.kernel_size == (24, 30)  # 16 * 24 // 16, 20 * 30 // 20
    assert net[3][0].pool.kernel_size == (12, 15)  # the map after the stride-2 conv is (8, 10)


def test_calibration_falls_back_to_a_real_forward_when_meta_tensors_fail():

    class NeedsValues(nn.Module):

        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            if x.sum().item() > 1e9:
                return x
            return self.pool(x)

    net = replace_global_pooling(NeedsValues(), base_size=6, train_size=(1, 1, 4, 4))
    assert net.pool.kernel_size == (6, 6)


def test_pool_not_reached_by_calibration_is_an_error():

    class Skips(nn.Module):

        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match='not reached'):
        replace_global_pooling(Skips(), train_size=(1, 3, 8, 8))


@pytest.mark.parametrize('kwargs,message', [(dict(train_size=(3, 8, 8)), 'train_size'),
                                            (dict(train_size=(1, 3, 8, 8), base_size=(0, 4)), 'base_size')])
def test_malformed_sizes_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        replace_global_pooling(nn.AdaptiveAvgPool2d(1), **kwargs)


def test_nafnet_local_default_base_size_is_one_and_a_half_train_size():
    net = NAFNetLocal(**TINY, train_size=(1, 3, 32, 32))
    windows = [m.kernel_size for m in net.modules() if isinstance(m, LocalAvgPool2d)]
    # module order: encoders (maps 32, 16), decoders (16, 32), middle (8); window = map * 48 // 32
    assert windows == [(48, 48), (24, 24), (24, 24), (48, 48), (12, 12)]
    assert len(windows) == sum(1 for m in NAFNet(**TINY).modules() if isinstance(m, nn.AdaptiveAvgPool2d))


def test_nafnet_local_equals_nafnet_up_to_the_base_size_and_differs_beyond():
    plain = randomised(NAFNet(**TINY))
    local = NAFNetLocal(**TINY, train_size=(1, 3, 32, 32)).eval()
    local.load_state_dict(plain.state_dict())
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        small = torch.rand(2, 3, 37, 45, generator=generator)  # padded to 40 x 48 <= 48 x 48
        assert torch.equal(local(small), plain(small))
        large = torch.rand(1, 3, 70, 45, generator=generator)
        assert (local(large) - plain(large)).abs().max() > 1e-4


def test_nafnet_local_matches_a_reference_with_explicit_local_statistics():
    plain = randomised(NAFNet(**TINY))
    local = NAFNetLocal(**TINY, train_size=(1, 3, 16, 16), base_size=(16, 20)).eval()
    local.load_state_dict(plain.state_dict())
    windows = {}
    for name, module in local.named_modules():
        if isinstance(module, LocalAvgPool2d):
            windows[name] = module.kernel_size

    def local_hook(name):
        return lambda module, args, out: reference_local_mean(args[0], windows[name])

    handles = [plain.get_submodule(name).register_forward_hook(local_hook(name)) for name in windows]
    x = torch.rand(1, 3, 24, 28, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = plain(x)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        assert torch.allclose(local(x), expected, atol=1e-5)
