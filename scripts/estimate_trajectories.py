"""Estimate and draw the exposure trajectories of a blurry photo with a Motion-ETR offset network (Zhang et al.).

    python scripts/estimate_trajectories.py IMAGE --checkpoint net_g_latest.pth -o trajectories.png \
        [--num-steps 15] [--constraint quadratic] [--step 16] [--scale 1] [--max-size 512] [--save-field f.npz]

The checkpoint is one of ours (a BasicSR file of ``MotionOffsetNet``, weights under ``params_ema`` or ``params``) or
the authors' released ``OffsetNet_quad`` file (``latest_net_offset.pth``, converted by ``remap_official_keys``). The
network's width and input channels are read off the weights, the constraint from the output width (2 channels:
linear; 4: quadratic, or bilinear with ``--constraint bilinear``; 2 T: zero, free offsets of T instants).
Constrained trajectories can be drawn at any odd ``--num-steps`` from the same weights; free offsets only at the T
they were trained with. Each trajectory is drawn from blue (first instant) to red (last instant) through a white dot
(the pixel, the sharp middle instant), so the colour shows the direction of motion in time. ``--save-field`` also
writes the :class:`OffsetField` itself (``save_field``, .npz; ``load_field`` reads it back).
"""
import argparse
import os
from typing import Optional


def load_offset_net(checkpoint: str, constraint: Optional[str] = None):
    """A MotionOffsetNet with the sizes and weights of ``checkpoint`` (ours or the authors'), in eval mode, through
    :func:`basicsr_blurfield.restoration.estimators.load_network`.

    Args:
        checkpoint (str): path of a ``.pth`` file.
        constraint (str | None): one of ``zero, linear, bilinear, quadratic``; None infers it from the output width
            (4 channels are taken as quadratic).

    Raises:
        KeyError: the file holds another network's weights.
        ValueError: an unknown constraint, or one that does not match the output width.
    """
    from basicsr_blurfield.restoration.estimators import NotAnEstimatorError, load_network

    try:
        kind, net = load_network(checkpoint, constraint)
    except NotAnEstimatorError:
        kind = None
    if kind != 'MotionOffsetNet':
        raise KeyError(f"{checkpoint}: expected a MotionOffsetNet checkpoint (enc1.conv.weight, head.weight) or the "
                       f"authors' OffsetNet_quad (conv_1.1.weight, conv_out_0.weight); found {kind or 'another'} "
                       'network\'s weights')
    return net


def estimate(net, image_rgb, num_steps: Optional[int] = None) -> tuple:
    """Runs a ``MotionOffsetNet`` on an image (H, W, 3) uint8 RGB. Returns (rgb tensor (1, 3, H, W), OffsetField)."""
    import torch

    rgb = torch.from_numpy(image_rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return rgb, net(rgb, num_steps=num_steps)


def main(argv: Optional[list] = None):
    """Command-line entry point; returns the estimated OffsetField. Wrong input: ``error: ...`` and exit status 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='blurry photo (any format OpenCV reads)')
    parser.add_argument('--checkpoint', required=True, help='MotionOffsetNet or authors\' OffsetNet_quad .pth')
    parser.add_argument('-o', '--output', required=True, help='PNG of the trajectories drawn over the photo')
    parser.add_argument('--num-steps', type=int, default=None, help='T, odd >= 3 (default: 15, or the trained T)')
    parser.add_argument(
        '--constraint',
        default=None,
        help='zero, linear, bilinear or quadratic (default: inferred from the checkpoint; a wrong name is refused '
        'with the list of MotionOffsetNet constraints)')
    parser.add_argument('--step', type=int, default=16, help='grid spacing of the drawn trajectories, pixels')
    parser.add_argument('--scale', type=float, default=1.0, help='drawn length magnification (1: true length)')
    parser.add_argument('--max-size', type=int, default=512, help='longer side the photo is resized to (0: keep)')
    parser.add_argument('--save-field', default=None, help='also save the estimated field (.npz)')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.image):
        parser.exit(2, f'error: cannot read image {args.image!r}: no such file\n')

    import cv2

    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.cli import ScriptError, read_image_rgb, size_text
    from basicsr_blurfield.fields import draw_trajectories, save_field

    try:
        image = read_image_rgb(args.image)
        factor = args.max_size / max(image.shape[:2]) if args.max_size else 1.0
        if factor < 1:
            image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        net = load_offset_net(args.checkpoint, args.constraint)
        rgb, field = estimate(net, image, args.num_steps)
        drawing = draw_trajectories(rgb, field, step=args.step, scale=args.scale)
        imwrite(args.output, cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
        if args.save_field:
            save_field(args.save_field, field)
    except KeyError as error:
        parser.exit(2, f'error: {error.args[0]}\n')
    except (ScriptError, OSError, ValueError) as error:
        parser.exit(2, f'error: {error}\n')
    length = (field.offsets[:, -1] - field.offsets[:, 0]).norm(dim=1)
    print(f'{args.output}: {net.constraint} trajectories of {field.num_steps} instants on a '
          f'{size_text(field.height, field.width)} image (blue first instant -> red last); first-to-last length mean '
          f'{length.mean():.2f} px, max {length.max():.2f} px')
    return field


if __name__ == '__main__':
    main()
