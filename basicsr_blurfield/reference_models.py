"""Reference blur-field estimators shipped with the package, loadable by name (model cards: ``docs/estimation.md``).

A name such as ``ufpnet-ke-reference`` (UFPNet stage-II kernel estimator, Fang et al. eq. (4)-(6), K = 19),
``ufpnet-ke-cues-reference`` (the same network reading blur cues, ``input_cues='autocorrelation'``),
``ufpnet-ke-cues-long-reference`` (that one trained 3000 steps longer: the best estimator shipped) or
``basis-kernels-reference`` (basis-kernel network, Carbajal et al. eq. (2)) resolves to a small ``.pth`` under
``basicsr_blurfield/reference_models/``. Each file is a BasicSR-layout checkpoint (weights under ``params``) that
also carries ``kind`` (``ufpnet`` | ``basis`` | ``offsets``), the ``network_g`` options that build it, and ``meta``
(training options file, iterations, time, machine, benchmark figures), so any tool can rebuild the network:

    net, kind = load_estimator('ufpnet-ke-reference')   # or a path to any of our / the published checkpoints
    field = net(blurry)                                 # (N, 3, H, W) -> KernelField / BasisField / OffsetField

:func:`export_reference` writes such a file from a training checkpoint and its options. Loading goes through the one
checkpoint loader, :func:`basicsr_blurfield.restoration.estimators.load_network`.
"""
import os
from typing import Optional, Tuple

import torch
import yaml
from torch import nn

__all__ = ['KINDS', 'NETWORK_OF_KIND', 'REFERENCE_MODELS', 'export_reference', 'load_estimator', 'reference_model_path',
           'resolve_checkpoint']

KINDS = ('ufpnet', 'basis', 'offsets')
REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference_models')
REFERENCE_MODELS = {
    'ufpnet-ke-reference': 'ufpnet_ke_reference.pth',
    'ufpnet-ke-cues-reference': 'ufpnet_ke_cues_reference.pth',
    'ufpnet-ke-cues-long-reference': 'ufpnet_ke_cues_long_reference.pth',
    'basis-kernels-reference': 'basis_kernels_reference.pth',
}
NETWORK_OF_KIND = {'ufpnet': 'FlowKernelEstimator', 'basis': 'BasisKernelNet', 'offsets': 'MotionOffsetNet'}


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


def load_estimator(name_or_path: str, kind: Optional[str] = None, opt_path: Optional[str] = None,
                   device: str = 'cpu') -> Tuple[nn.Module, str]:
    """Builds an estimator and loads its weights, in eval mode (deterministic), through
    :func:`basicsr_blurfield.restoration.estimators.load_network`.

    Network options come from, in order: ``opt_path`` (a training YAML's ``network_g``), the checkpoint's own
    ``network_g`` (reference models), the sizes read off the weights. Published checkpoints (UFPNet, the basis
    ``TwoHeadsNetwork``, Motion-ETR) are remapped to our names.

    Args:
        name_or_path (str): reference-model name or checkpoint path.
        kind (str, optional): ``'ufpnet'``, ``'basis'`` or ``'offsets'``: the kind the checkpoint must hold; default:
            whatever estimator it holds.
        opt_path (str, optional): options YAML with ``network_g``.
        device (str): where to put the network.

    Returns:
        tuple: (network, kind). ``network(lq)`` maps (N, 3, H, W) to a blur field.

    Raises:
        ValueError: an unknown ``kind``, a checkpoint of another kind or of no blur-field estimator, or weights that do
            not fit the network.
    """
    from basicsr_blurfield.restoration.estimators import load_network

    if kind is not None and kind not in KINDS:
        raise ValueError(f'kind: expected one of {KINDS}, got {kind!r}')
    network, net = load_network(name_or_path, device=device, opt_path=opt_path)
    found = {value: key for key, value in NETWORK_OF_KIND.items()}.get(network)
    if found is None or (kind is not None and found != kind):
        wanted = NETWORK_OF_KIND[kind] if kind else f'one of {sorted(NETWORK_OF_KIND.values())}'
        raise ValueError(f'{name_or_path}: holds a {network}; expected {wanted} (kind {kind or KINDS})')
    return net, found


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
