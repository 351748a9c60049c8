"""Public blur-field estimation benchmark: re-blur PSNR and per-pixel kernel L1 against one-kernel baselines.

Usage::

    python -m basicsr_blurfield.benchmark_estimation --estimator CKPT_OR_NAME [--kind ufpnet|basis|offsets] \\
        [--opt TRAIN.yml] [--data DIR] [--count 4] [--json OUT.json] [--markdown OUT.md] [--png OUT.png] [--clock]
    python -m basicsr_blurfield.benchmark_estimation --baselines-only --json baselines.json

Data (fixed and seeded): crops of scikit-image photos that no training option uses (:data:`HELD_OUT_PHOTOS`;
training without ``dataroot_gt`` uses :data:`~basicsr_blurfield.data.synthetic_blur_dataset.BUNDLED_PHOTOS`),
written by ``scripts/make_synthetic_blur.py`` into ``DIR/<subset>/`` on first use: one subset per field type
(``region``: region-wise camera shake, Carbajal et al. §3.3; ``smooth``: camera rotation / zoom; ``linear``: linear
motion flow) and noise level (sigma 0 and 0.01), ``count`` items of ``size`` x ``size`` each (defaults 4 and 256:
24 images), K = 19. Noise-free and noisy subsets of one field type share their seed, so they hold the same crops and
fields.

Scores per subset and method (mean over its images):
- ``reblur_psnr``: PSNR (dB) of ``field.blur(sharp)`` against the blurry image (eq. 4 of Fang et al.; eq. 3 of
  Carbajal et al.);
- ``kernel_l1``: mean over all pixels of ``sum_ij |k_p[i, j] - k_p^GT[i, j]|`` (in [0, 2]; kernels of different
  sizes compared on the larger grid);
- ``kernel_l1_textured``: the same over the pixels where blur is observable: the mean squared gradient of the grey
  sharp image over the K x K window around the pixel is at least ``TEXTURE_THRESHOLD**2``
  (:func:`~basicsr_blurfield.losses.kernel_loss.textured_mask`; a flat window re-blurs the same under any kernel, so
  no estimator can be judged there); the share of such pixels is reported too.

Baselines, computed on the same images: ``identity`` (delta kernel), ``dataset_mean`` (the mean ground-truth kernel
over every pixel of every benchmark image: what a collapsed estimator outputs), ``image_mean_oracle`` (per image, the
mean of its ground-truth kernels) and ``best_single_kernel_oracle`` (per image, the kernel on the simplex minimising
``||k * sharp - blurry||^2``, by projected gradient on the normal equations: the best any uniform model can do).

Outputs: a JSON (``--json``), a Markdown table (``--markdown``, also printed) and a PNG grid of estimated vs true
fields (``--png``). Written through :mod:`basicsr_blurfield.atomic`. ``--clock`` adds the kernel shapes on the real
motion-blurred ``clock_motion.png`` of scikit-image (:func:`clock_motion_report`: principal axis of each kernel's
second moments inside the clock and in the flat background). ``--smooth-sigma S`` scores the estimator's fields
averaged over neighbouring pixels and ``--tta T`` over T flips / transposes of the input
(:class:`~basicsr_blurfield.reference_models.AveragedEstimator`).
"""
import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from basicsr_blurfield.atomic import atomic_path, imwrite, write_text
from basicsr_blurfield.cli import ScriptError, add_averaging_arguments, averaging_label, read_image_rgb, rgb_tensor
from basicsr_blurfield.data.synthetic_blur_dataset import HELD_OUT_PHOTOS
from basicsr_blurfield.fields import BasisField, load_field
from basicsr_blurfield.losses.kernel_loss import KernelLoss, constant_field, mean_kernel, textured_mask
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.models.kernel_estimation_model import draw_field_comparison

__all__ = [
    'BASELINES', 'FIELD_TYPES', 'HELD_OUT_PHOTOS', 'NOISE_LEVELS', 'TEXTURE_THRESHOLD', 'best_single_kernel',
    'clock_motion_report', 'format_markdown', 'kernel_moments', 'prepare_benchmark', 'run_benchmark',
    'score_field'
]

