"""Compact ``.npz`` storage of blur fields: the representation's own tensors (never a dense expansion).

An archive holds ``field_type`` (``'KernelField'``, ``'BasisField'`` or ``'OffsetField'``), ``padding`` and the
constructor tensors by name (``kernels``; ``basis`` and ``mixing``; ``offsets``) in their own dtype, so
``load_field(save_field(field))`` round-trips exactly.
"""
import os
from typing import Union

import numpy as np
import torch

from ..atomic import atomic_path
from .base import BlurField
from .basis_field import BasisField
from .kernel_field import KernelField
from .offset_field import OffsetField

FIELD_TYPES = {cls.__name__: cls for cls in (KernelField, BasisField, OffsetField)}


def save_field(path: Union[str, os.PathLike], field: BlurField) -> None:
    """Writes ``field`` to ``path`` (a compressed ``.npz``; ``.npz`` is appended when missing), atomically.

    Args:
        path (str | PathLike): destination file.
        field (BlurField): a :class:`KernelField`, :class:`BasisField` or :class:`OffsetField`.
    """
    if type(field).__name__ not in FIELD_TYPES or not isinstance(field, BlurField):
        raise TypeError(f'field: expected one of {tuple(FIELD_TYPES)}, got {type(field).__name__}')
    arrays = {name: value.detach().cpu().numpy() for name, value in field.tensors().items()}
    path = os.fspath(path)
    with atomic_path(path if path.endswith('.npz') else f'{path}.npz') as temporary:
        np.savez_compressed(temporary, field_type=np.array(type(field).__name__), padding=np.array(field.padding),
                            **arrays)


def load_field(path: Union[str, os.PathLike], device: Union[str, torch.device] = 'cpu') -> BlurField:
    """Reads a field written by :func:`save_field`, validating it like the constructor does.

    Args:
        path (str | PathLike): the ``.npz`` file.
        device (str | torch.device): where to put the tensors. Default: ``'cpu'``.

    Returns:
        BlurField: the stored representation, same dtype and values.
    """
    with np.load(path, allow_pickle=False) as archive:
        if 'field_type' not in archive.files:
            raise ValueError(f'{path}: expected a blur-field archive with a field_type entry, got {archive.files}')
        name = str(archive['field_type'])
        if name not in FIELD_TYPES:
            raise ValueError(f'{path}: field_type expected one of {tuple(FIELD_TYPES)}, got {name!r}')
        tensors = {
            key: torch.from_numpy(archive[key]).to(device)
            for key in archive.files if key not in ('field_type', 'padding')
        }
        return FIELD_TYPES[name](**tensors, padding=str(archive['padding']))
