"""MPRNet (deblurring): published layout with the shared PReLU, stage outputs, patch structure, any input size."""
import json
import os

import pytest
import torch
from torch import nn

from basicsr.archs import build_network
from basicsr_blurfield.archs.mprnet_arch import MPRNet
from tests.conftest import FIXTURES

FIXTURE = os.path.join(FIXTURES, 'mprnet_deblur_state_dict.json')
TINY = dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1, reduction=4)


def load_fixture() -> dict:
    with open(FIXTURE) as handle:
        return json.load(handle)


def tiny_net(seed: int = 0, **kwargs) -> MPRNet:
    net = MPRNet(**{**TINY, **kwargs})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return net.eval()


def test_published_config_has_the_published_parameter_count_and_state_dict_layout():
    fixture = load_fixture()
    with torch.device('meta'):
        net = MPRNet(**fixture['config'])
    assert sum(p.numel() for p in net.parameters()) == fixture['num_params'] == 20127073
    state = net.state_dict()
    assert list(state) == list(fixture['state_dict'])
    assert len(state) == fixture['num_state_dict_keys'] == 316
    for key, shape in fixture['state_dict'].items():
        assert list(state[key].shape) == shape, key
    assert sum(v.numel() for v in state.values()) == fixture['state_dict_total_elements']
    by_top = {}
    for name, param in net.named_parameters():  # deduplicated: the shared PReLU counts in its first module only
        by_top[name.split('.')[0]] = by_top.get(name.split('.')[0], 0) + param.numel()
    assert by_top == fixture['params_by_top_module']


def test_one_prelu_is_shared_by_every_channel_attention_block():
    fixture = load_fixture()
    with torch.device('meta'):
        published = MPRNet(**fixture['config'])
    slope_keys = [key for key, value in published.state_dict().items() if value.shape == (1, )]
    assert slope_keys == fixture['aliased_keys'][0] and len(slope_keys) == 55
    net = MPRNet(**TINY)
    assert len({id(m) for m in net.modules() if isinstance(m, nn.PReLU)}) == 1
    state = net.state_dict()
    assert len({state[key].data_ptr() for key, value in state.items() if value.shape == (1, )}) == 1


def test_outputs_are_final_then_stage2_then_stage1_at_full_resolution():
    net = tiny_net()
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = net(x)
        net.return_list = False
        final = net(x)
    assert isinstance(outputs, list) and len(outputs) == 3
    assert all(out.shape == x.shape for out in outputs)
    assert torch.equal(final, outputs[0])


def test_zero_weights_make_every_stage_return_the_input():
    net = MPRNet(**TINY)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
    x = torch.rand(1, 3, 24, 16, generator=torch.Generator().manual_seed(2))
    for out in net(x):
        assert torch.allclose(out, x)


def test_stage1_sees_each_quarter_independently():
    net = tiny_net(seed=3)
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(4))
    changed = x.clone()
    changed[..., 16:, 24:] = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before, after = net(x), net(changed)
    assert torch.allclose(before[2][..., :16, :24], after[2][..., :16, :24], atol=1e-6)
    assert torch.allclose(before[2][..., :16, 24:], after[2][..., :16, 24:], atol=1e-6)
    assert not torch.allclose(before[2][..., 16:, 24:], after[2][..., 16:, 24:])
    assert not torch.allclose(before[0][..., :16, :24], after[0][..., :16, :24])


def test_yaml_built_network_runs_forward_and_backward_at_odd_size():
    opt = {
        'type': 'MPRNet',
        'in_c': 3,
        'out_c': 3,
        'n_feat': 8,
        'scale_unetfeats': 4,
        'scale_orsnetfeats': 4,
        'num_cab': 1,
        'reduction': 4,
        'return_list': True
    }
    net = build_network(opt)
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(6))
    outputs = net(x)
    assert [out.shape for out in outputs] == [x.shape] * 3
    sum(out.square().mean() for out in outputs).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_single_output_option_from_yaml():
    net = build_network({'type': 'MPRNet', **TINY, 'return_list': False})
    out = net(torch.rand(1, 3, 9, 14, generator=torch.Generator().manual_seed(7)))
    assert torch.is_tensor(out) and out.shape == (1, 3, 9, 14)


def test_non_image_input_is_rejected():
    with pytest.raises(ValueError, match=r'expected \(N, C, H, W\)'):
        MPRNet(**TINY)(torch.rand(3, 16, 16))
