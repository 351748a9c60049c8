"""Loading published checkpoints into our networks.

Published files wrap their weights differently: BasicSR / NAFNet / UFPNet keep them under ``params`` (EMA under
``params_ema``), MPRNet under ``state_dict`` (often with the ``module.`` prefix of ``nn.DataParallel``), MIMO-UNet
under ``model``; some files are a bare state dict. :func:`unwrap_state_dict` removes the wrapper and the prefix;
the network-specific name changes live next to each arch as ``remap_official_keys(state) -> state`` (STYLE.md habit
13) and :func:`load_published_weights` applies both, then loads strictly by default.

The layouts these functions are tested against are ``tests/fixtures/published_layouts/*_state_dict.json``
(keys, shapes, counts and wrappers read off the authors' code).
"""
import importlib
import os

import torch
from torch import nn

__all__ = ['unwrap_state_dict', 'find_remap', 'load_published_weights']

WRAPPER_KEYS = ('params', 'params_ema', 'state_dict', 'model')


def unwrap_state_dict(checkpoint: dict, param_key: str = None) -> dict:
    """Returns the state dict inside a checkpoint, without the ``module.`` prefix.

    Args:
        checkpoint (dict): a state dict, or a dict holding it under one of ``params``, ``params_ema``,
            ``state_dict``, ``model`` (searched in this order; nested wrappers are unwrapped too).
        param_key (str | None): take this key explicitly (e.g. ``'params_ema'``). Default: None (search).

    Returns:
        dict: parameter name -> tensor.

    Raises:
        TypeError: when ``checkpoint`` is not a dict.
        KeyError: when ``param_key`` is given but absent (the message lists the keys present).
    """
    if not isinstance(checkpoint, dict):
        raise TypeError(f'checkpoint: expected a dict (state dict or wrapped checkpoint), got {type(checkpoint)}')
    state = checkpoint
    if param_key is not None:
        if param_key not in state:
            raise KeyError(f'param_key {param_key!r} not in checkpoint; its keys are {sorted(state)[:20]}')
        state = state[param_key]
    while not any(torch.is_tensor(v) for v in state.values()):
        inner = next((state[key] for key in WRAPPER_KEYS if isinstance(state.get(key), dict)), None)
        if inner is None:
            break
        state = inner
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state.items()}


def find_remap(arch: str):
    """The ``remap_official_keys`` function of a registered arch (identity-after-unwrap when it has none); a module
    holding several archs with different remaps names them in a ``REMAP_BY_ARCH`` dict (arch name -> function).

    Args:
        arch (str): registered arch name (the YAML ``type``), e.g. ``'NAFNet'``, ``'MPRNet'``, ``'MIMOUNet'``.

    Returns:
        callable: state dict -> state dict with our parameter names.

    Raises:
        KeyError: when ``arch`` is not registered (the message lists the registered names).
    """
    from basicsr.utils.registry import ARCH_REGISTRY
    if arch not in ARCH_REGISTRY:
        raise KeyError(f'arch {arch!r} is not registered; registered archs are {sorted(ARCH_REGISTRY.keys())}')
    module = importlib.import_module(ARCH_REGISTRY.get(arch).__module__)
    return getattr(module, 'REMAP_BY_ARCH', {}).get(arch) or getattr(module, 'remap_official_keys', unwrap_state_dict)


def load_published_weights(net: nn.Module,
                           path_or_state,
                           arch: str = None,
                           strict: bool = True,
                           param_key: str = None) -> nn.Module:
    """Loads a published checkpoint (file path or loaded dict) into ``net``, in place.

    Steps: ``torch.load`` on CPU (``weights_only=True``), :func:`unwrap_state_dict`, the arch's
    ``remap_official_keys``, then ``net.load_state_dict(state, strict)``.

    Args:
        net (nn.Module): the network; a DataParallel / DDP wrapper is looked through.
        path_or_state (str | os.PathLike | dict): checkpoint file or an already loaded checkpoint dict.
        arch (str | None): registered arch name whose remap applies; None means ``type(net).__name__``.
        strict (bool): passed to ``load_state_dict``. Default: True.
        param_key (str | None): explicit wrapper key (e.g. ``'params_ema'``). Default: None (search).

    Returns:
        nn.Module: ``net``.

    Raises:
        RuntimeError: from ``load_state_dict`` on missing/unexpected keys or shape mismatches (strict).
    """
    bare = net.module if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else net
    if isinstance(path_or_state, (str, os.PathLike)):
        checkpoint = torch.load(path_or_state, map_location='cpu', weights_only=True)
    else:
        checkpoint = path_or_state
    state = unwrap_state_dict(checkpoint, param_key)
    remap = find_remap(arch or type(bare).__name__)
    bare.load_state_dict(remap(state), strict=strict)
    return net
