"""BasisKernelNet (Carbajal et al.): output field, any size, gradients, published layout and remap."""
import json
import os

import numpy as np
import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr_blurfield.archs.basis_kernel_arch import BasisKernelNet, remap_official_keys
from basicsr_blurfield.fields import BasisField, KernelField, draw_kernel_grid, load_field, save_field
from tests.conftest import FIXTURES

FIXTURE = os.path.join(FIXTURES, 'carbajal_twoheads_k25_state_dict.json')
TINY = dict(num_basis=4, kernel_size=9, num_feat=8, enc_channels=(8, 12, 16), kernel_channels=(12, 8, 8))


def tiny_net(**kwargs):
    torch.manual_seed(0)
    return BasisKernelNet(**{**TINY, **kwargs})


def load_fixture():
    with open(FIXTURE) as handle:
        return json.load(handle)


@pytest.mark.parametrize('size', [(16, 16), (19, 27), (24, 9 + 8)])
def test_output_is_a_normalised_basis_field_of_the_input_size(size):
    net = tiny_net().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        field = net(x)
    assert isinstance(field, BasisField)
    assert field.basis.shape == (2, 4, 9, 9)
    assert field.mixing.shape == (2, 4) + size
    assert torch.allclose(field.basis.sum((2, 3)), torch.ones(2, 4), atol=1e-5)
    assert torch.allclose(field.mixing.sum(1), torch.ones(2, *size), atol=1e-5)
    assert field.blur(x).shape == x.shape


def test_grey_input_uses_its_own_convolution():
    net = tiny_net().eval()
    grey = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        field = net(grey)
        assert field.mixing.shape == (1, 4, 16, 16)
        net.conv_in[1][0].weight.zero_()
        assert not torch.allclose(net(grey).mixing, field.mixing)


def test_wrong_channel_count_is_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match=r'C in \(3, 1\)'):
        tiny_net()(torch.rand(1, 2, 16, 16))


def test_kernel_size_must_be_reachable_by_upsampling():
    with pytest.raises(ValueError, match='2\\*\\*m \\+ 1'):
        tiny_net(kernel_size=7)
    assert tiny_net(kernel_size=17).eval()(torch.rand(1, 3, 24, 24)).basis.shape == (1, 4, 17, 17)


def test_linearisation_is_applied_to_the_input():
    net = tiny_net().eval()
    plain = tiny_net(linearize=False).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x).mixing, plain(x**2.2 - 0.5).mixing, atol=1e-6)


def test_every_parameter_used_for_rgb_gets_a_gradient():
    net = tiny_net(in_channels=(3, ))
    field = net(torch.rand(2, 3, 16, 20))
    sharp = torch.rand(2, 3, 16, 20)
    loss = field.blur(sharp).square().mean() + field.dense().kernels.square().mean()
    loss.backward()
    missing = [name for name, param in net.named_parameters() if param.grad is None or param.grad.abs().sum() == 0]
    assert not missing
    assert all(torch.isfinite(param.grad).all() for param in net.parameters())


def test_field_feeds_the_shared_tools(tmp_path):
    net = tiny_net().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        field = net(x)
        dense = field.dense()
        assert isinstance(dense, KernelField)
        assert torch.allclose(dense.blur(x), field.blur(x), atol=1e-5)
        assert torch.allclose((field.blur(x) * x).sum(), (x * field.adjoint(x)).sum(), rtol=1e-4)
        points = torch.tensor([[0, 3, 5], [0, 15, 0]])
        assert torch.allclose(field.kernels_at(points), dense.kernels_at(points), atol=1e-6)
    grid = draw_kernel_grid(x[0], field, step=8)
    assert grid.shape == (16, 16, 3) and grid.dtype == np.uint8
    save_field(str(tmp_path / 'field.npz'), field)
    loaded = load_field(str(tmp_path / 'field.npz'))
    assert isinstance(loaded, BasisField) and torch.equal(loaded.mixing, field.mixing)


def test_build_network_from_yaml_options():
    net = build_network({'type': 'BasisKernelNet', **TINY})
    assert isinstance(net, BasisKernelNet) and net.multiple == 8


def test_published_configuration_has_the_published_parameter_count():
    fixture = load_fixture()
    net = BasisKernelNet()
    assert sum(param.numel() for param in net.parameters()) == fixture['num_params'] == 79829298


