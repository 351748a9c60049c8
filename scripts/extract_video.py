"""Extract a short video from one blurry photo: deblur it, then warp the result along its exposure trajectories
(Motion-ETR eq. 17, :mod:`basicsr_blurfield.restoration.video`).

    python scripts/extract_video.py IMAGE --offsets offsets.pth [--deblur net_g.pth --deblur-arch NAFNet] \
        --frames 15 -o OUT

Writes ``OUT/frame_000.png`` ... (time order, frame 0 = start of the exposure), ``OUT/video.gif`` and, when
``imageio-ffmpeg`` is installed (``pip install "basicsr_blurfield[video]"``), ``OUT/video.mp4`` (otherwise skipped
with a message); ``--strip`` also writes the blurry photo and up to 7 frames side by side as one PNG.

Trajectories (``--offsets``): a ``MotionOffsetNet`` checkpoint (ours, ``params``, or the authors'
``latest_net_offset.pth``; its sizes are read off the weights, ``--constraint`` tells quadratic from bilinear), or a
saved ``OffsetField`` (``.npz`` from ``fields.save_field``, the image's size). Without ``--offsets`` the deblurring
network's own offset net is used (``MotionAwareDMPHN``). Any ``--frames`` works for the constrained trajectories
(linear, bilinear, quadratic): the curve is evaluated at that many instants (slow motion).

Latent image (the middle frame), one of:
- ``--deblur CKPT --deblur-arch TYPE``: a deblurring network of this project in its published configuration
  (``NAFNet``, ``NAFNetLocal``, ``UFPNet``, ``UFPNetLocal``, ``MPRNet``, ``MIMOUNet``, ``DMPHN``,
  ``MotionAwareDMPHN``, ...), our checkpoint or the authors' (converted by the arch's ``remap_official_keys``; a
  DMPHN checkpoint may be the authors' folder of six ``.pkl`` files);
- ``--deblur-opt OPT.yml``: the network described by an option file's ``network_g`` (checkpoint from ``--deblur`` or
  the file's ``path.pretrain_network_g``);
- ``--deblurred IMG``: an image already deblurred by any means;
- none of these: the blurry photo itself (the frames then keep its blur; useful to look at the trajectories).
"""
import argparse
import os
from typing import Optional


def read_rgb(path: str, max_size: int = 0, what: str = 'image'):
    """(1, 3, H, W) float in [0, 1] (``cli.read_image_rgb``'s checks); the longer side resized down to ``max_size``
    when positive."""
    import cv2
    import torch

    from basicsr_blurfield.cli import read_image_rgb

    rgb = read_image_rgb(path, what)
    scale = max_size / max(rgb.shape[:2]) if max_size else 1.0
    if scale < 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)[None].contiguous()


def load_offset_estimator(path: str, constraint: str):
    """The ``MotionOffsetNet`` of a checkpoint (ours or the authors'; sizes read off its weights), in eval mode."""
    from basicsr_blurfield.cli import ScriptError
    from basicsr_blurfield.restoration.estimators import load_network

    try:
        kind, net = load_network(path, constraint)
    except (ValueError, OSError) as error:
        raise ScriptError(f'--offsets: {error}') from None
    if kind != 'MotionOffsetNet':
        raise ScriptError(f'--offsets: {path} is a {kind} checkpoint; expected a MotionOffsetNet (trajectories)')
    return net


def build_deblur_net(args):
    """The deblurring network (an ``nn.Module``) asked for by ``--deblur`` / ``--deblur-arch`` / ``--deblur-opt``, or
    None."""
    import yaml

    from basicsr.archs import build_network
    from basicsr_blurfield.archs.checkpoints import load_published_weights
    from basicsr_blurfield.cli import ScriptError

    if args.deblur_opt:
        with open(args.deblur_opt) as handle:
            option = yaml.safe_load(handle)
        net_opt = dict(option['network_g'])
        checkpoint = args.deblur or (option.get('path') or {}).get('pretrain_network_g')
    elif args.deblur:
        if not args.deblur_arch:
            raise ScriptError('--deblur needs --deblur-arch (e.g. NAFNet, UFPNet, MotionAwareDMPHN) or --deblur-opt')
        net_opt, checkpoint = {'type': args.deblur_arch}, args.deblur
    else:
        return None
    arch = net_opt['type']
    net = build_network(net_opt)
    if checkpoint is None:
        raise ScriptError(f'no checkpoint for the {arch} deblurring network: pass --deblur CKPT')
    if os.path.isdir(checkpoint) and hasattr(net, 'load_checkpoint_folder'):
        net.load_checkpoint_folder(checkpoint)
    elif os.path.isfile(checkpoint):
        load_published_weights(net, checkpoint, arch=arch)
    else:
        raise ScriptError(f'deblurring checkpoint not found: {checkpoint!r}')
    return net.eval()