RESULT_FORMAT = 'basicsr_blurfield.benchmark_estimation/1'
FIELD_TYPES = ('region', 'smooth', 'linear')
NOISE_LEVELS = (0.0, 0.01)
SUBSET_SEEDS = {'region': 2101, 'smooth': 2102, 'linear': 2103}
BASELINES = ('identity', 'dataset_mean', 'image_mean_oracle', 'best_single_kernel_oracle')
TEXTURE_THRESHOLD = 0.02
KERNEL_SIZE = 19


def subset_name(field_type: str, noise: float) -> str:
    """Folder / table name of a subset, e.g. ``linear_noise0.01``."""
    return f'{field_type}_noise{noise:g}'


def held_out_photo_paths() -> List[str]:
    """Paths of the held-out scikit-image photos (offline, bundled with the package)."""
    import skimage.data

    return [os.path.join(skimage.data.data_dir, name) for name in HELD_OUT_PHOTOS]


def _make_synthetic_blur_module():
    """``scripts/make_synthetic_blur.py`` of this checkout, loaded as a module (the benchmark's data writer)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts',
                        'make_synthetic_blur.py')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} not found: the benchmark writes its data with scripts/make_synthetic_blur.py; '
                                'run it from a source checkout (pip install -e .)')
    spec = importlib.util.spec_from_file_location('make_synthetic_blur', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_benchmark(root: str, count: int = 4, size: int = 256, quiet: bool = True) -> Dict[str, str]:
    """Writes (or reuses) the benchmark data under ``root``; returns ``{subset name: folder}``.

    Args:
        root (str): data folder; ``root/sources`` receives copies of the held-out photos.
        count (int): items per subset. Default: 4.
        size (int): crop side, >= 2 K. Default: 256.
        quiet (bool): hide the writer's progress bars.
    """
    if count < 1 or size < 2 * KERNEL_SIZE:
        raise ValueError(f'expected count >= 1 and size >= {2 * KERNEL_SIZE}, got count={count}, size={size}')
    sources = os.path.join(root, 'sources')
    os.makedirs(sources, exist_ok=True)
    for path in held_out_photo_paths():
        target = os.path.join(sources, os.path.basename(path))
        if not os.path.isfile(target):
            shutil.copyfile(path, target)
    writer = _make_synthetic_blur_module()
    folders = {}
    for field_type in FIELD_TYPES:
        for noise in NOISE_LEVELS:
            name = subset_name(field_type, noise)
            folder = os.path.join(root, f'{name}_n{count}_s{size}')
            args = [
                '--sharp', sources, '--out', folder, '--count',
                str(count), '--seed',
                str(SUBSET_SEEDS[field_type]), '--size',
                str(size), '--kernel-size',
                str(KERNEL_SIZE), '--field-types', f'{field_type}=1', '--basis-grid', '4', '--noise',
                str(noise)
            ] + (['--quiet'] if quiet else [])
            if writer.main(args) != 0:
                raise RuntimeError(f'make_synthetic_blur.py failed for subset {name} (arguments {args})')
            folders[name] = folder
    return folders


def _read_rgb(path: str) -> torch.Tensor:
    """A benchmark image as (1, 3, H, W) float32 RGB in [0, 1] (:func:`basicsr_blurfield.cli.read_image_rgb`)."""
    return rgb_tensor(read_image_rgb(path, 'benchmark image'))


def cached_best_single_kernel(folder: str, name: str, sharp: torch.Tensor, blurry: torch.Tensor) -> torch.Tensor:
    """:func:`best_single_kernel` of item ``name``, stored once as ``folder/oracle/NAME.npy`` (it is the slow part)."""
    path = os.path.join(folder, 'oracle', f'{name}.npy')
    if os.path.isfile(path):
        return torch.from_numpy(np.load(path))
    kernel = best_single_kernel(sharp, blurry)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as temporary:
        with open(temporary, 'wb') as handle:
            np.save(handle, kernel.numpy())
    return kernel


def load_items(folder: str) -> Iterator[Tuple[str, torch.Tensor, torch.Tensor, BasisField]]:
    """Items of a subset folder: (name, sharp (1, 3, H, W), blurry (1, 3, H, W), ground-truth field)."""
    with open(os.path.join(folder, 'manifest.json')) as handle:
        manifest = json.load(handle)
    for record in manifest['items']:
        name = record['name']
        yield (name, _read_rgb(os.path.join(folder, 'sharp', f'{name}.png')),
               _read_rgb(os.path.join(folder, 'blur', f'{name}.png')),
               load_field(os.path.join(folder, 'field', f'{name}.npz')))


def best_single_kernel(sharp: torch.Tensor, blurry: torch.Tensor, kernel_size: int = KERNEL_SIZE) -> torch.Tensor:
    """Least-squares uniform kernel on the simplex: ``argmin_k ||k * sharp - blurry||^2``, k >= 0, sum k = 1.

    Gather form with replicate padding, as the fields' ``blur``. The normal equations ``G = A^T A`` and ``b = A^T y``
    are accumulated over row tiles of the unfolded sharp image; then, with ``G = L L^T``, non-negative least squares
    (``scipy.optimize.nnls``) solves ``||L^T k - L^-1 b||^2`` with the sum constraint as a heavily weighted extra row.

    Args:
        sharp (Tensor): (1, C, H, W).
        blurry (Tensor): (1, C, H, W).
        kernel_size (int): K, odd.

    Returns:
        Tensor: (K, K) float32, non-negative, sums to 1.
    """
    from scipy.optimize import nnls

    radius = kernel_size // 2
    padded = F.pad(sharp.double(), (radius, ) * 4, mode='replicate')
    target = blurry.double()
    taps = kernel_size * kernel_size
    gram = torch.zeros(taps, taps, dtype=torch.float64)
    rhs = torch.zeros(taps, dtype=torch.float64)
    rows = max(1, 4096 // sharp.shape[-1])
    for top in range(0, sharp.shape[2], rows):
        bottom = min(top + rows, sharp.shape[2])
        patches = F.unfold(padded[:, :, top:bottom + 2 * radius], kernel_size)  # (1, C*K*K, rows*W)
        patches = patches.view(sharp.shape[1], taps, -1).transpose(1, 2).reshape(-1, taps)
        gram += patches.T @ patches
        rhs += patches.T @ target[:, :, top:bottom].permute(1, 2, 3, 0).reshape(-1)
    gram = gram + 1e-10 * float(gram.diagonal().mean()) * torch.eye(taps, dtype=torch.float64)
    lower = torch.linalg.cholesky(gram)
    projected = torch.linalg.solve_triangular(lower, rhs[:, None], upper=False)[:, 0]
    weight = 1e3 * float(gram.diagonal().mean())**0.5
    matrix = torch.cat([lower.T, torch.full((1, taps), weight, dtype=torch.float64)]).numpy()
    vector = torch.cat([projected, torch.tensor([weight], dtype=torch.float64)]).numpy()
    kernel = torch.from_numpy(nnls(matrix, vector, maxiter=50 * taps)[0]).clamp_min(0)
    return (kernel / kernel.sum()).float().view(kernel_size, kernel_size)


def score_field(field, sharp: torch.Tensor, blurry: torch.Tensor, gt_field, mask: torch.Tensor) -> Dict[str, float]:
    """Re-blur PSNR and kernel L1 (all / textured pixels) of one estimated field on one image.

    Args:
        field: estimated blur field, batch 1, H x W.
        sharp (Tensor): (1, C, H, W).
        blurry (Tensor): (1, C, H, W).
        gt_field: ground-truth field, batch 1, H x W.
        mask (Tensor): (1, 1, H, W) bool, the textured pixels.

    Returns:
        dict: ``reblur_psnr`` (dB), ``kernel_l1``, ``kernel_l1_textured`` (NaN when no pixel is textured).
    """
    with torch.no_grad():
        distance = KernelLoss(p=1, reduction='none', tile_size=8192)(field, gt_field)
        textured = distance[mask]
        return {
            'reblur_psnr': reblur_psnr(field.blur(sharp), blurry),
            'kernel_l1': float(distance.mean()),
            'kernel_l1_textured': float(textured.mean()) if textured.numel() else float('nan')
        }


def _mean_scores(rows: List[Dict[str, float]]) -> Dict[str, float]:
    keys = rows[0].keys()
    return {key: float(np.nanmean([row[key] for row in rows])) for key in keys}


def run_benchmark(estimate=None,
                  name: str = 'estimator',
                  root: str = 'datasets/estimation_benchmark',
                  count: int = 4,
                  size: int = 256,
                  subsets: Optional[List[str]] = None,
                  png: Optional[str] = None,
                  progress: bool = True) -> dict:
    """Runs the benchmark for one estimator (or the baselines alone).

    Args:
        estimate (callable, optional): blurry (1, 3, H, W) -> blur field; None scores the baselines only.
        name (str): the estimator's row name.
        root (str): data folder (written on first use, see :func:`prepare_benchmark`).
        count (int): items per subset.
        size (int): crop side.
        subsets (list[str], optional): subset names to run (default all six).
        png (str, optional): where to write the estimated-vs-true field grid (first item of each noise-free subset).
        progress (bool): show a progress bar.

    Returns:
        dict: ``format``, ``settings``, ``results`` ``{subset: {method: scores}}``, ``textured_fraction``
        ``{subset: share}``, ``seconds``.
    """
    start = time.time()
    folders = prepare_benchmark(root, count, size)
    if subsets is not None:
        unknown = sorted(set(subsets) - set(folders))
        if unknown:
            raise ValueError(f'subsets: expected names among {sorted(folders)}, got {unknown}')
        folders = {key: value for key, value in folders.items() if key in subsets}
    items = {key: [(folder, ) + item for item in load_items(folder)] for key, folder in folders.items()}
    gt_means = [mean_kernel(field) for rows in items.values() for *_, field in rows]
    dataset_mean = torch.stack(gt_means).mean(0)
    dataset_mean = dataset_mean / dataset_mean.sum()
    methods = list(BASELINES) + ([name] if estimate is not None else [])
    total = sum(len(rows) for rows in items.values())
    bar = tqdm(total=total, desc='estimation benchmark', unit='image', disable=not progress)
    results, textured, panels = {}, {}, []
    for subset, rows in items.items():
        scores = {method: [] for method in methods}
        shares = []
        for index, (folder, item_name, sharp, blurry, gt_field) in enumerate(rows):
            height, width = sharp.shape[-2:]
            mask = textured_mask(sharp, KERNEL_SIZE, TEXTURE_THRESHOLD)
            shares.append(float(mask.float().mean()))
            fields = {
                'identity': constant_field(_delta(KERNEL_SIZE), height, width),
                'dataset_mean': constant_field(dataset_mean, height, width),
                'image_mean_oracle': constant_field(mean_kernel(gt_field), height, width),
                'best_single_kernel_oracle': constant_field(cached_best_single_kernel(folder, item_name, sharp, blurry),
                                                            height, width),
            }
            if estimate is not None:
                with torch.no_grad():
                    fields[name] = estimate(blurry)
            for method in methods:
                scores[method].append(score_field(fields[method], sharp, blurry, gt_field, mask))
            if png is not None and index == 0 and subset.endswith('_noise0'):
                shown = name if estimate is not None else 'best_single_kernel_oracle'
                label = f'{subset}: ' + ('estimate' if estimate is not None else 'best single kernel')
                panels.append(draw_field_comparison(blurry, fields[shown], gt_field, step=32, cell=21,
                                                    labels=(label, 'ground truth')))
            bar.update(1)
        results[subset] = {method: _mean_scores(rows_) for method, rows_ in scores.items()}
        textured[subset] = float(np.mean(shares))
    bar.close()
    if png is not None and panels:
        imwrite(png, cv2.cvtColor(np.concatenate(panels, 0), cv2.COLOR_RGB2BGR))
    return {
        'format': RESULT_FORMAT,
        'settings': {
            'held_out_photos': list(HELD_OUT_PHOTOS), 'count': count, 'size': size, 'kernel_size': KERNEL_SIZE,
            'seeds': SUBSET_SEEDS, 'noise_levels': list(NOISE_LEVELS), 'texture_threshold': TEXTURE_THRESHOLD,
            'estimator': name if estimate is not None else None, 'torch': torch.__version__,
            'machine': platform.platform()
        },
        'results': results,
        'textured_fraction': textured,
        'seconds': time.time() - start,
    }


def _delta(kernel_size: int) -> torch.Tensor:
    kernel = torch.zeros(kernel_size, kernel_size)
    kernel[kernel_size // 2, kernel_size // 2] = 1
    return kernel


def kernel_moments(kernels: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Shape of kernels from their second central moments (x to the right, y down, gather form).

    Args:
        kernels (Tensor): (P, K, K), non-negative, each summing to 1.

    Returns:
        dict of (P,) tensors: ``angle`` (degrees in [0, 180), principal axis, 0 = horizontal), ``from_horizontal``
        (degrees in [0, 90]), ``length`` (std along the principal axis, pixels), ``elongation`` (ratio of the stds
        along the principal and the minor axis, >= 1).
    """
    size = kernels.shape[-1]
    coords = torch.arange(size, dtype=kernels.dtype, device=kernels.device)
    weights = kernels / kernels.flatten(1).sum(1).clamp_min(1e-12)[:, None, None]
    mean_y = (weights.sum(2) * coords).sum(1)
    mean_x = (weights.sum(1) * coords).sum(1)
    dy = coords[None, :, None] - mean_y[:, None, None]
    dx = coords[None, None, :] - mean_x[:, None, None]
    mxx, myy, mxy = ((weights * dx * dx).flatten(1).sum(1), (weights * dy * dy).flatten(1).sum(1),
                     (weights * dx * dy).flatten(1).sum(1))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * mxy, mxx - myy)) % 180
    half = torch.sqrt(((mxx - myy) / 2)**2 + mxy * mxy)
    major, minor = (mxx + myy) / 2 + half, ((mxx + myy) / 2 - half).clamp_min(1e-6)
    return {
        'angle': angle,
        'from_horizontal': torch.minimum(angle, 180 - angle),
        'length': torch.sqrt(major),
        'elongation': torch.sqrt(major / minor)
    }


