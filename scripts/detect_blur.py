"""Blur detection with a basis-kernel estimator (Carbajal et al. §4.2).

One image -> binary mask (white = motion-blurred):
    python scripts/detect_blur.py IMAGE --checkpoint net_g.pth -o mask.png [--score score.png] [--kernels grid.png]

A folder with ground-truth masks -> per-image average precision and mAP (CUHK protocol, masks matched by file stem):
    python scripts/detect_blur.py CUHK/image --gt CUHK/gt --checkpoint net_g.pth

The checkpoint may be ours (BasicSR layout, weights under ``params`` / ``params_ema``) or the authors' released
``TwoHeadsNetwork`` state dict (converted with ``remap_official_keys``). The network is ``BasisKernelNet`` with the
sizes read off the weights unless ``--opt`` names a training YAML whose ``network_g`` section describes it.
"""
import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', help='blurry image, or a folder of images with --gt')
    parser.add_argument('--checkpoint', required=True,
                        help='BasisKernelNet weights (ours, the official .pkl, or a reference-model name such as '
                        'basis-kernels-reference)')
    parser.add_argument('--opt', help='YAML whose network_g describes the network (default: sizes read off weights)')
    parser.add_argument('-o', '--output', help='mask PNG to write (single image)')
    parser.add_argument('--score', help='also write the soft score (0-255) as a PNG')
    parser.add_argument('--kernels', help='also write the estimated kernels drawn over the image')
    parser.add_argument('--gt', help='folder of ground-truth masks: evaluate average precision over the input folder')
    parser.add_argument('--invert-gt', action='store_true', help='ground-truth masks mark sharp pixels in white')
    parser.add_argument('--threshold', type=float, default=0.25, help='kernel L2-norm threshold (default 0.25)')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Argument and file checks that need no torch (they answer before any network is loaded)."""
    if args.gt:
        for folder, what in ((args.input, 'input folder'), (args.gt, '--gt folder')):
            if not os.path.isdir(folder):
                parser.exit(2, f'error: {what} {folder!r}: no such folder\n')
    else:
        if not args.output:
            parser.error('-o/--output is required for a single image')
        if not os.path.isfile(args.input):
            parser.exit(2, f'error: image {args.input!r}: no such file\n')
    if args.opt and not os.path.isfile(args.opt):
        parser.exit(2, f'error: --opt {args.opt!r}: no such file\n')
    if not 0 < args.threshold:
        parser.error(f'--threshold: expected a positive kernel L2-norm threshold, got {args.threshold}')


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)

    import cv2
    import numpy as np
    import torch

    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.cli import ScriptError, grid_step, load_estimator_checked, read_image_rgb
    from basicsr_blurfield.fields import draw_kernel_grid
    from basicsr_blurfield.restoration.blur_detection import blur_score, evaluate_blur_detection

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        image = None if args.gt else read_image_rgb(args.input)
        net, _ = load_estimator_checked(args.checkpoint, 'basis', args.opt, device)
        if args.gt:
            result = evaluate_blur_detection(args.input, args.gt, net, args.threshold, args.invert_gt, device)
            for stem, value in sorted(result['ap'].items()):
                print(f'{stem}\t{value:.4f}')
            print(f'mAP over {len(result["ap"])} images: {result["map"]:.4f}')
            return 0
        rgb = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255)[None].to(device)
        with torch.no_grad():
            field = net(rgb)
            score = blur_score(field, args.threshold)[0, 0].cpu().numpy()
        imwrite(args.output, ((score >= 0.5) * 255).astype(np.uint8))
        if args.score:
            imwrite(args.score, np.round(score * 255).astype(np.uint8))
        if args.kernels:
            step = grid_step(max(16, min(field.height, field.width) // 8), field.height, field.width)
            grid = draw_kernel_grid(rgb[0].cpu(), field.to('cpu'), step=step)
            imwrite(args.kernels, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    except (ScriptError, OSError, ValueError) as error:
        parser.exit(2, f'error: {error}\n')
    print(f'{args.output}: {100 * float((score >= 0.5).mean()):.1f}% of the pixels marked as blurred')
    return 0


if __name__ == '__main__':
    status = main()
    if status:
        sys.exit(status)
