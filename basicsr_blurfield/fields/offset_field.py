"""Offset (exposure-trajectory) field: eq. (3)-(4) of Zhang et al., constraints eq. (12)-(14).

``blurry(p) = 1/T * sum_t sharp(p + offsets_t(p))`` with bilinear interpolation (eq. 4) of the padded sharp image;
offsets are ``(dx, dy)`` in pixels, time ordered; the sharp image is the middle instant. Blur runs one
``grid_sample`` call per step, accumulated in place (``align_corners=True``; padding ``'replicate'`` -> ``'border'``,
``'reflect'`` -> ``'reflection'``, ``'zeros'`` -> ``'zeros'``, which equal bilinear sampling of the padded image).
The adjoint is the transpose of bilinear sampling: every value is scattered with the same four weights onto the
source pixels (padded corners mapped back to the pixel they copy). ``dense`` splats every trajectory point
bilinearly into a K x K grid with weight ``1/T`` (eq. 5 with the Dirac replaced by the bilinear kernel), so
``dense(K).blur(x) == blur(x)`` whenever the grid holds every point.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_kernel_size, check_points, check_sample_image, check_tensor
from .base import BlurField
from .kernel_field import KernelField

CONSTRAINTS = ('linear', 'bilinear', 'quadratic')
_GRID_SAMPLE_PADDING = {'replicate': 'border', 'reflect': 'reflection', 'zeros': 'zeros'}


def instant_weights(instants: Tensor, constraint: str) -> Tuple[Tensor, Tensor]:
    """Coefficients ``(a, b)`` of a constrained trajectory at arbitrary instants: ``dp(u) = a(u) S + b(u) E``.

    ``u`` runs from -1 (start S) through 0 (the sharp instant) to 1 (end E). Eq. (12) linear: ``a = -u``, ``b = 0``
    (E = -S); eq. (13) bi-directional linear: ``a = max(-u, 0)``, ``b = max(u, 0)``; eq. (14) quadratic:
    ``a = (u^2 - u) / 2``, ``b = (u^2 + u) / 2``.

    Args:
        instants (Tensor): (F,) values in [-1, 1].
        constraint (str): one of :data:`CONSTRAINTS`.

    Returns:
        tuple[Tensor, Tensor]: ``a`` and ``b``, (F,) each, dtype of ``instants``.
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f'constraint: expected one of {CONSTRAINTS} (free offsets cannot be evaluated at other '
                         f'instants), got {constraint!r}')
    u = instants
    if constraint == 'linear':
        return -u, torch.zeros_like(u)
    if constraint == 'bilinear':
        return (-u).clamp(min=0), u.clamp(min=0)
    return (u * u - u) / 2, (u * u + u) / 2


