"""Video from one blurry frame: warping-based extraction, eq. (17) of Zhang et al. (Motion-ETR, §5.2).

With ``L`` the deblurred (sharp, middle-instant) image and ``dp^t`` the exposure trajectory of instant t, frame t is
``L^t(p) = L(p + dp^t(p))`` (eq. 17): ``L`` warped backward by that instant's offsets, with the bilinear sampling and
boundary mode of :meth:`OffsetField.blur` (a one-instant ``OffsetField``), so the mean of the frames of a field's T
instants is exactly ``field.blur(L)`` (eq. 4) and the middle frame (offset (0, 0)) is ``L``. Frames are in time
order, frame 0 being the start of the exposure.

A constrained trajectory (linear, bi-linear, quadratic; eq. 12-14) is a curve through (0, 0) fixed by its start S
and end E, so any number F of frames comes from evaluating it at F instants ``u = linspace(-1, 1, F)``: slow motion
for free. With F odd the middle frame is ``L``; with F even no frame sits at the middle instant. Free (zero
constraint) offsets give their own T frames only.

Reference: Zhang, Wang, Maybank, Tao, Motion-ETR, §5.2 eq. (17), eq. (12)-(14). Written from the paper (the released
scripts warp the blurry image in two places; here the image warped is always the one passed in).
"""
import os
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from basicsr_blurfield.atomic import atomic_path, imwrite
from basicsr_blurfield.fields import CONSTRAINTS, OffsetField
from basicsr_blurfield.fields.offset_field import instant_weights
from basicsr_blurfield.models.deblur_model import final_image

__all__ = ['instant_weights', 'trajectory_at', 'frame_offsets', 'warp_backward', 'extract_frames', 'video_from_blurry',
           'write_video']


def _check_frames(num_frames) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f'num_frames: expected a positive int, got {num_frames!r}')
    return num_frames