def test_official_keys_remap_exactly_onto_ours_key_by_key_and_shape_by_shape():
    fixture = load_fixture()
    ours = {name: tuple(value.shape) for name, value in BasisKernelNet().state_dict().items()}
    official = {name: torch.zeros(shape) for name, shape in fixture['state_dict'].items()}
    remapped = remap_official_keys(official)
    assert len(remapped) == len(official) == fixture['num_state_dict_keys']
    assert {name: tuple(value.shape) for name, value in remapped.items()} == ours
    assert remapped['encoder.4.body.2.weight'] is official['down5.double_conv.2.weight']
    assert remapped['kernel_decoder.2.fuse.0.bias'] is official['kernel_up3.feat.0.bias']
    assert remapped['conv_in.1.0.weight'] is official['inc_gray.0.weight']


def test_remap_accepts_wrappers_and_rejects_foreign_keys():
    state = {'module.masks_end.4.bias': torch.zeros(25)}
    assert list(remap_official_keys({'params': state})) == ['mixing_out.4.bias']
    with pytest.raises(ValueError, match='unexpected key'):
        remap_official_keys({'head.weight': torch.zeros(1)})


def test_remapped_weights_load_strictly_and_give_the_same_field():
    torch.manual_seed(1)
    small = dict(num_basis=3, kernel_size=9, num_feat=4, enc_channels=(4, 4, 4), kernel_channels=(4, 4, 4))
    source = BasisKernelNet(**small).eval()
    reverse = {
        'conv_in.0.0.': 'inc_rgb.0.',
        'conv_in.1.0.': 'inc_gray.0.',
        'bottleneck.0.': 'feat.0.',
        'mixing_out.': 'masks_end.',
        'kernel_out.': 'kernels_end.'
    }
    official = {}
    for name, value in source.state_dict().items():
        for ours, theirs in reverse.items():
            name = name.replace(ours, theirs) if name.startswith(ours) else name
        parts = name.split('.')
        part = {'body': 'double_conv', 'fuse': 'feat', 'up': 'up'}
        if parts[0] == 'encoder':
            name = '.'.join([f'down{int(parts[1]) + 1}', 'double_conv'] + parts[3:])
        elif parts[0] in ('mixing_decoder', 'kernel_decoder'):
            prefix = 'up' if parts[0] == 'mixing_decoder' else 'kernel_up'
            name = '.'.join([f'{prefix}{int(parts[1]) + 1}', part[parts[2]]] + parts[3:])
        official[name] = value
    target = BasisKernelNet(**small).eval()
    target.load_state_dict(remap_official_keys(official), strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(target(x).basis, source(x).basis)


def test_size_handlings_agree_at_multiples_of_2_to_the_levels_and_differ_elsewhere():
    official, padded = tiny_net().eval(), tiny_net(size_handling='pad_crop').eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 24, 16)
        assert torch.allclose(official(x).mixing, padded(x).mixing, atol=1e-6)
        assert torch.allclose(official(x).basis, padded(x).basis, atol=1e-7)
        y = torch.rand(1, 3, 21, 27)
        assert (official(y).mixing - padded(y).mixing).abs().max() > 1e-4
        assert official(y).mixing.shape == padded(y).mixing.shape == (1, 4, 21, 27)


def test_size_handling_choices_and_the_official_minimum_size_are_explained():
    with pytest.raises(ValueError, match=r"size_handling: expected one of \('official', 'pad_crop'\), got 'crop'"):
        tiny_net(size_handling='crop')
    with pytest.raises(ValueError, match=r"needs H, W >= 8 .* got \(12, 7\); use size_handling='pad_crop'"):
        tiny_net(kernel_size=9).eval()(torch.rand(1, 3, 12, 7))
    assert tiny_net(kernel_size=9, size_handling='pad_crop').eval()(torch.rand(1, 3, 12, 9)).mixing.shape[-1] == 9


CUE_OPT = """
type: BasisKernelNet
num_basis: 4
kernel_size: 9
num_feat: 8
enc_channels: [8, 12, 16]
kernel_channels: [12, 8, 8]
input_cues: autocorrelation
"""


def cue_net(**kwargs):
    torch.manual_seed(0)
    return build_network({**yaml.safe_load(CUE_OPT), **kwargs})