def frame_strip(frames, first, count: int = 7, gap: int = 2):
    """``first`` (the blurry photo, (3, H, W)) then up to ``count`` evenly spaced frames (F, 3, H, W), side by side
    with white gaps: (H, W', 3) uint8 BGR."""
    import numpy as np
    import torch

    picks = np.unique(np.linspace(0, frames.shape[0] - 1, min(count, frames.shape[0])).round().astype(int))
    tiles = torch.cat((first[None], frames[picks]))
    rgb = (tiles.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    white = np.full((rgb.shape[1], gap, 3), 255, np.uint8)
    tiles = [part for image in rgb for part in (image, white)][:-1]
    return np.ascontiguousarray(np.concatenate(tiles, 1)[..., ::-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='blurry photo (any format OpenCV reads)')
    parser.add_argument('--offsets', help='MotionOffsetNet checkpoint (.pth) or a saved OffsetField (.npz)')
    parser.add_argument('--constraint', default='quadratic',
                        help='zero, linear, bilinear or quadratic: constraint of a saved field, or quadratic / '
                        'bilinear for a two-endpoint offset net')
    parser.add_argument('--deblur', help='deblurring checkpoint (file, or the DMPHN folder of six .pkl files)')
    parser.add_argument('--deblur-arch', help='registered arch of --deblur, in its published configuration')
    parser.add_argument('--deblur-opt', help='option YAML whose network_g is the deblurring network')
    parser.add_argument('--deblurred', help='an already deblurred image to use as the middle frame')
    parser.add_argument('--frames', type=int, default=None, help='number of frames (default: the T of the offsets)')
    parser.add_argument('-o', '--output', required=True, help='output folder')
    parser.add_argument('--fps', type=float, default=10.0, help='frames per second of the GIF / MP4')
    parser.add_argument('--max-size', type=int, default=0, help='longer side the photo is resized to (0: keep)')
    parser.add_argument('--no-mp4', action='store_true', help='do not write the MP4 even if ffmpeg is available')
    parser.add_argument('--strip', help='also write the photo and up to 7 frames side by side to this PNG')
    return parser


def main(argv: Optional[list] = None) -> dict:
    """Command-line entry point (see the module docstring); returns what :func:`write_video` wrote. Wrong input:
    ``error: ...`` and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.deblurred and (args.deblur or args.deblur_opt):
        parser.exit(2, 'error: --deblurred and --deblur / --deblur-opt exclude each other: give one latent image '
                    'source\n')

    import torch

    from basicsr_blurfield.archs.motion_offset_arch import MOTION_CONSTRAINTS
    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.cli import ScriptError
    from basicsr_blurfield.fields import OffsetField, load_field
    from basicsr_blurfield.models.deblur_model import final_image
    from basicsr_blurfield.restoration.video import extract_frames, write_video

    if args.constraint not in MOTION_CONSTRAINTS:
        parser.error(f'--constraint: expected one of {MOTION_CONSTRAINTS}, got {args.constraint!r}')
    try:
        lq = read_rgb(args.image, args.max_size)
        latent = read_rgb(args.deblurred, args.max_size, '--deblurred') if args.deblurred else None
        if latent is not None and latent.shape != lq.shape:
            raise ScriptError(f'--deblurred: expected an image of the blurry one\'s size {tuple(lq.shape[-2:])}, '
                              f'got {tuple(latent.shape[-2:])}')
        deblur_net = build_deblur_net(args)
        constraint = args.constraint  # a network's own constraint replaces it below
        with torch.no_grad():
            if args.offsets and args.offsets.endswith('.npz'):
                field = load_field(args.offsets)
                if not isinstance(field, OffsetField) or field.offsets.shape[-2:] != lq.shape[-2:]:
                    raise ScriptError(f'{args.offsets}: expected an OffsetField of the image size '
                                      f'{tuple(lq.shape[-2:])}, got {type(field).__name__} '
                                      f'{tuple(getattr(field, "offsets", lq).shape)}')
                field = OffsetField(field.offsets.float(), field.padding)
            elif args.offsets:
                offset_net = load_offset_estimator(args.offsets, args.constraint)
                field, constraint = offset_net(lq), offset_net.constraint
            elif deblur_net is not None and hasattr(deblur_net, 'offset_net'):  # MotionAwareDMPHN's own offset net
                field, constraint = deblur_net.estimate_field(lq), deblur_net.offset_net.constraint
            else:
                raise ScriptError('no trajectories: pass --offsets (MotionOffsetNet .pth or OffsetField .npz) or a '
                                  'deblurring network with its own offset net (--deblur-arch MotionAwareDMPHN)')
            if latent is None:
                latent = lq if deblur_net is None else final_image(deblur_net(lq)).clamp(0, 1)
            frames = extract_frames(latent, field, args.frames, None if constraint == 'zero' else constraint)[0]
        result = write_video(frames, args.output, fps=args.fps, mp4=not args.no_mp4)
        if args.strip:
            imwrite(args.strip, frame_strip(frames, lq[0]))
    except (ScriptError, OSError, ValueError) as error:
        parser.exit(2, f'error: {error}\n')
    source = 'the blurry photo (no deblurring)' if deblur_net is None and not args.deblurred else 'the deblurred image'
    print(f'{args.output}: {len(result["frames"])} frames of {source} along {field.num_steps}-instant trajectories, '
          f'{result["gif"]}' + (f', {result["mp4"]}' if result['mp4'] else f'; MP4 skipped: {result["mp4_skipped"]}'))
    return result


if __name__ == '__main__':
    main()
