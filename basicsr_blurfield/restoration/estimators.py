"""Loading any of the project's networks that a restoration needs, from a bare checkpoint file.

A checkpoint (ours: BasicSR ``params`` / ``params_ema``; or a published file) holds weights only, so the network it
belongs to and its sizes are read off its keys and shapes:

- ``FlowKernelEstimator`` (UFPNet KE, Fang et al.): ``kernel_extra.*`` + ``flow.*``, so every UFPNet-family
  checkpoint too (only those weights are used); K, width, flow blocks and width read off; gives a ``KernelField``.
- ``BasisKernelNet`` (Carbajal et al.): ``kernel_decoder.*`` + ``mixing_decoder.*`` (or the published
  ``kernels_end`` / ``masks_end``); B, K, widths and input channels read off; gives a ``BasisField``.
- ``MotionOffsetNet`` (Motion-ETR, Zhang et al.): ``enc1.*`` + ``head.*`` (or the published ``conv_1`` /
  ``conv_out_0``); width and channels read off, the constraint from the head (two endpoints: quadratic or bilinear,
  by argument); gives an ``OffsetField``.
- ``BlurOperatorFamily`` (F of Tran et al.): ``unet.*`` + ``recon.*`` (or the published ``adapter`` /
  ``recon_trunk``); widths, blocks, levels and code channels read off; gives the operator F(x, k).

Every network is returned in eval mode. The first three are *field estimators* (``forward(lq) -> field``).
"""
import os
import re
from typing import Tuple

import torch
from torch import nn

__all__ = ['ESTIMATOR_KINDS', 'OPERATOR_KIND', 'identify_checkpoint', 'load_network']

ESTIMATOR_KINDS = ('FlowKernelEstimator', 'BasisKernelNet', 'MotionOffsetNet')
OPERATOR_KIND = 'BlurOperatorFamily'
_SIGNATURES = (
    ('FlowKernelEstimator', (('kernel_extra.', 'flow.'), )),
    ('BasisKernelNet', (('kernel_decoder.', 'mixing_decoder.'), ('kernels_end.', 'masks_end.'))),
    ('MotionOffsetNet', (('enc1.', 'head.'), ('conv_1.', 'conv_out_0.'))),
    ('BlurOperatorFamily', (('unet.', 'recon.'), ('adapter.model.', 'recon_trunk.'))),
)


def identify_checkpoint(state: dict) -> str:
    """The kind of network a state dict belongs to (see the module docstring).

    Args:
        state (dict): unwrapped state dict (name -> tensor).

    Returns:
        str: one of :data:`ESTIMATOR_KINDS` or :data:`OPERATOR_KIND`.

    Raises:
        ValueError: for any other network, naming what was expected and a few of the keys found.
    """
    prefixes = {key.split('.', 1)[0] + '.' for key in state}
    for kind, alternatives in _SIGNATURES:
        for needed in alternatives:
            if all(any(key.startswith(prefix) for key in state) for prefix in needed):
                return kind
    expected = '; '.join(f'{kind} ({" + ".join(alts[0])})' for kind, alts in _SIGNATURES)
    raise ValueError(f'not a checkpoint of a blur-field estimator or a blur operator family: expected the weights of '
                     f'{expected}; found top-level names {sorted(prefixes)[:8]}')


def _count(state: dict, pattern: str) -> int:
    return sum(1 for key in state if re.fullmatch(pattern, key))


def _flow_estimator(state: dict) -> Tuple[nn.Module, dict]:
    from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
    from basicsr_blurfield.archs.ufpnet_arch import remap_official_keys

    state = {
        key: value
        for key, value in remap_official_keys(state).items() if key.startswith(('kernel_extra.', 'flow.'))
    }
    head = state['kernel_extra.Encoding_Block1.Conv_head.weight']
    net = FlowKernelEstimator(
        img_channel=head.shape[1],
        kernel_size=int(state['flow.kernel_size']),
        num_feat=head.shape[0],
        flow_num_block=_count(state, r'flow\.net\.\d+\.mask'),
        flow_hidden_size=state['flow.net.0.s_net.0.weight'].shape[0])
    return net, state


def _basis_estimator(state: dict) -> Tuple[nn.Module, dict]:
    from basicsr_blurfield.archs.basis_kernel_arch import BasisKernelNet, remap_official_keys

    if any(key.startswith('kernels_end.') for key in state):
        state = remap_official_keys(state)
    levels = _count(state, r'encoder\.\d+\.body\.0\.weight')
    inputs = _count(state, r'conv_in\.\d+\.0\.weight')
    net = BasisKernelNet(
        num_basis=state['mixing_out.4.weight'].shape[0],
        kernel_size=2**_count(state, r'kernel_decoder\.\d+\.up\.weight') + 1,
        num_feat=state['conv_in.0.0.weight'].shape[0],
        enc_channels=tuple(state[f'encoder.{i}.body.0.weight'].shape[0] for i in range(levels)),
        kernel_channels=tuple(state[f'kernel_decoder.{i}.fuse.0.weight'].shape[0] for i in range(levels)),
        in_channels=tuple(state[f'conv_in.{j}.0.weight'].shape[1] for j in range(inputs)))
    return net, state


