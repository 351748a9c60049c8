"""MotionOffsetNet: the four constraints, any T / H / W, batch independence, the published layout and golden outputs."""
import json
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from basicsr.archs import build_network
from basicsr_blurfield.archs.checkpoints import load_published_weights
from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet, remap_official_keys
from basicsr_blurfield.fields import OffsetField
from tests.conftest import FIXTURES
from tests.golden import fan_in_scaled, load_golden, recipe_weights

CONSTRAINED = ('linear', 'bilinear', 'quadratic')


def _net(constraint: str = 'quadratic', num_steps: int = 15, seed: int = 0, num_feat: int = 4) -> MotionOffsetNet:
    torch.manual_seed(seed)
    net = MotionOffsetNet(num_feat=num_feat, constraint=constraint, num_steps=num_steps).eval()
    with torch.no_grad():  # offsets of a few pixels so that the curves are not trivial
        net.head.weight.mul_(20)
        net.head.bias.normal_(0, 1)
    return net


def _layout() -> dict:
    with open(os.path.join(FIXTURES, 'motion_etr_offsetnet_state_dict.json')) as handle:
        return json.load(handle)


def _official_state(layout: dict, rule) -> dict:
    """A state dict in the published layout (both alias spellings holding the same tensor)."""
    state = recipe_weights(layout['state_dict'], rule)
    for first, alias in layout['aliased_keys']:
        state[alias] = state[first]
    return state


def _golden_rule(key, shape, n):
    if len(shape) >= 2:
        return fan_in_scaled(n, 3.0 if key == 'conv_out_0.weight' else 1.2)
    return 0.02 * n


def _official_space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """The authors' SpaceToDepth(2) channel order ``(dy * 2 + dx) * C + c`` (golden JSON notes)."""
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