CLOCK_ELLIPSE = (210.0, 152.0, 62.0, 52.0)  # centre x, y and radii of the clock in clock_motion.png (400 x 300)


def clock_motion_report(estimate, scale: float = 0.5, step: int = 4) -> dict:
    """Kernel shapes of an estimator on scikit-image's real ``clock_motion.png`` (the clock is smeared horizontally).

    The photo is resized by ``scale``; kernels on a grid of ``step`` pixels are split into those inside the clock
    (:data:`CLOCK_ELLIPSE`) and those in the flat background (outside 1.6 times that ellipse).

    Returns:
        dict: per region (``clock``, ``background``) the medians of :func:`kernel_moments` and, for the clock, the
        share of kernels within 20 degrees of horizontal.
    """
    import skimage.data

    image = cv2.imread(os.path.join(skimage.data.data_dir, 'clock_motion.png'), cv2.IMREAD_COLOR)
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else image
    rgb = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        field = estimate(rgb)
    ys, xs = torch.meshgrid(torch.arange(step // 2, field.height, step), torch.arange(step // 2, field.width, step),
                            indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    cx, cy, rx, ry = (value * scale for value in CLOCK_ELLIPSE)
    radius = ((xs.float() - cx) / rx)**2 + ((ys.float() - cy) / ry)**2
    points = torch.stack([torch.zeros_like(ys), ys, xs], 1)
    moments = kernel_moments(field.kernels_at(points).float())
    report = {'scale': scale, 'kernel_size': int(getattr(field, 'kernel_size', 0))}
    for region, inside in (('clock', radius <= 1), ('background', radius >= 1.6**2)):
        values = {key: float(value[inside].median()) for key, value in moments.items()}
        values['count'] = int(inside.sum())
        if region == 'clock':
            values['share_within_20deg'] = float((moments['from_horizontal'][inside] <= 20).float().mean())
        report[region] = values
    return report


def format_markdown(report: dict) -> str:
    """The results as a Markdown table: one row per subset and method."""
    lines = [
        '| subset | method | re-blur PSNR (dB) | kernel L1 all | kernel L1 textured |',
        '|---|---|---:|---:|---:|',
    ]
    for subset, methods in report['results'].items():
        share = report['textured_fraction'][subset]
        for method, scores in methods.items():
            lines.append(f'| {subset} ({share:.0%} textured) | {method} | {scores["reblur_psnr"]:.2f} | '
                         f'{scores["kernel_l1"]:.3f} | {scores["kernel_l1_textured"]:.3f} |')
    return '\n'.join(lines) + '\n'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--estimator', help='checkpoint (.pth) or reference-model name (see reference_models.py)')
    parser.add_argument('--kind', choices=('ufpnet', 'basis', 'offsets'), default=None,
                        help='estimator family (default: read from a reference model / the checkpoint)')
    parser.add_argument('--opt', default=None, help='training options YAML whose network_g builds the estimator')
    parser.add_argument('--baselines-only', action='store_true', help='score the baselines only')
    parser.add_argument('--data', default='datasets/estimation_benchmark', help='benchmark data folder')
    parser.add_argument('--count', type=int, default=4, help='items per subset (6 subsets: 24 images by default)')
    parser.add_argument('--size', type=int, default=256, help='crop side')
    parser.add_argument('--subsets', nargs='*', default=None, help='subset names (default: all)')
    parser.add_argument('--json', default=None, help='write the report as JSON')
    parser.add_argument('--markdown', default=None, help='write the table as Markdown')
    parser.add_argument('--png', default=None,
                        help='write estimated vs true fields (first image of each noise-free subset)')
    parser.add_argument('--clock', action='store_true',
                        help="also measure the estimator's kernels on scikit-image's clock_motion.png")
    add_averaging_arguments(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.baselines_only and not args.estimator:
        print('error: expected --estimator CKPT_OR_NAME, or --baselines-only', file=sys.stderr)
        return 2
    estimate, name = None, None
    if not args.baselines_only:
        from basicsr_blurfield.reference_models import averaged_estimator, load_estimator

        try:
            net, kind = load_estimator(args.estimator, kind=args.kind, opt_path=args.opt)
            estimate = averaged_estimator(net, args.tta, args.smooth_sigma)
        except (FileNotFoundError, KeyError, ValueError) as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
        name = f'{os.path.basename(args.estimator)} ({kind}{averaging_label(args.tta, args.smooth_sigma)})'
    try:
        report = run_benchmark(estimate, name or 'estimator', args.data, args.count, args.size, args.subsets,
                               args.png, not args.quiet)
    except (ValueError, ScriptError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    table = format_markdown(report)
    if args.clock and estimate is not None:
        report['clock_motion'] = {str(scale): clock_motion_report(estimate, scale) for scale in (0.5, 1.0)}
        for scale, clock in report['clock_motion'].items():
            table += (f'\nclock_motion.png at scale {scale}: clock kernels {clock["clock"]["from_horizontal"]:.1f} deg '
                      f'from horizontal (median; {clock["clock"]["share_within_20deg"]:.0%} within 20 deg), length '
                      f'{clock["clock"]["length"]:.2f} px vs {clock["background"]["length"]:.2f} px in the background, '
                      f'elongation {clock["clock"]["elongation"]:.2f} vs {clock["background"]["elongation"]:.2f}\n')
    print(table)
    print(f'{report["seconds"]:.0f} s')
    if args.json:
        write_text(args.json, json.dumps(report, indent=1))
    if args.markdown:
        write_text(args.markdown, table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
