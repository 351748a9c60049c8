"""Model complexity for the leaderboard's Params and MACs columns (UFPNet, Fang et al. CVPR 2023, Tables 1-2).

Parameters are counted once each (shared tensors once). MACs are counted by tracing one forward pass at 1 x C x 256 x
256 with mmengine's ``FlopAnalyzer`` (the fvcore rules): one multiply-accumulate of a convolution, linear layer or
matrix product counts 1; normalisation layers and upsampling count per output element; element-wise arithmetic,
activations and pooling other than adaptive average pooling are not counted. Everything the analyzer saw but did not
count is listed by operator name under ``not_counted`` -- in particular user-written ``torch.autograd.Function``
ops (``prim::PythonOp.<name>``) unless a handle for them is registered in :data:`CUSTOM_OP_HANDLES`.

Our per-pixel blur (``fields/_taps.py``) is counted exactly: ``TapGather`` and ``TapScatter`` cost
``N * C * H * W * K * K`` MACs and ``TapCorrelate`` ``N * K * K * H * W * C``.

mmengine is imported inside the functions, so importing this module (which the package does at start-up) is cheap.
"""
import copy
from collections import Counter
from typing import Any, Union

import torch
from torch import Tensor, nn

INPUT_SIZE = 256


def _shape(value) -> list:
    return list(value.type().sizes())


def _numel(shape: list) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total


def _tap_gather_macs(inputs: list, outputs: list) -> int:
    """TapGather(xp (N, C, H+2r, W+2r), k (N, K*K, H, W)) -> (N, C, H, W): one MAC per output and tap."""
    return _numel(_shape(outputs[0])) * int(_shape(inputs[1])[1])


def _tap_scatter_macs(inputs: list, outputs: list) -> int:
    """TapScatter(v (N, C, H, W), k (N, K*K, H, W)): one MAC per input value and tap."""
    return _numel(_shape(inputs[0])) * int(_shape(inputs[1])[1])


def _tap_correlate_macs(inputs: list, outputs: list) -> int:
    """TapCorrelate(v (N, C, H, W), xp) -> (N, K*K, H, W): one MAC per output and channel."""
    return _numel(_shape(outputs[0])) * int(_shape(inputs[0])[1])


def _mkldnn_conv_macs(inputs: list, outputs: list) -> Counter:
    """mkldnn_convolution(x, w (C_out, C_in / groups, kh, kw), ...): one MAC per output and weight of its filter
    (the oneDNN 1x1 path of NAFNet's pointwise convs, counted as the ``nn.Conv2d`` it replaces)."""
    return Counter({'conv': _numel(_shape(outputs[0])) * _numel(_shape(inputs[1])[1:])})


CUSTOM_OP_HANDLES = {
    'aten::mkldnn_convolution': _mkldnn_conv_macs,
    'prim::PythonOp.TapGather': _tap_gather_macs,
    'prim::PythonOp.TapScatter': _tap_scatter_macs,
    'prim::PythonOp.TapCorrelate': _tap_correlate_macs,
}
"""Operator name -> ``handle(inputs, outputs) -> MACs`` added to mmengine's defaults (jit ``Value`` lists)."""


def _tensors(output: Any) -> tuple:
    """Every tensor inside a forward output (tensor, list/tuple, dict, or an object such as a blur field)."""
    if isinstance(output, Tensor):
        return (output, )
    if isinstance(output, (list, tuple)):
        return tuple(t for item in output for t in _tensors(item))
    if isinstance(output, dict):
        return tuple(t for item in output.values() for t in _tensors(item))
    if hasattr(output, '__dict__'):
        return tuple(t for item in vars(output).values() for t in _tensors(item))
    return ()