def trajectory_weights(num_steps: int, constraint: str) -> Tuple[Tensor, Tensor]:
    """Coefficients ``(a_t, b_t)`` with ``offsets_t = a_t * start + b_t * end`` for a constrained trajectory:
    :func:`instant_weights` at ``u_t = 2t / (T - 1) - 1``, which runs from -1 to 1 and is exactly 0 at the middle step.

    Args:
        num_steps (int): T, odd and >= 3 so that the middle instant is a step.
        constraint (str): one of :data:`CONSTRAINTS`.

    Returns:
        tuple[Tensor, Tensor]: float64 ``(T,)`` each.
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f'constraint: expected one of {CONSTRAINTS}, got {constraint!r}')
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 3 or num_steps % 2 == 0:
        raise ValueError(f'num_steps: expected an odd int >= 3 (the middle step is the sharp instant), '
                         f'got {num_steps!r}')
    u = torch.linspace(-1, 1, num_steps, dtype=torch.float64)
    u[num_steps // 2] = 0
    return instant_weights(u, constraint)


def _corners(pos_y: Tensor, pos_x: Tensor) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """Bilinear corners ``(row, col, weight)`` of sampling positions (any shape, long rows/cols)."""
    y0, x0 = pos_y.floor(), pos_x.floor()
    fy, fx = pos_y - y0, pos_x - x0
    y0, x0 = y0.long(), x0.long()
    return [(y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx), (y0 + 1, x0, fy * (1 - fx)),
            (y0 + 1, x0 + 1, fy * fx)]


def _source(index: Tensor, size: int, padding: str) -> Tuple[Tensor, Optional[Tensor]]:
    """Maps corner indices to the image pixel they read; for ``'zeros'`` also returns the in-image mask."""
    if padding == 'zeros':
        return index.clamp(0, size - 1), (index >= 0) & (index < size)
    if padding == 'replicate':
        return index.clamp(0, size - 1), None
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index), None


def _splat(dx: Tensor, dy: Tensor, kernel_size: int) -> Tensor:
    """Bilinear splat of trajectory points into K x K grids, weight 1/T each, points outside dropped.

    Shape: dx, dy (..., T) -> (..., K*K).
    """
    radius = kernel_size // 2
    grid = dx.new_zeros(dx.shape[:-1] + (kernel_size * kernel_size, ))
    for row, col, weight in _corners(dy + radius, dx + radius):
        inside = (row >= 0) & (row < kernel_size) & (col >= 0) & (col < kernel_size)
        tap = (row.clamp(0, kernel_size - 1) * kernel_size + col.clamp(0, kernel_size - 1))
        grid = grid.scatter_add(-1, tap, weight * inside / dx.shape[-1])
    return grid


class OffsetField(BlurField):
    """T bilinear samples along a per-pixel exposure trajectory.

    Args:
        offsets (Tensor): (N, T, 2, H, W) as (dx, dy) in pixels, time ordered; H, W >= 2.
        padding (str): boundary handling, one of ``'replicate'`` (default), ``'reflect'``, ``'zeros'``.
        check (bool): validate that the offsets are finite. Default: True.

    Shape:
        blur / adjoint: (N, C, H, W) -> (N, C, H, W), any C.
    """

    def __init__(self, offsets: Tensor, padding: str = 'replicate', check: bool = True):
        check_tensor('offsets', offsets, 5, '(N, T, 2, H, W)')
        num, steps, two, height, width = (int(value) for value in offsets.shape)  # ints under jit tracing
        if two != 2 or steps < 1:
            raise ValueError(f'offsets: expected (N, T, 2, H, W) with T >= 1 and (dx, dy) in dim 2, '
                             f'got {tuple(offsets.shape)}')
        if height < 2 or width < 2:
            raise ValueError(f'offsets: expected an image of at least 2x2 pixels, got {height}x{width}')
        super().__init__(padding, num, height, width)
        if check and not bool(torch.isfinite(offsets.detach()).all()):
            raise ValueError('offsets: expected finite values, got NaN or inf')
        self.offsets = offsets
        self.num_steps = steps

    @classmethod
    def from_endpoints(cls,
                       start: Tensor,
                       end: Optional[Tensor] = None,
                       num_steps: int = 15,
                       constraint: str = 'quadratic',
                       padding: str = 'replicate') -> 'OffsetField':
        """Builds a constrained trajectory through (0, 0) at the middle step, eq. (12)-(14) of Zhang et al.

        Args:
            start (Tensor): (N, 2, H, W), offset of the first step (dx, dy).
            end (Tensor | None): (N, 2, H, W), offset of the last step; must be None for ``'linear'`` (eq. 12 fixes
                it to ``-start``), required otherwise.
            num_steps (int): T, odd and >= 3. Default: 15.
            constraint (str): ``'linear'``, ``'bilinear'`` (bi-directional linear) or ``'quadratic'`` (default).
            padding (str): boundary handling of the returned field.

        Returns:
            OffsetField: offsets (N, T, 2, H, W).
        """
        first, last = trajectory_weights(num_steps, constraint)
        check_tensor('start', start, 4, '(N, 2, H, W)')
        if start.shape[1] != 2:
            raise ValueError(f'start: expected (N, 2, H, W) as (dx, dy), got {tuple(start.shape)}')
        if constraint == 'linear':
            if end is not None:
                raise ValueError("end: expected None for constraint='linear' (eq. 12 sets end = -start), got a tensor")
            end = torch.zeros_like(start)
        elif not isinstance(end, Tensor) or end.shape != start.shape:
            got = tuple(end.shape) if isinstance(end, Tensor) else type(end).__name__
            raise ValueError(f'end: expected a tensor of the shape of start {tuple(start.shape)} '
                             f'for constraint={constraint!r}, got {got}')
        first = first.to(start)[None, :, None, None, None]
        last = last.to(start)[None, :, None, None, None]
        return cls(first * start[:, None] + last * end[:, None], padding)

    def tensors(self) -> Dict[str, Tensor]:
        return {'offsets': self.offsets}

    def _check_image(self, name: str, image: Tensor) -> Tensor:
        check_sample_image(name, image, self.batch, self.height, self.width)
        if image.dtype != self.offsets.dtype:
            raise TypeError(f'{name}: expected dtype {self.offsets.dtype} like the field, got {image.dtype}')
        return image

    def _positions(self) -> Tuple[Tensor, Tensor]:
        """Sampling positions (y, x) in pixels: (N, T, H, W) each."""
        rows = torch.arange(self.height, dtype=self.dtype, device=self.device)[:, None]
        cols = torch.arange(self.width, dtype=self.dtype, device=self.device)
        return rows + self.offsets[:, :, 1], cols + self.offsets[:, :, 0]

    def blur(self, sharp: Tensor) -> Tensor:
        """Blurs ``sharp`` (N, C, H, W) -> (N, C, H, W); differentiable in the image and the offsets.

        One ``grid_sample`` per step accumulated in place: memory ``O(N*C*H*W)`` plus one step's grid.
        """
        self._check_image('sharp', sharp)
        scale_x, scale_y = 2 / (self.width - 1), 2 / (self.height - 1)
        cols = torch.arange(self.width, dtype=self.dtype, device=self.device) * scale_x - 1
        rows = torch.arange(self.height, dtype=self.dtype, device=self.device)[:, None] * scale_y - 1
        padding = _GRID_SAMPLE_PADDING[self.padding]
        out = None
        for step_offsets in self.offsets.unbind(1):  # unbind: one stacked gradient, not T full-size index backwards
            step_x, step_y = step_offsets.unbind(1)
            grid = torch.stack((cols + step_x * scale_x, rows + step_y * scale_y), -1)
            warped = F.grid_sample(sharp, grid, mode='bilinear', padding_mode=padding, align_corners=True)
            out = warped if out is None else out.add_(warped)
        return out.div_(self.num_steps)

    def adjoint(self, image: Tensor) -> Tensor:
        """Exact transpose of :meth:`blur` (bilinear scatter): (N, C, H, W) -> (N, C, H, W); differentiable."""
        self._check_image('image', image)
        num, channels = image.shape[:2]
        pos_y, pos_x = self._positions()
        flat = image.reshape(num, channels, -1) / self.num_steps
        out = torch.zeros_like(flat)
        for step in range(self.num_steps):
            for row, col, weight in _corners(pos_y[:, step], pos_x[:, step]):
                row, row_inside = _source(row, self.height, self.padding)
                col, col_inside = _source(col, self.width, self.padding)
                if row_inside is not None:
                    weight = weight * (row_inside & col_inside)
                index = (row * self.width + col).view(num, 1, -1).expand(-1, channels, -1)
                out = out.scatter_add(2, index, flat * weight.view(num, 1, -1))
        return out.view(image.shape)

    def auto_kernel_size(self) -> int:
        """Smallest odd K whose grid holds every trajectory point: ``2 * ceil(max |offset|) + 1``."""
        return 2 * math.ceil(self.offsets.detach().abs().max().item()) + 1

    def dense(self, kernel_size: Optional[int] = None) -> KernelField:
        """Bilinearly splatted per-pixel kernels (weight 1/T per point) as a :class:`KernelField`.

        Args:
            kernel_size (int | None): odd K; default :meth:`auto_kernel_size`. Points outside the grid are dropped.
        """
        size = self.auto_kernel_size() if kernel_size is None else kernel_size
        check_kernel_size(size, self.height, self.width)
        dx, dy = self.offsets.permute(0, 3, 4, 1, 2).unbind(-1)
        kernels = _splat(dx, dy, size).permute(0, 3, 1, 2)
        return KernelField(kernels, self.padding, check=False)

    def kernels_at(self, points: Tensor, kernel_size: Optional[int] = None) -> Tensor:
        """Splatted kernels at ``points`` (P, 3) long as (n, y, x) -> (P, K, K), K as in :meth:`dense`."""
        size = self.auto_kernel_size() if kernel_size is None else kernel_size
        check_kernel_size(size, self.height, self.width)
        n, y, x = check_points(points, self.batch, self.height, self.width).to(self.device).unbind(1)
        dx, dy = self.offsets[n, :, :, y, x].unbind(-1)
        return _splat(dx, dy, size).view(-1, size, size)