@pytest.mark.parametrize('channels', [3, 1])
def test_cue_network_from_yaml_reads_177_more_channels_and_gives_a_normalised_basis_field(channels):
    net = cue_net().eval()
    assert isinstance(net, BasisKernelNet) and net.cues.channels == 177
    assert 'cues.lag_table' in net.state_dict() and net.state_dict()['cues.lag_table'].shape == (176, 2)
    assert net.conv_in[0][0].in_channels == 3 + 177 and net.conv_in[1][0].in_channels == 1 + 177
    x = torch.rand(2, channels, 19, 27, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        field = net(x)
    assert isinstance(field, BasisField)
    assert field.basis.shape == (2, 4, 9, 9) and field.mixing.shape == (2, 4, 19, 27)
    assert torch.allclose(field.basis.sum((2, 3)), torch.ones(2, 4), atol=1e-5)
    assert torch.allclose(field.mixing.sum(1), torch.ones(2, 19, 27), atol=1e-5)
    assert (field.basis >= 0).all() and (field.mixing >= 0).all()
    padded = cue_net(size_handling='pad_crop').eval()
    with torch.no_grad():
        assert padded(x).mixing.shape == (2, 4, 19, 27)


def test_cues_come_from_the_image_before_the_linearisation_and_follow_it():
    net = cue_net().eval()
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        net.conv_in[0][0].weight[:, :3] = 0  # the cues alone: they ignore a brightness offset of the image in [0, 1]
        cue_only = net(0.5 * x).mixing
        assert torch.allclose(net(0.5 * x + 0.2).mixing, cue_only, atol=1e-5)
        other = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
        assert not torch.allclose(net(other).mixing, cue_only, atol=1e-4)
        net.conv_in[0][0].weight[:, 3:] = 0  # the image alone: the cue channels come after the linearised image
        plain = tiny_net().eval()
        fresh = ('cues.', 'conv_in.0.0.weight', 'conv_in.1.0.weight')  # what the two networks do not share
        shared = {key: value for key, value in net.state_dict().items() if not key.startswith(fresh)}
        plain.load_state_dict({**plain.state_dict(), **shared})
        plain.conv_in[0][0].weight.copy_(net.conv_in[0][0].weight[:, :3])
        assert torch.allclose(net(x).mixing, plain(x).mixing, atol=1e-6)


def test_cue_network_gives_every_parameter_a_gradient():
    net = cue_net(in_channels=[3])
    field = net(torch.rand(1, 3, 16, 16))
    (field.blur(torch.rand(1, 3, 16, 16)).square().mean() + field.dense().kernels.square().mean()).backward()
    assert not [name for name, param in net.named_parameters() if param.grad is None or param.grad.abs().sum() == 0]


def test_default_network_has_no_cue_keys_and_differs_from_the_cue_network_only_at_the_input():
    plain, cues = tiny_net(), cue_net()
    assert plain.cues is None and not [key for key in plain.state_dict() if key.startswith('cues.')]
    plain_shapes = {key: tuple(value.shape) for key, value in plain.state_dict().items()}
    cue_shapes = {key: tuple(value.shape) for key, value in cues.state_dict().items()}
    assert set(cue_shapes) - set(plain_shapes) == {'cues.lag_table'}
    assert {key for key in plain_shapes if plain_shapes[key] != cue_shapes[key]} == {
        'conv_in.0.0.weight', 'conv_in.1.0.weight'
    }
    assert plain_shapes['conv_in.0.0.weight'] == (8, 3, 3, 3) and cue_shapes['conv_in.0.0.weight'] == (8, 180, 3, 3)


def test_cue_network_reloads_from_its_weights_through_the_loader(tmp_path):
    from basicsr_blurfield.restoration.estimators import _basis_estimator, load_network, network_from_checkpoint
    net = cue_net().eval()
    options, _ = _basis_estimator(net.state_dict())
    assert options['input_cues'] == 'autocorrelation' and options['in_channels'] == (3, 1)
    assert 'input_cues' not in _basis_estimator(tiny_net().state_dict())[0]
    torch.save({'params': net.state_dict()}, tmp_path / 'basis_cues.pth')
    kind, loaded = load_network(str(tmp_path / 'basis_cues.pth'))
    assert kind == 'BasisKernelNet' and loaded.cues is not None and not loaded.training
    x, grey = torch.rand(1, 3, 20, 24), torch.rand(1, 1, 20, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x).mixing, net(x).mixing) and torch.equal(loaded(x).basis, net(x).basis)
        assert torch.equal(loaded(grey).mixing, net(grey).mixing)
        kind, again = network_from_checkpoint({'params_ema': net.state_dict()}, 'in memory')
        assert kind == 'BasisKernelNet' and torch.equal(again(x).mixing, net(x).mixing)


def test_unknown_input_cues_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match=r"input_cues: expected one of \(None, 'autocorrelation'\), got 'edges'"):
        cue_net(input_cues='edges')
