"""Params/MACs via mmengine against counts made here with forward hooks, and custom ops counted or reported."""
import math

import pytest
import torch
import yaml
from torch import nn

from basicsr.archs import build_network
from basicsr_blurfield.metrics.complexity import complexity_from_options, model_complexity

TINY_NAFNET = {'type': 'NAFNet', 'img_channel': 3, 'width': 4, 'middle_blk_num': 1, 'enc_blk_nums': (1, 1),
               'dec_blk_nums': (1, 1)}


def hooked_conv_macs(net: nn.Module, x: torch.Tensor) -> int:
    """Convolution MACs from forward hooks: output elements * (C_in / groups) * kernel area, for every Conv2d call."""
    total = []

    def hook(module, inputs, output):
        total.append(output.numel() * module.in_channels // module.groups * module.kernel_size[0] *
                     module.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net.eval()(x)
    for handle in handles:
        handle.remove()
    return sum(total)


def test_nafnet_from_yaml_option_params_and_conv_macs_match_direct_counts(tmp_path):
    option = tmp_path / 'tiny.yml'
    option.write_text(yaml.safe_dump({'name': 'tiny_nafnet', 'network_g': dict(TINY_NAFNET, enc_blk_nums=[1, 1],
                                                                                dec_blk_nums=[1, 1])}))
    result = complexity_from_options(str(option), input_size=32)
    net = build_network(dict(TINY_NAFNET))
    assert result['name'] == 'tiny_nafnet' and result['arch'] == 'NAFNet'
    assert result['params'] == sum(p.numel() for p in net.parameters())
    assert result['macs_by_operator']['conv'] == hooked_conv_macs(net, torch.rand(1, 3, 32, 32))
    assert result['macs'] >= result['macs_by_operator']['conv']
    assert result['input_shape'] == [1, 3, 32, 32]
    assert 'aten::mul' in result['not_counted']  # SimpleGate and the attention products are element-wise


def test_plain_convolution_macs_by_formula():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Conv2d(8, 3, 1))
    result = model_complexity(net, input_size=(16, 24))
    expected = 16 * 24 * (3 * 8 * 9 + 8 * 4 * 9 + 8 * 3)
    assert result['macs'] == expected
    assert result['params'] == (3 * 8 * 9 + 8) + (8 * 4 * 9 + 8) + (8 * 3 + 3)


class _Opaque(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class _OpaqueNet(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)

    def forward(self, x):
        return _Opaque.apply(self.conv(x))


def test_unknown_custom_autograd_op_is_reported_as_not_counted():
    result = model_complexity(_OpaqueNet(), input_size=8)
    assert result['not_counted'] == {'prim::PythonOp._Opaque': 1}
    assert result['macs'] == 8 * 8 * 3 * 3


class TapGather(torch.autograd.Function):
    """Same name and signature as ``fields._taps.TapGather``: (N, C, H+2r, W+2r), (N, K*K, H, W) -> (N, C, H, W)."""

    @staticmethod
    def forward(ctx, padded, kernels):
        size = math.isqrt(int(kernels.shape[1]))  # sizes are tensors while tracing
        height, width = int(kernels.shape[2]), int(kernels.shape[3])
        out = padded.new_zeros(padded.shape[:2] + (height, width))
        for tap in range(size * size):
            i, j = divmod(tap, size)
            out = out + kernels[:, tap:tap + 1] * padded[:, :, i:i + height, j:j + width]
        return out


class _PerPixelBlur(nn.Module):

    def forward(self, x):
        kernels = torch.full((x.shape[0], 25, x.shape[2], x.shape[3]), 1 / 25)
        return TapGather.apply(nn.functional.pad(x, (2, 2, 2, 2), mode='replicate'), kernels)


def test_per_pixel_blur_op_is_counted_as_one_mac_per_tap_and_output():
    result = model_complexity(_PerPixelBlur(), input_size=(12, 10))
    assert result['macs_by_operator'] == {'PythonOp.TapGather': 3 * 12 * 10 * 25}
    assert 'prim::PythonOp.TapGather' not in result['not_counted']


def test_kernel_field_blur_is_counted_exactly():
    from basicsr_blurfield.fields import KernelField

    class _FieldNet(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 9, 3, padding=1)

        def forward(self, x):
            return KernelField(torch.softmax(self.conv(x), 1)).blur(x)

    result = model_complexity(_FieldNet(), input_size=16)
    assert result['macs_by_operator']['PythonOp.TapGather'] == 3 * 16 * 16 * 9


def test_option_without_network_is_refused():
    with pytest.raises(ValueError, match="expected a 'network_g' section"):
        complexity_from_options({'name': 'x', 'network_k': {'type': 'NAFNet'}})
