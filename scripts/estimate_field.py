"""Estimate and draw the per-pixel blur-kernel field of a photo with a UFPNet kernel estimator (Fang et al., CVPR 2023).

    python scripts/estimate_field.py IMAGE --checkpoint net_g_latest.pth -o field.png [--step 24] [--max-size 512]
    python scripts/estimate_field.py $(python -c "import skimage, os; print(os.path.join(skimage.data.data_dir, \
        'clock_motion.png'))") --checkpoint experiments/UFPNet-quickstart/models/net_g_latest.pth -o clock_field.png

The checkpoint is a stage-II ``FlowKernelEstimator`` (e.g. the quickstart's), a stage-III ``UFPNet`` / ``MPRNetKE`` /
``MIMOUNetKE`` checkpoint (ours or the released UFPNet one): only its ``kernel_extra.*`` and ``flow.*`` weights are
used, and the estimator's sizes (K, width, flow blocks) are read off them. The estimate is deterministic (no
uncertainty noise). The PNG shows the photo with the kernel of every ``step``-th pixel drawn on it; ``--save-field``
also writes the field itself (``save_field``, .npz).
"""
import argparse

import cv2
import torch

import basicsr_blurfield  # noqa: F401  (applies compat, registers the archs)
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
from basicsr_blurfield.archs.ufpnet_arch import remap_official_keys
from basicsr_blurfield.fields import draw_kernel_grid, save_field


def load_estimator(checkpoint: str) -> FlowKernelEstimator:
    """A FlowKernelEstimator with the sizes and weights of any UFPNet-family checkpoint, in eval mode."""
    state = remap_official_keys(torch.load(checkpoint, map_location='cpu', weights_only=True))  # unwraps too
    state = {key: value for key, value in state.items() if key.startswith(('kernel_extra.', 'flow.'))}
    if 'flow.kernel_size' not in state:
        raise KeyError(f'{checkpoint}: expected a UFPNet kernel estimator (kernel_extra.*, flow.* weights), found '
                       f'none among {len(state)} keys')
    head = state['kernel_extra.Encoding_Block1.Conv_head.weight']
    estimator = FlowKernelEstimator(img_channel=head.shape[1], kernel_size=int(state['flow.kernel_size']),
                                    num_feat=head.shape[0],
                                    flow_num_block=sum(1 for key in state if key.endswith('.mask')),
                                    flow_hidden_size=state['flow.net.0.s_net.0.weight'].shape[0])
    estimator.load_state_dict(state)
    return estimator.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='photo to analyse (any format OpenCV reads)')
    parser.add_argument('--checkpoint', required=True, help='kernel estimator or UFPNet checkpoint (.pth)')
    parser.add_argument('-o', '--output', required=True, help='PNG of the kernel field drawn over the photo')
    parser.add_argument('--step', type=int, default=24, help='grid spacing of the drawn kernels, pixels')
    parser.add_argument('--max-size', type=int, default=512, help='longer side the photo is resized to (0: keep)')
    parser.add_argument('--save-field', default=None, help='also save the estimated field (.npz)')
    args = parser.parse_args()

    image = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'cannot read image {args.image!r}')
    scale = args.max_size / max(image.shape[:2]) if args.max_size else 1.0
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 255
    estimator = load_estimator(args.checkpoint)
    with torch.no_grad():
        field = estimator(rgb)
    drawing = draw_kernel_grid(rgb, field, step=args.step)
    imwrite(args.output, cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
    if args.save_field:
        save_field(args.save_field, field)
    print(f'{args.output}: {field.kernel_size}x{field.kernel_size} kernels on a {field.height}x{field.width} image')


if __name__ == '__main__':
    main()
