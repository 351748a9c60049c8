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
:func:`load_network` is the one checkpoint loader of the package: ``reference_models.load_estimator``, the scripts'
``cli.load_estimator_checked``, ``restore.py`` and the benchmarks all go through it.
"""
import os
import re
from typing import Optional, Tuple

import torch
import yaml
from torch import nn

__all__ = ['ESTIMATOR_KINDS', 'OPERATOR_KIND', 'NotAnEstimatorError', 'identify_checkpoint', 'load_network',
           'network_from_checkpoint', 'read_checkpoint']

ESTIMATOR_KINDS = ('FlowKernelEstimator', 'BasisKernelNet', 'MotionOffsetNet')
OPERATOR_KIND = 'BlurOperatorFamily'
_SIGNATURES = (
    ('FlowKernelEstimator', (('kernel_extra.', 'flow.'), )),
    ('BasisKernelNet', (('kernel_decoder.', 'mixing_decoder.'), ('kernels_end.', 'masks_end.'))),
    ('MotionOffsetNet', (('enc1.', 'head.'), ('conv_1.', 'conv_out_0.'))),
    ('BlurOperatorFamily', (('unet.', 'recon.'), ('adapter.model.', 'recon_trunk.'))),
)


class NotAnEstimatorError(ValueError):
    """A checkpoint whose keys are those of none of the networks in the module docstring."""


def identify_checkpoint(state: dict) -> str:
    """The kind of network a state dict belongs to (see the module docstring).

    Args:
        state (dict): unwrapped state dict (name -> tensor).

    Returns:
        str: one of :data:`ESTIMATOR_KINDS` or :data:`OPERATOR_KIND`.

    Raises:
        NotAnEstimatorError: for any other network, naming what was expected and a few of the keys found.
    """
    prefixes = {key.split('.', 1)[0] + '.' for key in state}
    for kind, alternatives in _SIGNATURES:
        for needed in alternatives:
            if all(any(key.startswith(prefix) for key in state) for prefix in needed):
                return kind
    expected = '; '.join(f'{kind} ({" + ".join(alts[0])})' for kind, alts in _SIGNATURES)
    raise NotAnEstimatorError(f'not a checkpoint of a blur-field estimator or a blur operator family: expected the '
                              f'weights of '
                              f'{expected}; found top-level names {sorted(prefixes)[:8]}')


def _count(state: dict, pattern: str) -> int:
    return sum(1 for key in state if re.fullmatch(pattern, key))


def _flow_estimator(state: dict) -> Tuple[dict, dict]:
    from basicsr_blurfield.archs.ufpnet_arch import remap_official_keys

    state = {
        key: value
        for key, value in remap_official_keys(state).items() if key.startswith(('kernel_extra.', 'flow.', 'cues.'))
    }
    head = state['kernel_extra.Encoding_Block1.Conv_head.weight']
    cue_channels = state['cues.lag_table'].shape[0] + 1 if 'cues.lag_table' in state else 0
    options = dict(
        type='FlowKernelEstimator',
        img_channel=head.shape[1] - cue_channels,
        kernel_size=int(state['flow.kernel_size']),
        num_feat=head.shape[0],
        flow_num_block=_count(state, r'flow\.net\.\d+\.mask'),
        flow_hidden_size=state['flow.net.0.s_net.0.weight'].shape[0])
    if cue_channels:
        options['input_cues'] = 'autocorrelation'
    return options, state


def _basis_estimator(state: dict) -> Tuple[dict, dict]:
    from basicsr_blurfield.archs.basis_kernel_arch import remap_official_keys

    if any(key.startswith('kernels_end.') for key in state):
        state = remap_official_keys(state)
    levels = _count(state, r'encoder\.\d+\.body\.0\.weight')
    inputs = _count(state, r'conv_in\.\d+\.0\.weight')
    cue_channels = state['cues.lag_table'].shape[0] + 1 if 'cues.lag_table' in state else 0
    options = dict(
        type='BasisKernelNet',
        num_basis=state['mixing_out.4.weight'].shape[0],
        kernel_size=2**_count(state, r'kernel_decoder\.\d+\.up\.weight') + 1,
        num_feat=state['conv_in.0.0.weight'].shape[0],
        enc_channels=tuple(state[f'encoder.{i}.body.0.weight'].shape[0] for i in range(levels)),
        kernel_channels=tuple(state[f'kernel_decoder.{i}.fuse.0.weight'].shape[0] for i in range(levels)),
        in_channels=tuple(state[f'conv_in.{j}.0.weight'].shape[1] - cue_channels for j in range(inputs)))
    if cue_channels:
        options['input_cues'] = 'autocorrelation'
    return options, state


def _offset_estimator(state: dict, constraint: Optional[str]) -> Tuple[dict, dict]:
    from basicsr_blurfield.archs.motion_offset_arch import remap_official_keys

    if any(key.startswith('conv_out_0.') for key in state):
        state = remap_official_keys(state)
    first, outputs = state['enc1.conv.weight'], state['head.weight'].shape[0]
    fitting = {2: ('linear', ), 4: ('quadratic', 'bilinear')}.get(outputs, ('zero', ))
    if outputs == 4 and constraint not in (None, ) + fitting:
        raise ValueError(f'constraint {constraint}: the checkpoint predicts {outputs} channels, which fits '
                         f'{" or ".join(fitting)} (linear: 2, bilinear / quadratic: 4, zero: 2 T)')
    constraint = constraint if outputs == 4 and constraint is not None else fitting[0]
    options = dict(
        type='MotionOffsetNet',
        in_channels=first.shape[1] // 4,
        num_feat=first.shape[0],
        constraint=constraint,
        num_steps=outputs // 2 if constraint == 'zero' else 15)
    return options, state


def _operator(state: dict) -> Tuple[dict, dict]:
    from basicsr_blurfield.archs.blur_kernel_space_arch import remap_operator_keys

    state = remap_operator_keys(state)
    levels = _count(state, r'unet\.(inner\.)*down\.weight')
    innermost = 'unet.' + 'inner.' * (levels - 1)
    first = state['features.conv_first.weight']
    options = dict(
        type='BlurOperatorFamily',
        num_in_ch=first.shape[1],
        num_feat=first.shape[0],
        num_front_block=_count(state, r'features\.body\.\d+\.conv1\.weight'),
        num_back_block=_count(state, r'recon\.body\.\d+\.conv1\.weight'),
        unet_feat=state['unet.down.weight'].shape[0],
        num_levels=levels,
        code_channels=state[innermost + 'up.weight'].shape[0] - state[innermost + 'down.weight'].shape[0])
    return options, state


def read_checkpoint(path: str) -> dict:
    """Reads a checkpoint file on the CPU (``weights_only``), with a clear error for an empty or broken file.

    Args:
        path (str): ``.pth`` file.

    Returns:
        dict: the checkpoint as stored (a state dict or a dict wrapping one).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty file, a truncated one or no torch checkpoint, or one that holds no dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such checkpoint file')
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f'checkpoint {path!r} is empty (0 bytes)')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for broken files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise ValueError(f'checkpoint {path!r} ({size} bytes) cannot be read: truncated or not a PyTorch checkpoint '
                         f'({type(error).__name__}: {first_line[:200]})') from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f'checkpoint {path!r}: expected a dict of weights, got {type(checkpoint).__name__}')
    return checkpoint


