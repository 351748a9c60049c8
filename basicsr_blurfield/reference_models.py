"""Reference blur-field estimators shipped with the package, loadable by name (model cards: ``docs/estimation.md``).

A name such as ``ufpnet-ke-reference`` (UFPNet stage-II kernel estimator, Fang et al. eq. (4)-(6), K = 19) or
``basis-kernels-reference`` (basis-kernel network, Carbajal et al. eq. (2)) resolves to a small ``.pth`` under
``basicsr_blurfield/reference_models/``. Each file is a BasicSR-layout checkpoint (weights under ``params``) that
also carries ``kind`` (``ufpnet`` | ``basis`` | ``offsets``), the ``network_g`` options that build it, and ``meta``
(training options file, iterations, time, machine, benchmark figures), so any tool can rebuild the network:

    net, kind = load_estimator('ufpnet-ke-reference')   # or a path to any of our / the published checkpoints
    field = net(blurry)                                 # (N, 3, H, W) -> KernelField / BasisField / OffsetField

:func:`export_reference` writes such a file from a training checkpoint and its options.
"""
import os
from typing import Optional, Tuple

import torch
import yaml
from torch import nn

__all__ = ['KINDS', 'REFERENCE_MODELS', 'export_reference', 'infer_kind', 'load_estimator', 'reference_model_path',
           'resolve_checkpoint', 'stored_network_options']

KINDS = ('ufpnet', 'basis', 'offsets')
REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference_models')
REFERENCE_MODELS = {
    'ufpnet-ke-reference': 'ufpnet_ke_reference.pth',
    'basis-kernels-reference': 'basis_kernels_reference.pth',
}
_DEFAULT_TYPES = {'ufpnet': 'FlowKernelEstimator', 'basis': 'BasisKernelNet', 'offsets': 'MotionOffsetNet'}


def reference_model_path(name: str) -> str:
    """Path of a shipped reference model.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        FileNotFoundError: the name is known but its file is not in this installation.
    """
    if name not in REFERENCE_MODELS:
        raise KeyError(f'unknown reference model {name!r}; expected one of {sorted(REFERENCE_MODELS)} or a .pth path')
    path = os.path.join(REFERENCE_DIR, REFERENCE_MODELS[name])
    if not os.path.isfile(path):
        raise FileNotFoundError(f'reference model {name!r} is not shipped in this installation (missing {path})')
    return path


def resolve_checkpoint(name_or_path: str) -> str:
    """An existing checkpoint path as is, else the file of the reference model of that name."""
    if os.path.isfile(name_or_path):
        return name_or_path
    if name_or_path in REFERENCE_MODELS:
        return reference_model_path(name_or_path)
    raise FileNotFoundError(f'checkpoint {name_or_path!r}: no such file, and not a reference-model name (expected '
                            f'one of {sorted(REFERENCE_MODELS)})')


def stored_network_options(path: str) -> Optional[dict]:
    """The ``network_g`` options a reference-model file carries (None for checkpoints without them)."""
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    options = checkpoint.get('network_g') if isinstance(checkpoint, dict) else None
    return dict(options) if isinstance(options, dict) else None


def infer_kind(state: dict) -> str:
    """Estimator family of a state dict from its parameter names (ours or the published ones)."""
    if any(key.startswith('kernel_extra.') for key in state):
        return 'ufpnet'
    if any(key.startswith(('conv_in.', 'inc_rgb.')) for key in state):
        return 'basis'
    if any(key.startswith(('enc1.', 'conv_1.')) for key in state):
        return 'offsets'
    raise KeyError(f'cannot tell the estimator family from {len(state)} keys (e.g. {sorted(state)[:5]}); pass kind '
                   f'as one of {KINDS}')


def _ufpnet_options(state: dict) -> dict:
    """FlowKernelEstimator sizes read off its weights (K, width, flow blocks and hidden size)."""
    head = state['kernel_extra.Encoding_Block1.Conv_head.weight']
    return {
        'type': 'FlowKernelEstimator',
        'img_channel': head.shape[1],
        'kernel_size': int(state['flow.kernel_size']),
        'num_feat': head.shape[0],
        'flow_num_block': sum(1 for key in state if key.startswith('flow.') and key.endswith('.mask')),
        'flow_hidden_size': state['flow.net.0.s_net.0.weight'].shape[0],
    }