def _offset_estimator(state: dict, constraint: str) -> Tuple[nn.Module, dict]:
    from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet, remap_official_keys

    if any(key.startswith('conv_out_0.') for key in state):
        state = remap_official_keys(state)
    first, outputs = state['enc1.conv.weight'], state['head.weight'].shape[0]
    if outputs == 2:
        constraint, steps = 'linear', 15
    elif outputs == 4:
        if constraint not in ('quadratic', 'bilinear'):
            raise ValueError(
                f'constraint: this MotionOffsetNet predicts two endpoints, so it is quadratic or bilinear; '
                f'got {constraint!r}')
        steps = 15
    else:
        constraint, steps = 'zero', outputs // 2
    net = MotionOffsetNet(
        in_channels=first.shape[1] // 4, num_feat=first.shape[0], constraint=constraint, num_steps=steps)
    return net, state


def _operator(state: dict) -> Tuple[nn.Module, dict]:
    from basicsr_blurfield.archs.blur_kernel_space_arch import BlurOperatorFamily, remap_operator_keys

    state = remap_operator_keys(state)
    levels = _count(state, r'unet\.(inner\.)*down\.weight')
    innermost = 'unet.' + 'inner.' * (levels - 1)
    first = state['features.conv_first.weight']
    net = BlurOperatorFamily(
        num_in_ch=first.shape[1],
        num_feat=first.shape[0],
        num_front_block=_count(state, r'features\.body\.\d+\.conv1\.weight'),
        num_back_block=_count(state, r'recon\.body\.\d+\.conv1\.weight'),
        unet_feat=state['unet.down.weight'].shape[0],
        num_levels=levels,
        code_channels=state[innermost + 'up.weight'].shape[0] - state[innermost + 'down.weight'].shape[0])
    return net, state


def load_network(path: str, constraint: str = 'quadratic', device='cpu') -> Tuple[str, nn.Module]:
    """Builds the network of a checkpoint file with the sizes read off its weights and loads them strictly.

    ``params_ema`` is preferred over ``params``; a checkpoint that carries its ``network_g`` options (the shipped
    reference models of :mod:`basicsr_blurfield.reference_models`) is built from them.

    Args:
        path (str): ``.pth`` file (ours or published; wrappers and ``module.`` prefixes are removed) or the name of a
            shipped reference model (e.g. ``'ufpnet-ke-reference'``).
        constraint (str): for a two-endpoint :class:`MotionOffsetNet`, ``'quadratic'`` or ``'bilinear'`` (the
            weights cannot tell). Default: 'quadratic'.
        device (str | torch.device): where to put the network. Default: 'cpu'.

    Returns:
        tuple: (kind, network in eval mode), kind one of :data:`ESTIMATOR_KINDS` or :data:`OPERATOR_KIND`.

    Raises:
        ValueError: the file is not a checkpoint of one of these networks, or its weights do not fit the network.
        OSError: the file cannot be read.
    """
    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
    from basicsr_blurfield.reference_models import REFERENCE_MODELS, reference_model_path

    if not os.path.isfile(path) and path in REFERENCE_MODELS:
        path = reference_model_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such checkpoint file, and not a reference-model name (expected one of '
                                f'{sorted(REFERENCE_MODELS)})')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises several types for a file that is no checkpoint
        raise ValueError(f'{path}: not a torch checkpoint ({type(error).__name__}: {str(error)[:200]})') from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path}: expected a state dict or a dict wrapping one, got {type(checkpoint).__name__}')
    state = unwrap_state_dict(checkpoint, 'params_ema' if 'params_ema' in checkpoint else None)
    try:
        kind = identify_checkpoint(state)
    except ValueError as error:
        raise ValueError(f'{path}: {error}') from None
    builders = {
        'FlowKernelEstimator': _flow_estimator,
        'BasisKernelNet': _basis_estimator,
        'MotionOffsetNet': lambda value: _offset_estimator(value, constraint),
        'BlurOperatorFamily': _operator,
    }
    try:
        net, state = builders[kind](state)
        if isinstance(checkpoint.get('network_g'), dict):  # reference models carry the options that built them
            from basicsr.archs import build_network

            net = build_network(dict(checkpoint['network_g']))
        net.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as error:
        raise ValueError(f'{path}: looks like a {kind} checkpoint but its weights do not fit one: '
                         f'{str(error)[:300]}') from None
    return kind, net.to(device).eval()
