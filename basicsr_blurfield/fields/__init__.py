"""Blur fields: the core of basicsr_blurfield (pure torch, no BasicSR import).

Conventions (DESIGN.md, "The core contract"):
- images are float tensors (N, C, H, W) in [0, 1], any C, H, W;
- kernels are in gather (correlation) form, eq. (1) of Carbajal et al.: with r = K // 2,
  ``blurry[n, c, y, x] = sum_{i,j} k_{n,y,x}[i, j] * sharp[n, c, y + i - r, x + j - r]``;
  non-negative, summing to 1; taps outside the image read the padded value ('replicate' default, 'reflect', 'zeros');
- offsets are (dx, dy) in pixels, time ordered, the sharp image being the middle instant (Zhang et al., eq. 3).

Representations: :class:`KernelField` (one kernel per pixel), :class:`BasisField` (eq. 2 of Carbajal et al.),
:class:`OffsetField` (eq. 3-4 and 12-14 of Zhang et al.); each has ``blur``, ``adjoint`` (exact transpose),
``dense``, ``kernels_at`` and ``to``.
"""
from ._common import PADDING_MODES, normalize_kernels
from .base import BlurField
from .basis_field import BasisField
from .deform import deform_conv2d
from .io import load_field, save_field
from .kernel_field import KernelField
from .offset_field import CONSTRAINTS, OffsetField
from .plots import draw_kernel_grid, draw_trajectories

__all__ = [
    'BasisField', 'BlurField', 'CONSTRAINTS', 'KernelField', 'OffsetField', 'PADDING_MODES', 'deform_conv2d',
    'draw_kernel_grid', 'draw_trajectories', 'load_field', 'normalize_kernels', 'save_field'
]