def load_estimator(name_or_path: str, kind: Optional[str] = None, opt_path: Optional[str] = None,
                   device: str = 'cpu') -> Tuple[nn.Module, str]:
    """Builds an estimator and loads its weights, in eval mode (deterministic).

    Network options come from, in order: ``opt_path`` (a training YAML's ``network_g``), the checkpoint's own
    ``network_g`` (reference models), the sizes read off the weights (UFPNet family), the defaults of the kind.
    Published checkpoints (UFPNet, the basis ``TwoHeadsNetwork``, Motion-ETR) are remapped to our names.

    Args:
        name_or_path (str): reference-model name or checkpoint path.
        kind (str, optional): ``'ufpnet'``, ``'basis'`` or ``'offsets'``; default from the checkpoint.
        opt_path (str, optional): options YAML with ``network_g``.
        device (str): where to put the network.

    Returns:
        tuple: (network, kind). ``network(lq)`` maps (N, 3, H, W) to a blur field.
    """
    import basicsr_blurfield  # noqa: F401  (registers the archs)
    from basicsr.archs import build_network
    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict

    if kind is not None and kind not in KINDS:
        raise ValueError(f'kind: expected one of {KINDS}, got {kind!r}')
    path = resolve_checkpoint(name_or_path)
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path}: expected a checkpoint dict, got {type(checkpoint).__name__}')
    state = unwrap_state_dict(checkpoint, 'params_ema' if 'params_ema' in checkpoint else None)
    kind = kind or checkpoint.get('kind') or infer_kind(state)
    if kind == 'ufpnet':
        from basicsr_blurfield.archs.ufpnet_arch import remap_official_keys
        state = {k: v for k, v in remap_official_keys(state).items() if k.startswith(('kernel_extra.', 'flow.'))}
        if 'flow.kernel_size' not in state:
            raise KeyError(f'{path}: expected a UFPNet kernel estimator (kernel_extra.*, flow.* weights)')
    elif kind == 'basis' and any(key.startswith('inc_rgb.') for key in state):
        from basicsr_blurfield.archs.basis_kernel_arch import remap_official_keys
        state = remap_official_keys(state)
    elif kind == 'offsets' and any(key.startswith('conv_1.') for key in state):
        from basicsr_blurfield.archs.motion_offset_arch import remap_official_keys
        state = remap_official_keys(state)
    if opt_path is not None:
        with open(opt_path) as handle:
            net_opt = yaml.safe_load(handle)['network_g']
    elif isinstance(checkpoint.get('network_g'), dict):
        net_opt = checkpoint['network_g']
    elif kind == 'ufpnet':
        net_opt = _ufpnet_options(state)
    else:
        net_opt = {'type': _DEFAULT_TYPES[kind]}
    net = build_network(dict(net_opt))
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), kind


def export_reference(checkpoint: str, opt_path: str, destination: str, kind: str, meta: dict) -> None:
    """Writes a reference-model file: ``params`` (from a training checkpoint), ``kind``, ``network_g``, ``meta``.

    Args:
        checkpoint (str): a ``net_g_*.pth`` written by training.
        opt_path (str): the training options YAML (its ``network_g`` is stored).
        destination (str): output ``.pth`` (written atomically).
        kind (str): one of :data:`KINDS`.
        meta (dict): model-card facts (plain YAML/JSON values).
    """
    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
    from basicsr_blurfield.atomic import torch_save

    if kind not in KINDS:
        raise ValueError(f'kind: expected one of {KINDS}, got {kind!r}')
    with open(opt_path) as handle:
        net_opt = yaml.safe_load(handle)['network_g']
    state = unwrap_state_dict(torch.load(checkpoint, map_location='cpu', weights_only=True))
    torch_save({'params': state, 'kind': kind, 'network_g': net_opt, 'meta': meta}, destination)
