"""Golden-output helpers: rebuild the fixtures' reproducible weights and load the authors' outputs.

Each ``tests/fixtures/golden/<name>_official_golden.{json,npz}`` holds the outputs of the authors' code on weights
anyone can rebuild from the recipe in its JSON (``weights_recipe``): for every official state-dict key,

    g = torch.Generator().manual_seed(zlib.crc32(seed_key.encode()))       (seed_key = the key, or 'file/key')
    n = torch.randn(shape, generator=g, dtype=torch.float64).float()
    value = rule(key, shape, n)                                            (per fixture, e.g. 0.5 / sqrt(fan_in) * n)

:func:`recipe_noise` is the ``n`` of one key; :func:`recipe_weights` applies a rule to every key (default: the UFPNet
fixture's recipe, :func:`ufpnet_rule`); :func:`fan_in_scaled` is the ``s / sqrt(fan_in) * n`` most recipes use.
A rule returns None for keys that keep their constructor value (buffers such as the flow's masks).
"""
import json
import math
import os
import zlib
from typing import Callable, Optional

import numpy as np
import torch

__all__ = ['GOLDEN', 'fan_in_scaled', 'load_golden', 'recipe_noise', 'recipe_weights', 'ufpnet_rule']

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'golden')

# buffers of the UFPNet flow prior that keep their constructor value (the JSON recipe's "every other buffer")
_UFPNET_KEPT_BUFFERS = ('kernel_size', 'alpha', 'normalization', 'base_dist_mean', 'base_dist_var', 'mask')


def recipe_noise(seed_key: str, shape) -> torch.Tensor:
    """The recipe's ``n`` for one key: float64 standard normal seeded by crc32 of ``seed_key``, cast to float32."""
    generator = torch.Generator().manual_seed(zlib.crc32(seed_key.encode()))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64).float()


def fan_in_scaled(n: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale / sqrt(fan_in) * n`` with ``fan_in = prod(shape[1:])`` (conv / linear / transposed-conv weights)."""
    return scale / math.sqrt(math.prod(n.shape[1:])) * n


def ufpnet_rule(key: str, shape, n: torch.Tensor) -> Optional[torch.Tensor]:
    """Weights recipe of ``ufpnet_official_golden.json`` for one official key (None: keep the constructor value)."""
    if key.endswith('running_var'):
        return 1 + 0.1 * n.abs()
    if key.endswith('running_mean'):
        return 0.02 * n
    if key.split('.')[0] == 'flow' and key.split('.')[-1] in _UFPNET_KEPT_BUFFERS:
        return None
    if key.endswith(('norm1.weight', 'norm2.weight')):
        return 1 + 0.1 * n
    if key.endswith(('.beta', '.gamma')):
        return 0.02 * n
    if len(shape) >= 2:
        return fan_in_scaled(n, 0.5)
    return 0.02 * n


def recipe_weights(official_shapes: dict,
                   rule: Callable = ufpnet_rule,
                   seed_key: Callable = lambda key: key) -> dict:
    """Recipe weights for every official key of a published layout.

    Args:
        official_shapes (dict): official key -> shape (tuple / list / torch.Size), e.g. a layout fixture's
            ``state_dict`` or ``{k: v.shape for k, v in official_state.items()}``.
        rule (callable): ``rule(key, shape, n) -> Tensor | None`` (None: the key keeps its constructor value and
            is left out). Default: :func:`ufpnet_rule`.
        seed_key (callable): key -> the string whose crc32 seeds it (e.g. ``lambda k: 'encoder_lv1/' + k``).

    Returns:
        dict: official key -> float32 tensor of that shape, in the order of ``official_shapes``.
    """
    weights = {}
    for key, shape in official_shapes.items():
        value = rule(key, tuple(shape), recipe_noise(seed_key(key), shape))
        if value is not None:
            weights[key] = value
    return weights


def load_golden(name: str) -> tuple:
    """Loads ``tests/fixtures/golden/<name>_official_golden.{json,npz}`` (``name`` with or without the suffix).

    Returns:
        tuple: (meta (dict, the JSON), arrays (dict of numpy arrays, the npz)).
    """
    stem = name if name.endswith('_official_golden') else f'{name}_official_golden'
    path = os.path.join(GOLDEN, stem)
    if not os.path.isfile(path + '.json'):
        raise FileNotFoundError(f'golden fixture {stem!r} not found in {GOLDEN}; copy it from shared/fixtures/')
    with open(path + '.json') as handle:
        meta = json.load(handle)
    with np.load(path + '.npz') as arrays:
        return meta, {key: arrays[key] for key in arrays.files}