def load_network(path: str,
                 constraint: Optional[str] = None,
                 device='cpu',
                 opt_path: Optional[str] = None) -> Tuple[str, nn.Module]:
    """Builds the network of a checkpoint file with the sizes read off its weights and loads them strictly.

    ``params_ema`` is preferred over ``params``. The network options come from, in order: ``opt_path`` (a training
    YAML's ``network_g``), the checkpoint's own ``network_g`` (the shipped reference models of
    :mod:`basicsr_blurfield.reference_models`), the sizes read off the weights.

    Args:
        path (str): ``.pth`` file (ours or published; wrappers and ``module.`` prefixes are removed) or the name of a
            shipped reference model (e.g. ``'ufpnet-ke-reference'``).
        constraint (str | None): for a two-endpoint :class:`MotionOffsetNet`, ``'quadratic'`` or ``'bilinear'`` (the
            weights cannot tell); None: quadratic. Networks with one fitting constraint (linear: 2 outputs, zero:
            2 T) take theirs. Must be one of ``MOTION_CONSTRAINTS``. Default: None.
        device (str | torch.device): where to put the network. Default: 'cpu'.
        opt_path (str | None): options YAML whose ``network_g`` builds the network. Default: None.

    Returns:
        tuple: (kind, network in eval mode), kind one of :data:`ESTIMATOR_KINDS` or :data:`OPERATOR_KIND`.

    Raises:
        NotAnEstimatorError: the file holds the weights of none of these networks.
        ValueError: an unknown constraint, an unreadable file, or weights that do not fit the network.
        FileNotFoundError: neither a file nor a reference-model name.
    """
    from basicsr_blurfield.archs.motion_offset_arch import MOTION_CONSTRAINTS
    from basicsr_blurfield.reference_models import resolve_checkpoint

    if constraint is not None and constraint not in MOTION_CONSTRAINTS:
        raise ValueError(f'constraint: expected one of {MOTION_CONSTRAINTS}, got {constraint!r}')
    path = resolve_checkpoint(path)
    return network_from_checkpoint(read_checkpoint(path), path, constraint, device, opt_path)


def network_from_checkpoint(checkpoint: dict,
                            path: str,
                            constraint: Optional[str] = None,
                            device='cpu',
                            opt_path: Optional[str] = None) -> Tuple[str, nn.Module]:
    """:func:`load_network` for a checkpoint already read by :func:`read_checkpoint` (``path`` names it in errors).

    Returns:
        tuple: (kind, network in eval mode), as :func:`load_network`.
    """
    from basicsr.archs import build_network

    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict

    state = unwrap_state_dict(checkpoint, 'params_ema' if 'params_ema' in checkpoint else None)
    try:
        kind = identify_checkpoint(state)
    except NotAnEstimatorError as error:
        raise NotAnEstimatorError(f'{path}: {error}') from None
    builders = {
        'FlowKernelEstimator': _flow_estimator,
        'BasisKernelNet': _basis_estimator,
        'MotionOffsetNet': lambda value: _offset_estimator(value, constraint),
        'BlurOperatorFamily': _operator,
    }
    try:
        options, state = builders[kind](state)
        if opt_path is not None:
            with open(opt_path, encoding='utf-8') as handle:
                options = yaml.safe_load(handle)['network_g']
        elif isinstance(checkpoint.get('network_g'), dict):  # reference models carry the options that built them
            options = checkpoint['network_g']
        net = build_network(dict(options))
        net.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise ValueError(f'{path}: looks like a {kind} checkpoint but its weights do not fit one: '
                         f'{str(error)[:300]}') from None
    return kind, net.to(device).eval()
