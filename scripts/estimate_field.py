"""Estimate and draw the per-pixel blur-kernel field of a photo with a UFPNet kernel estimator (Fang et al., CVPR 2023).

    python scripts/estimate_field.py IMAGE --checkpoint net_g_latest.pth -o field.png [--step 24] [--cell 19] \
        [--max-size 512] [--tta 8] [--smooth-sigma 16]
    python scripts/estimate_field.py $(python -c "import skimage, os; print(os.path.join(skimage.data.data_dir, \
        'clock_motion.png'))") --checkpoint experiments/UFPNet-quickstart/models/net_g_latest.pth -o clock_field.png

The checkpoint is a stage-II ``FlowKernelEstimator`` (e.g. the quickstart's), a stage-III ``UFPNet`` / ``MPRNetKE`` /
``MIMOUNetKE`` checkpoint (ours or the released UFPNet one), or a reference-model name (``ufpnet-ke-reference``):
only its ``kernel_extra.*`` and ``flow.*`` weights are used, and the estimator's sizes (K, width, flow blocks) are read
off them. The estimate is deterministic (no
uncertainty noise). The PNG shows the photo with the kernel of every ``step``-th pixel drawn on it; ``--save-field``
also writes the field itself (``save_field``, .npz). ``--tta T`` averages the field estimated on T flips /
transposes of the photo and ``--smooth-sigma S`` the kernels of neighbouring pixels
(:class:`~basicsr_blurfield.reference_models.AveragedEstimator`: our option, off by default).
"""
import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='photo to analyse (any format OpenCV reads)')
    parser.add_argument('--checkpoint', required=True,
                        help='kernel estimator or UFPNet checkpoint (.pth), or a reference-model name such as '
                        'ufpnet-ke-reference')
    parser.add_argument('-o', '--output', required=True, help='PNG of the kernel field drawn over the photo')
    parser.add_argument('--step', type=int, default=24, help='grid spacing of the drawn kernels, pixels')
    parser.add_argument('--cell', type=int, default=None,
                        help='side of each drawn kernel square, pixels (default step - 2; the kernel size K draws '
                        'kernels 1:1 and leaves the photo visible between them)')
    parser.add_argument('--max-size', type=int, default=512, help='longer side the photo is resized to (0: keep)')
    parser.add_argument('--save-field', default=None, help='also save the estimated field (.npz)')
    parser.add_argument('--smooth-sigma', type=float, default=0.0,
                        help='spatial Gaussian (pixels) averaging the estimated kernels over neighbours (0: off, '
                        'default; 16 measured best on the estimation benchmark, docs/estimation.md)')
    parser.add_argument('--tta', type=int, default=1, choices=(1, 2, 4, 8),
                        help='average the estimated field over 1, 2, 4 or 8 flips / transposes of the input (1: off, '
                        'default; T costs T network passes)')
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.image):
        parser.exit(2, f'error: image {args.image!r}: no such file\n')
    if args.step < 2 or args.max_size < 0:
        parser.error(f'expected --step >= 2 and --max-size >= 0, got {args.step} and {args.max_size}')
    if args.cell is not None and args.cell < 1:
        parser.error(f'expected --cell >= 1, got {args.cell}')

    import cv2
    import torch

    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.cli import ScriptError, grid_step, load_estimator_checked, read_image_rgb, size_text
    from basicsr_blurfield.fields import draw_kernel_grid, save_field
    from basicsr_blurfield.reference_models import averaged_estimator

    try:
        image = read_image_rgb(args.image)
        estimator, _ = load_estimator_checked(args.checkpoint, 'ufpnet')
        estimator = averaged_estimator(estimator, args.tta, args.smooth_sigma)
        scale = args.max_size / max(image.shape[:2]) if args.max_size else 1.0
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rgb = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            field = estimator(rgb)
        step = grid_step(args.step, field.height, field.width)
        drawing = draw_kernel_grid(rgb, field, step=step, cell=None if args.cell is None else min(args.cell, step))
        imwrite(args.output, cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
        if args.save_field:
            save_field(args.save_field, field)
    except (ScriptError, OSError, ValueError) as error:
        parser.exit(2, f'error: {error}\n')
    print(f'{args.output}: {field.kernel_size}x{field.kernel_size} kernels on a '
          f'{size_text(field.height, field.width)} image')
    return 0


if __name__ == '__main__':
    status = main()
    if status:
        sys.exit(status)
