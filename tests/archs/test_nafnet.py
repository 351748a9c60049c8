"""NAFNet / NAFBlock: published layout and parameter count, block maths, padding, YAML build at odd sizes."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from basicsr.archs import build_network
from basicsr_blurfield.archs.nafnet_arch import NAFBlock, NAFNet, NAFNetLocal, _LayerNorm2d, _PointwiseConv
from tests.conftest import FIXTURES

FIXTURE = os.path.join(FIXTURES, 'nafnet_width64_state_dict.json')
PUBLISHED = dict(img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=(1, 1, 1, 28), dec_blk_nums=(1, 1, 1, 1))


def load_fixture() -> dict:
    with open(FIXTURE) as handle:
        return json.load(handle)


def randomise(net: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return net


@pytest.mark.parametrize('cls', [NAFNet, NAFNetLocal])
def test_published_width64_has_the_published_parameter_count_and_state_dict_layout(cls):
    fixture = load_fixture()
    with torch.device('meta'):  # shapes only: no memory, no initialisation time
        net = cls(**PUBLISHED)
    assert sum(p.numel() for p in net.parameters()) == fixture['num_params'] == 67888835
    state = net.state_dict()
    assert list(state) == list(fixture['state_dict'])
    for key, shape in fixture['state_dict'].items():
        assert list(state[key].shape) == shape, key
    for name, count in fixture['params_by_top_module'].items():
        assert sum(p.numel() for p in getattr(net, name).parameters()) == count, name


def test_published_attribute_names_and_size_multiple():
    net = NAFNet(width=8, enc_blk_nums=(1, 2, 1), dec_blk_nums=(1, 1, 1))
    for name in ('intro', 'encoders', 'middle_blks', 'decoders', 'ups', 'downs', 'ending'):
        assert hasattr(net, name)
    assert isinstance(net.encoders[1], torch.nn.Sequential) and isinstance(net.encoders[1][1], NAFBlock)
    assert net.padder_size == net.size_multiple == 8


def test_layer_norm_2d_is_layer_norm_over_channels():
    norm = randomise(_LayerNorm2d(5))
    x = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(1))
    var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.allclose(norm(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)


def test_pointwise_conv_equals_conv2d_with_gradients_in_both_memory_formats():
    conv = _PointwiseConv(6, 4)
    for x in (torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last)):
        x.requires_grad_(True)
        ours = conv(x)
        expected = F.conv2d(x, conv.weight, conv.bias)
        assert torch.allclose(ours, expected, atol=1e-5)
        grads = torch.autograd.grad((ours * expected.detach()).sum(), (x, conv.weight, conv.bias))
        reference = torch.autograd.grad((expected * expected.detach()).sum(), (x, conv.weight, conv.bias))
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads, reference))


def reference_nafblock(block: NAFBlock, x: torch.Tensor) -> torch.Tensor:
    """NAFBlock written out from §3.4 of the paper with functional ops."""

    def layer_norm(t, norm):
        return F.layer_norm(t.permute(0, 2, 3, 1), (t.shape[1], ), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)

    def gate(t):
        half = t.shape[1] // 2
        return t[:, :half] * t[:, half:]

    t = F.conv2d(layer_norm(x, block.norm1), block.conv1.weight, block.conv1.bias)
    t = gate(F.conv2d(t, block.conv2.weight, block.conv2.bias, padding=1, groups=t.shape[1]))
    attention = F.conv2d(t.mean(dim=(2, 3), keepdim=True), block.sca[1].weight, block.sca[1].bias)
    y = x + block.beta * F.conv2d(t * attention, block.conv3.weight, block.conv3.bias)
    t = gate(F.conv2d(layer_norm(y, block.norm2), block.conv4.weight, block.conv4.bias))
    return y + block.gamma * F.conv2d(t, block.conv5.weight, block.conv5.bias)


@pytest.mark.parametrize('expand', [(2, 2), (4, 2)])
def test_nafblock_matches_the_written_out_equations(expand):
    block = randomise(NAFBlock(6, DW_Expand=expand[0], FFN_Expand=expand[1]), seed=2)
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    block = block.double()
    assert torch.allclose(block(x), reference_nafblock(block, x), atol=1e-10)


def test_fresh_nafblock_is_the_identity():
    x = torch.randn(1, 8, 5, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(NAFBlock(8)(x), x)


def test_zero_weights_return_the_input_through_the_global_residual():
    net = NAFNet(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1))
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
    x = torch.rand(1, 3, 13, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(net(x), x)


def test_odd_size_output_is_the_crop_of_the_zero_padded_forward():
    net = randomise(NAFNet(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1)), seed=6).eval()
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        padded = net(F.pad(x, (0, 3, 0, 3)))
        assert torch.allclose(net(x), padded[..., :37, :45], atol=1e-6)


@pytest.mark.parametrize('arch_type', ['NAFNet', 'NAFNetLocal'])
def test_yaml_built_network_runs_forward_and_backward_at_odd_size(arch_type):
    opt = {
        'type': arch_type,
        'img_channel': 3,
        'width': 8,
        'middle_blk_num': 1,
        'enc_blk_nums': [1, 1],
        'dec_blk_nums': [1, 1]
    }
    if arch_type == 'NAFNetLocal':
        opt['train_size'] = [1, 3, 16, 16]
    net = build_network(opt)
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(8))
    out = net(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_mismatched_encoder_and_decoder_levels_are_rejected():
    with pytest.raises(ValueError, match='same length'):
        NAFNet(enc_blk_nums=(1, 1), dec_blk_nums=(1, ))


def test_non_image_input_is_rejected():
    with pytest.raises(ValueError, match=r'expected \(N, C, H, W\)'):
        NAFNet(width=8, enc_blk_nums=(1, ), dec_blk_nums=(1, ))(torch.rand(3, 8, 8))