class _TensorOutputs(nn.Module):
    """Wraps a network so that tracing sees a flat tuple of tensors (estimators return field objects)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple:
        return _tensors(self.net(x))


def model_complexity(net: nn.Module,
                     input_size: Union[int, tuple] = INPUT_SIZE,
                     num_in_ch: int = 3,
                     seed: int = 0) -> dict:
    """Parameters and MACs of one forward pass of ``net`` on a 1 x C x H x W input, with what was not counted.

    Args:
        net (nn.Module): the network; evaluated in eval mode under ``torch.no_grad`` (its mode is restored).
        input_size (int | tuple): H = W, or (H, W). Default: 256.
        num_in_ch (int): C of the input. Default: 3.
        seed (int): seed of the uniform [0, 1) input (MACs of a static network do not depend on it). Default: 0.

    Returns:
        dict: ``params`` (int), ``macs`` (int), ``params_m`` (millions), ``macs_g`` (billions), ``input_shape``,
        ``macs_by_operator`` ({op: MACs}), ``not_counted`` ({op: occurrences}) and ``counter`` (tool and version).
    """
    import mmengine
    from mmengine.analysis import FlopAnalyzer, parameter_count

    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    inputs = torch.rand(1, num_in_ch, height, width, generator=torch.Generator().manual_seed(seed))
    params = int(parameter_count(net)[''])
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(_TensorOutputs(net), (inputs, ))
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
            analyzer.set_op_handle(**CUSTOM_OP_HANDLES)
            try:
                macs = int(analyzer.total())
            except Exception as error:
                raise RuntimeError(f'complexity: tracing {type(net).__name__} on a {tuple(inputs.shape)} input failed '
                                   f'({type(error).__name__}: {error}); MACs need a jit-traceable forward') from error
            by_operator = {op: int(count) for op, count in sorted(analyzer.by_operator().items())}
            not_counted = {op: int(count) for op, count in sorted(analyzer.unsupported_ops().items())}
    finally:
        net.train(was_training)
    return {
        'params': params,
        'macs': macs,
        'params_m': params / 1e6,
        'macs_g': macs / 1e9,
        'input_shape': [1, num_in_ch, height, width],
        'macs_by_operator': by_operator,
        'not_counted': not_counted,
        'counter': f'mmengine {mmengine.__version__} FlopAnalyzer (1 multiply-accumulate = 1)',
    }


def _input_channels(network_opt: dict) -> int:
    for key in ('img_channel', 'num_in_ch', 'in_nc', 'in_channels', 'in_chans'):
        if key in network_opt:
            return int(network_opt[key])
    return 3


def complexity_from_options(opt: Union[str, dict],
                            network_key: str = 'network_g',
                            input_size: Union[int, tuple] = INPUT_SIZE) -> dict:
    """:func:`model_complexity` of a registered arch built from a BasicSR option (a YAML file or its dict).

    Args:
        opt (str | dict): path to a BasicSR option YAML, or the parsed option dict (with ``network_key``), or a
            network option dict itself (with ``type``).
        network_key (str): which network of the option file. Default: 'network_g'.
        input_size (int | tuple): H = W, or (H, W). Default: 256.

    Returns:
        dict: :func:`model_complexity`'s dict plus ``arch`` (the YAML ``type``), ``network_opt`` and ``name`` (the
        option's ``name``, else the arch type).

    Raises:
        ValueError: when the option has neither ``network_key`` nor ``type``.
    """
    import yaml

    import basicsr_blurfield  # noqa: F401 (registers our archs)
    from basicsr.archs import build_network

    if isinstance(opt, str):
        with open(opt, encoding='utf-8') as f:
            opt = yaml.safe_load(f)
    if 'type' in opt:
        network_opt, name = opt, opt['type']
    elif network_key in opt:
        network_opt, name = opt[network_key], opt.get('name', opt[network_key].get('type'))
    else:
        raise ValueError(f'option: expected a {network_key!r} section or a network option with "type", got keys '
                         f'{sorted(opt)}')
    network_opt = copy.deepcopy(dict(network_opt))
    net = build_network(copy.deepcopy(network_opt))
    result = model_complexity(net, input_size, num_in_ch=_input_channels(network_opt))
    result.update(arch=network_opt['type'], network_opt=network_opt, name=name)
    return result
