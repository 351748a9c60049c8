"""Blur detection with a basis-kernel estimator (Carbajal et al. §4.2).

One image -> binary mask (white = motion-blurred):
    python scripts/detect_blur.py IMAGE --checkpoint net_g.pth -o mask.png [--score score.png] [--kernels grid.png]

A folder with ground-truth masks -> per-image average precision and mAP (CUHK protocol, masks matched by file stem):
    python scripts/detect_blur.py CUHK/image --gt CUHK/gt --checkpoint net_g.pth

The checkpoint may be ours (BasicSR layout, weights under ``params`` / ``params_ema``) or the authors' released
``TwoHeadsNetwork`` state dict (converted with ``remap_official_keys``). The network is ``BasisKernelNet`` with the
published configuration unless ``--opt`` names a training YAML whose ``network_g`` section describes it.
"""
import argparse

import cv2
import numpy as np
import torch
import yaml

import basicsr_blurfield  # noqa: F401  (applies compat, registers the archs)
from basicsr.archs import build_network
from basicsr_blurfield.archs.basis_kernel_arch import remap_official_keys
from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.fields import draw_kernel_grid
from basicsr_blurfield.restoration.blur_detection import blur_score, evaluate_blur_detection


def load_estimator(checkpoint: str, opt_path: str = None, device: str = 'cpu') -> torch.nn.Module:
    """Builds the estimator and loads ``checkpoint`` (ours or the official one), in eval mode."""
    net_opt = {'type': 'BasisKernelNet'}
    if opt_path:
        with open(opt_path) as handle:
            net_opt = yaml.safe_load(handle)['network_g']
    net = build_network(dict(net_opt))
    checkpoint_dict = torch.load(checkpoint, map_location='cpu', weights_only=True)
    state = unwrap_state_dict(checkpoint_dict, 'params_ema' if 'params_ema' in checkpoint_dict else None)
    if any(name.startswith('inc_rgb.') for name in state):
        state = remap_official_keys(state)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def read_rgb(path: str) -> torch.Tensor:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f'cannot read image {path!r}')
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))).float().div(255)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', help='blurry image, or a folder of images with --gt')
    parser.add_argument('--checkpoint', required=True, help='BasisKernelNet weights (ours or the official .pkl)')
    parser.add_argument('--opt', help='YAML whose network_g describes the network (default: published B=25, K=33)')
    parser.add_argument('-o', '--output', help='mask PNG to write (single image)')
    parser.add_argument('--score', help='also write the soft score (0-255) as a PNG')
    parser.add_argument('--kernels', help='also write the estimated kernels drawn over the image')
    parser.add_argument('--gt', help='folder of ground-truth masks: evaluate average precision over the input folder')
    parser.add_argument('--invert-gt', action='store_true', help='ground-truth masks mark sharp pixels in white')
    parser.add_argument('--threshold', type=float, default=0.25, help='kernel L2-norm threshold (default 0.25)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()

    net = load_estimator(args.checkpoint, args.opt, args.device)
    if args.gt:
        result = evaluate_blur_detection(args.input, args.gt, net, args.threshold, args.invert_gt, args.device)
        for stem, value in sorted(result['ap'].items()):
            print(f'{stem}\t{value:.4f}')
        print(f'mAP over {len(result["ap"])} images: {result["map"]:.4f}')
        return
    if not args.output:
        parser.error('-o/--output is required for a single image')
    image = read_rgb(args.input).to(args.device)
    with torch.no_grad():
        field = net(image)
        score = blur_score(field, args.threshold)[0, 0].cpu().numpy()
    imwrite(args.output, ((score >= 0.5) * 255).astype(np.uint8))
    if args.score:
        imwrite(args.score, np.round(score * 255).astype(np.uint8))
    if args.kernels:
        grid = draw_kernel_grid(image[0].cpu(), field.to('cpu'), step=max(16, min(field.height, field.width) // 8))
        imwrite(args.kernels, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f'{args.output}: {100 * float((score >= 0.5).mean()):.1f}% of the pixels marked as blurred')


if __name__ == '__main__':
    main()
