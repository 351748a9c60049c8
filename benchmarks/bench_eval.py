"""Images per second of ``basicsr_blurfield.evaluate`` for each protocol at 1280 x 720, with 1 and 2 workers.

Run: ``python benchmarks/bench_eval.py [--num-images 4] [--workers 1 2] [--size 1280 720]``. Pairs are made from
scikit-image's bundled photos resized to the size: for GoPro/HIDE the result is a motion-blurred copy, for RealBlur a
copy moved by a small homography and scaled by a gain of 0.9 (the alignment then does real work). Timing covers
reading, pairing and scoring (the evaluate_folders call), not the Python start-up. Prints a Markdown table.
"""
import argparse
import os
import platform
import tempfile
import time

import cv2
import numpy as np
from skimage import data

from basicsr_blurfield.evaluate import PROTOCOLS, evaluate_folders

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'motorcycle', 'hubble_deep_field')
HOMOGRAPHY = np.array([[1.0, 0.002, 1.5], [-0.002, 1.0, -1.0], [1e-6, 0.0, 1.0]])


def _photo(name: str, width: int, height: int) -> np.ndarray:
    image = data.stereo_motorcycle()[0] if name == 'motorcycle' else getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return cv2.resize(image[..., :3], (width, height), interpolation=cv2.INTER_AREA)[..., ::-1]


def make_pairs(root: str, kind: str, num_images: int, width: int, height: int) -> tuple:
    """Writes ``num_images`` (result, ground truth) PNG pairs for a protocol kind; returns (pred_dir, gt_dir)."""
    pred_dir, gt_dir = os.path.join(root, kind, 'pred'), os.path.join(root, kind, 'gt')
    os.makedirs(pred_dir)
    os.makedirs(gt_dir)
    for index in range(num_images):
        gt = _photo(PHOTOS[index % len(PHOTOS)], width, height)
        if kind == 'uint8':
            pred = cv2.blur(gt, (9, 1))
        else:
            warped = cv2.warpPerspective(
                gt.astype(np.float32) / 255, HOMOGRAPHY, (width, height),
                flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REFLECT)
            pred = np.clip(np.round(warped * 0.9 * 255), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(gt_dir, f'{index:04d}.png'), gt)
        cv2.imwrite(os.path.join(pred_dir, f'{index:04d}.png'), pred)
    return pred_dir, gt_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=4)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--size', type=int, nargs=2, default=[1280, 720], metavar=('WIDTH', 'HEIGHT'))
    args = parser.parse_args()
    width, height = args.size
    print(f'# evaluate throughput, {width} x {height}, {args.num_images} images per run, {os.cpu_count()} CPUs, '
          f'{platform.processor() or platform.machine()}, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)')
    print('| protocol | workers | images | seconds | images/s | mean PSNR | mean SSIM |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    with tempfile.TemporaryDirectory() as root:
        folders = {kind: make_pairs(root, kind, args.num_images, width, height) for kind in ('uint8', 'realblur')}
        for protocol, spec in PROTOCOLS.items():
            for workers in args.workers:
                start = time.perf_counter()
                document = evaluate_folders(protocol, *folders[spec.kind], workers=workers, progress=False)
                seconds = time.perf_counter() - start
                mean = document['mean']
                print(f'| {protocol} | {workers} | {document["num_images"]} | {seconds:.2f} | '
                      f'{document["num_images"] / seconds:.2f} | {mean["psnr"]:.2f} | {mean["ssim"]:.4f} |')


if __name__ == '__main__':
    main()
