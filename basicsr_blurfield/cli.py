"""Input checks shared by the command-line scripts: one error style (``error: ...`` on stderr, exit status 2).

Each script parses its arguments and checks that its input files exist before importing torch (so ``--help`` and
wrong paths answer at once), then uses these helpers, which turn a corrupt image, an empty or truncated checkpoint,
or a checkpoint of the wrong kind of model into a :class:`ScriptError` with a message saying what is wrong and what to
do. Sizes are written ``WxH`` (width x height, as image viewers print them) by :func:`size_text`.
"""
import os
from typing import Optional, Tuple

__all__ = [
    'ScriptError', 'KIND_NAMES', 'size_text', 'read_image_rgb', 'rgb_tensor', 'load_estimator_checked', 'grid_step',
    'add_averaging_arguments', 'averaging_label'
]

KIND_NAMES = {
    'ufpnet': ('a UFPNet-family kernel estimator (FlowKernelEstimator, UFPNet, MPRNetKE, MIMOUNetKE)',
               'scripts/estimate_field.py'),
    'basis': ('a basis-kernel estimator (BasisKernelNet or the published TwoHeadsNetwork)', 'scripts/detect_blur.py'),
    'offsets': ('a motion-offset estimator (MotionOffsetNet)', 'scripts/estimate_trajectories.py'),
}
MIN_IMAGE_SIDE = 8


class ScriptError(Exception):
    """A user-facing error of a script: printed as ``error: <message>``, exit status 2."""


def size_text(height: int, width: int) -> str:
    """``'1280x720'`` for a 720-row, 1280-column image: width x height, the one size format of the scripts."""
    return f'{width}x{height}'


def read_image_rgb(path: str, what: str = 'image', min_side: int = MIN_IMAGE_SIDE, any_depth: bool = False):
    """Reads an image file as (H, W, 3) uint8 RGB (uint16 for a 16-bit file with ``any_depth``).

    Raises:
        ScriptError: the file is missing, empty, not an image OpenCV decodes (or truncated), or smaller than
            ``min_side`` pixels on a side.
    """
    import cv2

    if not os.path.isfile(path):
        raise ScriptError(f'{what} {path!r}: no such file')
    size = os.path.getsize(path)
    if size == 0:
        raise ScriptError(f'{what} {path!r} is empty (0 bytes)')
    bgr = cv2.imread(path, cv2.IMREAD_COLOR | (cv2.IMREAD_ANYDEPTH if any_depth else 0))
    if bgr is None:
        raise ScriptError(f'{what} {path!r} ({size} bytes) cannot be decoded: not an image format OpenCV reads, or '
                          'a truncated / corrupt file')
    height, width = bgr.shape[:2]
    if min(height, width) < min_side:
        raise ScriptError(f'{what} {path!r} is {size_text(height, width)}; expected at least {min_side} pixels on '
                          'each side')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_tensor(rgb):
    """(H, W, 3) uint8 or uint16 RGB -> (1, 3, H, W) float32 in [0, 1] (16-bit values keep their precision)."""
    import numpy as np
    import torch

    scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(scale)


def grid_step(step: int, height: int, width: int) -> int:
    """The spacing of the drawn kernel grid: ``step``, made small enough that every image gets kernels drawn.

    Raises:
        ScriptError: ``step`` below 2.
    """
    if step < 2:
        raise ScriptError(f'--step: expected at least 2 pixels between drawn kernels, got {step}')
    return max(2, min(step, height, width))


def add_averaging_arguments(parser, scope: str = '') -> None:
    """Adds ``--tta`` and ``--smooth-sigma``, the options of
    :class:`~basicsr_blurfield.reference_models.AveragedEstimator`, to ``parser``; ``scope`` prefixes their help."""
    parser.add_argument(
        '--tta',
        type=int,
        default=1,
        choices=(1, 2, 4, 8),
        help=f'{scope}average the estimated field over 1, 2, 4 or 8 flips / transposes of the input (1: off, default; '
        'T costs T network passes)')
    parser.add_argument(
        '--smooth-sigma',
        type=float,
        default=0.0,
        help=f'{scope}then average the kernels over neighbours, spatial Gaussian in pixels (0: off, default; 16 '
        'measured best on the estimation benchmark, docs/estimation.md)')


def averaging_label(tta: int, smooth_sigma: float) -> str:
    """``', 8 transforms, smoothed sigma 16'`` (empty when nothing is averaged): appended to an estimator's name."""
    return (f', {tta} transforms' if tta > 1 else '') + (f', smoothed sigma {smooth_sigma:g}' if smooth_sigma else '')


def load_estimator_checked(name_or_path: str, kind: str, opt_path: Optional[str] = None,
                           device: str = 'cpu') -> Tuple[object, str]:
    """:func:`basicsr_blurfield.restoration.estimators.load_network` for a script that needs estimators of ``kind``.

    Args:
        name_or_path (str): a checkpoint path or a reference-model name.
        kind (str): 'ufpnet', 'basis' or 'offsets'.
        opt_path (str, optional): training YAML whose ``network_g`` builds the network.
        device (str): where to put the network.

    Returns:
        tuple: (network in eval mode, checkpoint path).

    Raises:
        ScriptError: no such file or name, empty / truncated file, a checkpoint of another kind of model (the message
            names it and the script that takes it), or weights that do not fit the network.
    """
    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
    from basicsr_blurfield.reference_models import NETWORK_OF_KIND, resolve_checkpoint
    from basicsr_blurfield.restoration.estimators import (NotAnEstimatorError, identify_checkpoint,
                                                          network_from_checkpoint, read_checkpoint)

    try:
        path = resolve_checkpoint(name_or_path)
        checkpoint = read_checkpoint(path)
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise ScriptError(str(error.args[0] if error.args else error)) from None
    state = unwrap_state_dict(checkpoint, 'params_ema' if 'params_ema' in checkpoint else None)
    try:
        network = identify_checkpoint(state)
    except NotAnEstimatorError:
        network = None
    found = {value: key for key, value in NETWORK_OF_KIND.items()}.get(network)
    if found is None:
        raise ScriptError(f'checkpoint {path!r} is not a blur-field estimator ({len(state)} weights, e.g. '
                          f'{sorted(state)[:3]}); this script needs {KIND_NAMES[kind][0]}')
    if found != kind:
        raise ScriptError(f'checkpoint {path!r} holds {KIND_NAMES[found][0]}; this script needs '
                          f'{KIND_NAMES[kind][0]} (use {KIND_NAMES[found][1]} for that checkpoint)')
    try:
        _, net = network_from_checkpoint(checkpoint, path, device=device, opt_path=opt_path)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:300]
        raise ScriptError(f'checkpoint {path!r} does not fit the network ({first_line}); pass the training options '
                          'with --opt when the network is not the default configuration') from None
    return net, path
