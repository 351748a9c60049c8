"""Pictures of blur fields: per-pixel kernels drawn enlarged over the photo, trajectories drawn as coloured curves.

Both return ``uint8`` RGB arrays ``(H, W, 3)`` the size of the photo, ready for ``cv2.imwrite`` (after RGB -> BGR)
or ``imageio``. Kernels are scaled by their maximum so faint long kernels stay visible.
"""
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import BlurField
from .offset_field import OffsetField

ImageLike = Union[Tensor, np.ndarray]


def to_uint8_rgb(image: ImageLike) -> np.ndarray:
    """Converts a photo to ``uint8`` RGB ``(H, W, 3)``.

    Args:
        image (Tensor | ndarray): tensor (C, H, W) or (1, C, H, W) in [0, 1] with C in {1, 3}, or array (H, W) /
            (H, W, 1) / (H, W, 3), ``uint8`` or float in [0, 1].
    """
    if isinstance(image, Tensor):
        if image.dim() == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f'image: expected a tensor (C, H, W) or (1, C, H, W) with C in (1, 3), '
                             f'got {tuple(image.shape)}')
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f'image: expected an array (H, W), (H, W, 1) or (H, W, 3), got {image.shape}')
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image)


def _grid_points(field: BlurField, step: int, index: int) -> Tensor:
    if not isinstance(step, int) or step < 2:
        raise ValueError(f'step: expected an int >= 2 (pixels between drawn kernels), got {step!r}')
    if not 0 <= index < field.batch:
        raise ValueError(f'index: expected a sample index in [0, {field.batch}), got {index}')
    ys = torch.arange(step // 2, field.height, step)
    xs = torch.arange(step // 2, field.width, step)
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack((torch.full_like(yy, index), yy, xx), -1).view(-1, 3)


def _check_size(photo: np.ndarray, field: BlurField) -> None:
    if photo.shape[:2] != (field.height, field.width):
        raise ValueError(f'image: expected {field.height}x{field.width} like the field, got '
                         f'{photo.shape[0]}x{photo.shape[1]}')


def draw_kernel_grid(image: ImageLike,
                     field: BlurField,
                     step: int = 32,
                     index: int = 0,
                     color: Tuple[int, int, int] = (255, 230, 40),
                     cell: Optional[int] = None) -> np.ndarray:
    """Draws the field's kernels on a grid of pixels, each resized to a ``cell``-pixel square (``step - 2``).

    Args:
        image (Tensor | ndarray): the photo, see :func:`to_uint8_rgb`; H x W like the field.
        field (BlurField): any representation; kernels from ``field.kernels_at``.
        step (int): grid spacing in pixels; a kernel is drawn centred on every grid pixel. Default: 32.
        index (int): which sample of the field's batch. Default: 0.
        color (tuple[int, int, int]): RGB of a kernel's maximum.
        cell (int, optional): side of each drawn kernel square, in [1, step]; smaller leaves the photo visible
            between the kernels. Default: None (``step - 2``).

    Returns:
        ndarray: uint8 (H, W, 3), the photo darkened under each kernel square with the kernel drawn in ``color``.
    """
    photo = to_uint8_rgb(image)
    _check_size(photo, field)
    points = _grid_points(field, step, index)
    kernels = field.kernels_at(points.to(field.device)).detach().float().cpu()
    kernels = kernels / kernels.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    if cell is None:
        cell = step - 2
    elif not isinstance(cell, int) or not 1 <= cell <= step:
        raise ValueError(f'cell: expected an int in [1, step={step}], got {cell!r}')
    tiles = F.interpolate(kernels[:, None], size=(cell, cell), mode='nearest')[:, 0].numpy()
    out = photo.astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    for (_, y, x), tile in zip(points.tolist(), tiles):
        top, left = y - cell // 2, x - cell // 2
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + cell, field.height), min(left + cell, field.width)
        value = tile[y0 - top:y1 - top, x0 - left:x1 - left, None]
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * 0.35 * (1 - value) + tint * value
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def draw_trajectories(image: ImageLike,
                      offset_field: OffsetField,
                      step: int = 24,
                      index: int = 0,
                      scale: float = 1.0,
                      thickness: int = 1) -> np.ndarray:
    """Draws every grid pixel's exposure trajectory ``p + scale * offsets_t(p)`` as a polyline, blue (first step)
    to red (last step), with a white dot at the pixel itself (the sharp middle instant).

    Args:
        image (Tensor | ndarray): the photo, see :func:`to_uint8_rgb`; H x W like the field.
        offset_field (OffsetField): the trajectories.
        step (int): grid spacing in pixels. Default: 24.
        index (int): which sample of the field's batch. Default: 0.
        scale (float): magnification of the offsets (1 draws them at their true length). Default: 1.
        thickness (int): line width in pixels. Default: 1.

    Returns:
        ndarray: uint8 (H, W, 3).
    """
    import cv2

    if not isinstance(offset_field, OffsetField):
        raise TypeError(f'offset_field: expected an OffsetField, got {type(offset_field).__name__}')
    photo = to_uint8_rgb(image)
    _check_size(photo, offset_field)
    points = _grid_points(offset_field, step, index)
    _, y, x = points.unbind(1)
    offsets = offset_field.offsets[index][:, :, y, x].detach().double().cpu()
    path_x = (x.double() + scale * offsets[:, 0]).numpy()
    path_y = (y.double() + scale * offsets[:, 1]).numpy()
    out = np.ascontiguousarray(photo)
    steps = offset_field.num_steps
    shift = 4
    for p in range(points.shape[0]):
        for t in range(steps - 1):
            frac = t / max(steps - 2, 1)
            colour = (int(255 * frac), 60, int(255 * (1 - frac)))
            start = (int(round(path_x[t, p] * (1 << shift))), int(round(path_y[t, p] * (1 << shift))))
            end = (int(round(path_x[t + 1, p] * (1 << shift))), int(round(path_y[t + 1, p] * (1 << shift))))
            cv2.line(out, start, end, colour, thickness, cv2.LINE_AA, shift)
        cv2.circle(out, (int(x[p]), int(y[p])), 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out
