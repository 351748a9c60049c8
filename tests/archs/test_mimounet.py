"""MIMO-UNet / MIMO-UNet+: published layouts and counts, coarse-to-fine outputs, dropout, any input size."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from basicsr.archs import build_network
from basicsr_blurfield.archs.mimounet_arch import MIMOUNet, MIMOUNetPlus
from tests.conftest import FIXTURES

TINY = dict(num_res=1, base_channel=8)


def load_fixture(name: str) -> dict:
    path = os.path.join(FIXTURES, name)
    with open(path) as handle:
        return json.load(handle)


def randomise(net, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return net


@pytest.mark.parametrize('cls,fixture_name,count', [(MIMOUNet, 'mimounet_state_dict.json', 6807171),
                                                    (MIMOUNetPlus, 'mimounetplus_state_dict.json', 16107651)])
def test_published_config_has_the_published_parameter_count_and_state_dict_layout(cls, fixture_name, count):
    fixture = load_fixture(fixture_name)
    assert fixture['class'] == cls.__name__
    with torch.device('meta'):
        net = cls(num_res=fixture['config']['num_res'])
        default = cls()
    assert sum(p.numel() for p in net.parameters()) == fixture['num_params'] == count
    assert sum(p.numel() for p in default.parameters()) == count
    state = net.state_dict()
    assert list(state) == list(fixture['state_dict'])
    for key, shape in fixture['state_dict'].items():
        assert list(state[key].shape) == shape, key
    for name, top_count in fixture['params_by_top_module'].items():
        assert sum(p.numel() for p in getattr(net, name).parameters()) == top_count, name


@pytest.mark.parametrize('size', [(37, 45), (32, 48), (5, 6)])
def test_outputs_run_coarse_to_fine_and_the_last_is_the_final_image(size):
    net = randomise(MIMOUNet(**TINY)).eval()
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = net(x)
        net.return_list = False
        final = net(x)
    height, width = size
    assert [tuple(out.shape[-2:]) for out in outputs] == [(math.ceil(height / 4), math.ceil(width / 4)),
                                                          (math.ceil(height / 2), math.ceil(width / 2)), size]
    assert torch.equal(final, outputs[-1])


def test_zero_weights_return_the_nearest_downsampled_inputs():
    net = MIMOUNet(**TINY)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    x_2 = F.interpolate(x, scale_factor=0.5, mode='nearest')
    expected = [F.interpolate(x_2, scale_factor=0.5, mode='nearest'), x_2, x]
    for out, target in zip(net(x), expected):
        assert torch.equal(out, target)


def test_plus_variant_drops_fused_features_only_in_training():
    plus = randomise(MIMOUNetPlus(**TINY), seed=3)
    plain = MIMOUNet(**TINY)
    plain.load_state_dict(plus.state_dict())
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    plus.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(plus(x)[-1], plain(x)[-1])
        plus.train()
        plain.train()
        first = plus(x)[-1]
        second = plus(x)[-1]
        assert not torch.allclose(first, second)
        assert torch.equal(plain(x)[-1], plain(x)[-1])


@pytest.mark.parametrize('arch_type', ['MIMOUNet', 'MIMOUNetPlus'])
def test_yaml_built_network_runs_forward_and_backward_at_odd_size(arch_type):
    net = build_network({'type': arch_type, 'num_res': 1, 'base_channel': 8, 'return_list': True})
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(5))
    outputs = net(x)
    assert outputs[-1].shape == x.shape
    sum(out.square().mean() for out in outputs).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_single_output_option_from_yaml():
    net = build_network({'type': 'MIMOUNet', 'num_res': 1, 'base_channel': 8, 'return_list': False})
    out = net(torch.rand(1, 3, 11, 7, generator=torch.Generator().manual_seed(6)))
    assert torch.is_tensor(out) and out.shape == (1, 3, 11, 7)


def test_non_image_input_is_rejected():
    with pytest.raises(ValueError, match=r'expected \(N, C, H, W\)'):
        MIMOUNet(**TINY)(torch.rand(3, 16, 16))