@pytest.mark.parametrize('constraint', CONSTRAINED)
@pytest.mark.parametrize('num_steps', [3, 5, 9, 15])
def test_constrained_trajectories_pass_through_zero_at_the_middle_instant(constraint, num_steps):
    net = _net(constraint)
    field = net(torch.rand(2, 3, 16, 24), num_steps=num_steps)
    assert field.offsets.shape == (2, num_steps, 2, 16, 24)
    assert field.offsets[:, num_steps // 2].abs().max() == 0
    assert field.offsets.abs().max() > 0.5


def test_trajectory_endpoints_are_the_network_start_and_end():
    x = torch.rand(1, 3, 16, 16)
    for constraint in CONSTRAINED:
        net = _net(constraint)
        start, end = net.endpoints(x)
        offsets = net(x, num_steps=7).offsets
        torch.testing.assert_close(offsets[:, 0], start)
        torch.testing.assert_close(offsets[:, -1], end)
        if constraint == 'linear':
            torch.testing.assert_close(end, -start)


def test_quadratic_reduces_to_linear_when_the_end_is_minus_the_start():
    quadratic, linear = _net('quadratic'), _net('linear')
    with torch.no_grad():
        quadratic.head.weight[2:] = -quadratic.head.weight[:2]
        quadratic.head.bias[2:] = -quadratic.head.bias[:2]
    state = quadratic.state_dict()
    state['head.weight'], state['head.bias'] = state['head.weight'][:2], state['head.bias'][:2]
    linear.load_state_dict(state)
    x = torch.rand(1, 3, 24, 16)
    for steps in (5, 15):
        torch.testing.assert_close(quadratic(x, num_steps=steps).offsets, linear(x, num_steps=steps).offsets)


def test_bilinear_is_piecewise_linear_and_quadratic_follows_eq_14():
    x = torch.rand(1, 3, 16, 16)
    for constraint in ('bilinear', 'quadratic'):
        net = _net(constraint)
        start, end = net.endpoints(x)
        offsets = net(x, num_steps=9).offsets
        for step in range(9):
            u = 2 * step / 8 - 1  # eq. (12)-(14): (2n / (N - 1) - 1)
            if constraint == 'bilinear':
                expected = -u * start if u <= 0 else u * end
            else:
                expected = (start + end) / 2 * u * u + (end - start) / 2 * u
            torch.testing.assert_close(offsets[:, step], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('constraint', CONSTRAINED)
def test_different_numbers_of_steps_from_the_same_weights_lie_on_one_curve(constraint):
    net = _net(constraint)
    x = torch.rand(1, 3, 16, 16)
    fields = {steps: net(x, num_steps=steps).offsets for steps in (5, 9, 15, 29)}
    torch.testing.assert_close(fields[5], fields[9][:, ::2])  # u = k / 2 is u = 2k / 4
    torch.testing.assert_close(fields[15], fields[29][:, ::2])  # u = k / 7 is u = 2k / 14
    for steps in (5, 9, 15):
        torch.testing.assert_close(fields[steps][:, [0, -1]], fields[29][:, [0, -1]])


def test_batch_samples_never_mix():
    net = _net('quadratic')
    x = torch.rand(3, 3, 16, 24)
    together = net(x).offsets
    for index in range(3):
        torch.testing.assert_close(together[index:index + 1], net(x[index:index + 1]).offsets, atol=1e-5, rtol=1e-5)
    changed = x.clone()
    changed[0] = torch.rand(3, 16, 24)
    torch.testing.assert_close(net(changed).offsets[1:], together[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('size', [(2, 2), (7, 5), (13, 21), (17, 16), (31, 9), (40, 56)])
def test_any_input_size_gives_a_field_of_that_size(size):
    net = _net('quadratic')
    x = torch.rand(1, 3, *size)
    field = net(x)
    assert field.offsets.shape == (1, 15, 2, *size)
    assert torch.isfinite(field.offsets).all()
    assert field.blur(x).shape == x.shape


def test_other_sizes_are_reflect_padded_to_a_multiple_of_eight_and_cropped_back():
    net = _net('quadratic')
    x = torch.rand(1, 3, 13, 21)
    padded = F.pad(x, (0, 3, 0, 3), mode='reflect')
    torch.testing.assert_close(net.raw(x), net.raw(padded)[..., :13, :21])
    assert net.raw(padded).shape == (1, 4, 16, 24)


def test_zero_constraint_predicts_two_channels_per_step_and_fixes_t():
    net = _net('zero', num_steps=9)
    assert net.head.out_channels == 18
    x = torch.rand(1, 3, 16, 16)
    field = net(x)
    raw = net.raw(x)
    assert field.offsets.shape == (1, 9, 2, 16, 16)
    torch.testing.assert_close(field.offsets[:, 4, 0], raw[:, 8])  # step 4: dx channel 8, dy channel 9
    torch.testing.assert_close(field.offsets[:, 4, 1], raw[:, 9])
    assert field.offsets[:, 4].abs().max() > 0  # free offsets: the middle instant is not pinned
    with pytest.raises(ValueError, match='built with'):
        net(x, num_steps=15)
    assert net(torch.rand(2, 3, 13, 19)).offsets.shape == (2, 9, 2, 13, 19)  # cropped back from 16 x 24
    with pytest.raises(ValueError, match="constraint='zero'"):
        net.endpoints(x)


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match=r"expected one of \('zero', 'linear', 'bilinear', 'quadratic'\)"):
        MotionOffsetNet(constraint='cubic')
    with pytest.raises(ValueError, match='odd int >= 3'):
        MotionOffsetNet(num_steps=14)
    with pytest.raises(ValueError, match=r"padding: expected one of \('replicate', 'reflect', 'zeros'\)"):
        MotionOffsetNet(padding='border')
    net = _net('quadratic')
    with pytest.raises(ValueError, match='odd int >= 3'):
        net(torch.rand(1, 3, 16, 16), num_steps=8)
    with pytest.raises(ValueError, match=r'expected lq \(N, 3, H, W\)'):
        net(torch.rand(1, 1, 16, 16))


def test_builds_from_yaml_and_trains_through_the_blur():
    opt = yaml.safe_load('{type: MotionOffsetNet, num_feat: 4, constraint: bilinear, num_steps: 5, padding: zeros}')
    net = build_network(opt)
    sharp, blurry = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    field = net(blurry)
    assert isinstance(field, OffsetField) and field.padding == 'zeros'
    ((field.blur(sharp) - blurry)**2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_published_layout_loads_strictly_with_the_published_parameter_count():
    layout = _layout()
    net = MotionOffsetNet()
    assert sum(p.numel() for p in net.parameters()) == layout['num_params'] == 1129604
    state = _official_state(layout, lambda key, shape, n: n)
    assert len(state) == layout['num_state_dict_keys'] == 74
    mapped = remap_official_keys(state)
    assert len(mapped) == 62 and set(mapped) == set(net.state_dict())
    net.load_state_dict(mapped, strict=True)
    torch.testing.assert_close(net.dec2.conv1.weight, state['bottleneck_2.model.0.weight'])
    torch.testing.assert_close(net.up3.bias, state['uconv_3.bias'])
    other = load_published_weights(MotionOffsetNet(), {k: v.clone() for k, v in state.items()})  # via the registry
    torch.testing.assert_close(other.head.weight, net.head.weight)


def test_loader_converts_space_to_depth_order_axis_order_and_time_order():
    layout = _layout()
    state = _official_state(layout, lambda key, shape, n: 0.1 * n)
    state['conv_out_0.weight'] = torch.zeros(4, 32, 5, 5)
    state['conv_out_0.bias'] = torch.tensor([1.0, 2.0, -3.0, 0.5])  # S = (dy 1, dx 2), E = (dy -3, dx 0.5)
    net = MotionOffsetNet().eval()
    net.load_state_dict(remap_official_keys({'params': {'module.' + k: v for k, v in state.items()}}))
    x = torch.rand(1, 3, 16, 24)
    offsets = net(x).offsets
    assert offsets[0, 0, :, 5, 7].tolist() == [2.0, 1.0]  # first instant (tau = -1) is S, as (dx, dy)
    assert offsets[0, -1, :, 5, 7].tolist() == [0.5, -3.0]  # last instant (tau = +1) is E
    tau = 3 / 7  # their E-side chunk 10 = p(+3/7) = 0.5 ((tau + tau^2) E - (tau - tau^2) S) is our step 10
    expected = 0.5 * ((tau + tau**2) * torch.tensor([0.5, -3.0]) - (tau - tau**2) * torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(offsets[0, 10, :, 5, 7], expected)
    ours = net.enc1.conv(F.pixel_unshuffle(x, 2))
    theirs = F.conv2d(_official_space_to_depth(x), state['conv_1.1.weight'], state['conv_1.1.bias'])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_loader_rejects_another_networks_checkpoint_and_unequal_aliases():
    with pytest.raises(ValueError, match="not a key of the authors' OffsetNet_quad"):
        remap_official_keys({'intro.weight': torch.zeros(1), 'encoders.0.0.conv1.weight': torch.zeros(1)})
    state = _official_state(_layout(), lambda key, shape, n: n)
    state['bottleneck_1.model.0.weight'] = state['bottleneck_1.model.0.weight'] + 1
    with pytest.raises(ValueError, match='same tensor as its alias'):
        remap_official_keys(state)
    wrong_width = _official_state(_layout(), lambda key, shape, n: n)
    with pytest.raises(RuntimeError, match='size mismatch'):
        MotionOffsetNet(num_feat=8).load_state_dict(remap_official_keys(wrong_width))


def test_our_own_checkpoint_loads_through_the_published_weight_loader(tmp_path):
    torch.manual_seed(0)
    ours = MotionOffsetNet(num_feat=4).eval()
    assert remap_official_keys({'params': ours.state_dict()}).keys() == ours.state_dict().keys()
    torch.save({'params': {'module.' + k: v for k, v in ours.state_dict().items()}}, tmp_path / 'net_g.pth')
    loaded = load_published_weights(MotionOffsetNet(num_feat=4), str(tmp_path / 'net_g.pth')).eval()
    image = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(loaded(image).offsets, ours(image).offsets)
    with pytest.raises(ValueError, match="not a key of the authors' OffsetNet_quad"):
        remap_official_keys({'head.weight': torch.zeros(1), 'intro.weight': torch.zeros(1)})


def test_converted_network_reproduces_the_authors_outputs():
    meta, arrays = load_golden('motion_etr')
    net = MotionOffsetNet().eval()
    net.load_state_dict(remap_official_keys(_official_state(_layout(), _golden_rule)))
    image = torch.from_numpy(arrays['image'])
    with torch.no_grad():
        start, end = net.endpoints(image)
        offsets = net(image).offsets
    raw = torch.cat((start.flip(1), end.flip(1)), 1)  # theirs: [S_dy, S_dx, E_dy, E_dx]
    assert (raw - torch.from_numpy(arrays['raw_out'])).abs().max() < 1e-4
    assert (offsets.flip(2) - torch.from_numpy(arrays['offsets_time_ordered'])).abs().max() < 1e-4
    assert meta['outputs']['offsets_time_ordered'].startswith('(1, 15, 2, 64, 96)')


def test_weights_start_xavier_uniform_with_zero_biases():
    net = MotionOffsetNet()
    for module in (net.enc1.conv, net.dec2.conv2, net.up1, net.head):
        fan_in = module.weight.shape[1] * module.weight[0, 0].numel()
        fan_out = module.weight.shape[0] * module.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out))**0.5
        assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.9 * bound
        assert module.bias.abs().max() == 0