def trajectory_at(start: Tensor, end: Optional[Tensor], num_frames: int, constraint: str = 'quadratic') -> Tensor:
    """Offsets of a constrained trajectory at ``num_frames`` evenly spaced instants from start to end.

    Args:
        start (Tensor): (N, 2, H, W), S as (dx, dy).
        end (Tensor | None): (N, 2, H, W), E; ignored (may be None) for ``'linear'`` (E = -S).
        num_frames (int): F >= 1 (1 gives the middle instant only).
        constraint (str): ``'linear'``, ``'bilinear'`` or ``'quadratic'`` (default).

    Returns:
        Tensor: (N, F, 2, H, W) as (dx, dy), time ordered.
    """
    num_frames = _check_frames(num_frames)
    if start.dim() != 4 or start.shape[1] != 2:
        raise ValueError(f'start: expected (N, 2, H, W) as (dx, dy), got {tuple(start.shape)}')
    if constraint != 'linear' and (end is None or end.shape != start.shape):
        got = None if end is None else tuple(end.shape)
        raise ValueError(f'end: expected a tensor of the shape of start {tuple(start.shape)} for '
                         f'constraint={constraint!r}, got {got}')
    instants = torch.linspace(-1, 1, num_frames, dtype=torch.float64) if num_frames > 1 else torch.zeros(
        1, dtype=torch.float64)
    if num_frames % 2:
        instants[num_frames // 2] = 0
    first, last = (w.to(start)[None, :, None, None, None] for w in instant_weights(instants, constraint))
    offsets = first * start[:, None]
    return offsets if constraint == 'linear' else offsets + last * end[:, None]


def frame_offsets(field: OffsetField, num_frames: Optional[int] = None, constraint: Optional[str] = None) -> Tensor:
    """Offsets of the frames to extract from ``field``: its own T instants, or ``num_frames`` instants of its curve.

    Args:
        field (OffsetField): offsets (N, T, 2, H, W).
        num_frames (int | None): F; None (or T) keeps the field's instants. Another F needs ``constraint``: the
            curve through the field's first and last offsets (S, E) is evaluated at F instants.
        constraint (str | None): the constraint the field was built with (``'linear'``, ``'bilinear'``,
            ``'quadratic'``); None for free offsets.

    Returns:
        Tensor: (N, F, 2, H, W).
    """
    if num_frames is None or num_frames == field.num_steps:
        return field.offsets
    if constraint is None:
        raise ValueError(f'num_frames={num_frames}: the field has {field.num_steps} free instants; other frame counts '
                         f'need its trajectory constraint, one of {CONSTRAINTS}')
    return trajectory_at(field.offsets[:, 0], field.offsets[:, -1], num_frames, constraint)


def warp_backward(image: Tensor, offsets: Tensor, padding: str = 'replicate') -> Tensor:
    """Eq. (17) for one instant: ``out(p) = image(p + offsets(p))``, bilinear as in :meth:`OffsetField.blur`.

    Args:
        image (Tensor): (N, C, H, W).
        offsets (Tensor): (N, 2, H, W) as (dx, dy), same dtype.
        padding (str): boundary mode (``'replicate'``, ``'reflect'``, ``'zeros'``). Default: 'replicate'.

    Returns:
        Tensor: (N, C, H, W).
    """
    return OffsetField(offsets[:, None], padding).blur(image)


def extract_frames(latent: Tensor,
                   field: OffsetField,
                   num_frames: Optional[int] = None,
                   constraint: Optional[str] = None) -> Tensor:
    """Frames of the exposure of ``latent`` along ``field`` (eq. 17), in time order.

    Args:
        latent (Tensor): (N, C, H, W), the deblurred (middle-instant) image.
        field (OffsetField): offsets (N, T, 2, H, W) of the same size; its padding is used for the warps.
        num_frames, constraint: see :func:`frame_offsets`.

    Returns:
        Tensor: (N, F, C, H, W); ``frames.mean(1) == field.blur(latent)`` when F = T.
    """
    offsets = frame_offsets(field, num_frames, constraint)
    return torch.stack([warp_backward(latent, offsets[:, step], field.padding) for step in range(offsets.shape[1])], 1)


def video_from_blurry(lq: Tensor,
                      offset_net: nn.Module,
                      deblur_net: Optional[nn.Module] = None,
                      num_frames: Optional[int] = None) -> Tuple[Tensor, OffsetField, Tensor]:
    """Deblurs ``lq`` and extracts its exposure as frames (no gradients).

    Args:
        lq (Tensor): (N, C, H, W) blurry image in [0, 1].
        offset_net (nn.Module): a ``MotionOffsetNet`` (its ``constraint`` decides whether any F is possible).
        deblur_net (nn.Module | None): any restoration network of the project (NAFNet, UFPNet, MotionAwareDMPHN,
            ...); a list output (multi-scale networks) gives its largest image. None: ``lq`` itself is warped
            (the frames then keep the blur).
        num_frames (int | None): F; None: the offset net's T.

    Returns:
        tuple: frames (N, F, C, H, W) clamped to [0, 1], the field (N, T, 2, H, W), the latent image (N, C, H, W).
    """
    constraint = getattr(offset_net, 'constraint', None)
    with torch.no_grad():
        field = offset_net(lq)
        latent = lq if deblur_net is None else final_image(deblur_net(lq))
        latent = latent.clamp(0, 1)
        frames = extract_frames(latent, field, num_frames, None if constraint == 'zero' else constraint)
    return frames.clamp(0, 1), field, latent


def write_video(frames: Tensor, folder: str, fps: float = 10.0, mp4: bool = True, prefix: str = 'frame') -> dict:
    """Writes the frames of one video as PNGs, an animated GIF and, when ``imageio-ffmpeg`` is installed, an MP4.

    Args:
        frames (Tensor): (F, 3, H, W) RGB in [0, 1].
        folder (str): output folder (created); files ``<prefix>_000.png`` ..., ``video.gif``, ``video.mp4``.
        fps (float): frames per second of the GIF / MP4. Default: 10.
        mp4 (bool): also write the MP4 when an ffmpeg writer is available. Default: True.
        prefix (str): PNG file-name prefix. Default: 'frame'.

    Returns:
        dict: ``{'frames': [paths], 'gif': path, 'mp4': path or None, 'mp4_skipped': reason or None}``.
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f'frames: expected (F, 3, H, W) RGB, got {tuple(frames.shape)}')
    import imageio.v3 as iio

    rgb = (frames.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    paths = []
    for index, image in enumerate(rgb):
        path = os.path.join(folder, f'{prefix}_{index:03d}.png')
        imwrite(path, np.ascontiguousarray(image[..., ::-1]))
        paths.append(path)
    gif = os.path.join(folder, 'video.gif')
    with atomic_path(gif) as temporary:
        iio.imwrite(temporary, rgb, extension='.gif', duration=int(round(1000 / fps)), loop=0)
    result = {'frames': paths, 'gif': gif, 'mp4': None, 'mp4_skipped': None}
    if not mp4:
        result['mp4_skipped'] = 'not asked for'
        return result
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        result['mp4_skipped'] = ('imageio-ffmpeg is not installed (pip install "basicsr_blurfield[video]" or '
                                 'pip install imageio-ffmpeg); wrote the PNG frames and the GIF only')
        return result
    import imageio.v2 as iio2

    mp4_path = os.path.join(folder, 'video.mp4')
    even = rgb[:, :rgb.shape[1] // 2 * 2, :rgb.shape[2] // 2 * 2]  # yuv420p needs even sizes
    with atomic_path(mp4_path) as temporary:
        iio2.mimwrite(temporary, list(even), format='FFMPEG', fps=fps, macro_block_size=1)
    result['mp4'] = mp4_path
    return result
