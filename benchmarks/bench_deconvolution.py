"""PSNR and time of non-blind deconvolution through blur fields: Richardson-Lucy + TV against CG / HQS.

Usage::

    python benchmarks/bench_deconvolution.py                    # 256x256 on 4 photos x 3 field types, then 720p
    python benchmarks/bench_deconvolution.py --only-720p        # the 720p run alone
    python benchmarks/bench_deconvolution.py --quick            # 2 photos at 96x96, no 720p (smoke run)
    python benchmarks/bench_deconvolution.py --no-720p --fields basis  # the region-wise basis fields alone
    python benchmarks/bench_deconvolution.py --estimator KE.pth # adds rows with fields estimated by a checkpoint
    python benchmarks/bench_deconvolution.py --no-720p --estimator ufpnet-ke-cues-reference basis-kernels-reference
    python benchmarks/bench_deconvolution.py --no-720p --estimator ufpnet-ke-cues-long2-reference --tta 8 \
        --smooth-sigma 16

Bundled photos (scikit-image: astronaut, coffee, chelsea, rocket; resized with area interpolation) are blurred by
generated ground-truth fields, one per photo and type, seeded: ``basis`` (region-wise field of Carbajal et al. §3.3,
up to 3 regions with camera-shake kernels, K=21), ``kernel`` (smooth camera motion as per-pixel kernels, K=15) and
``offset`` (smooth camera motion as 15-step trajectories); then Gaussian noise sigma 0.01 is added and the image
clipped to [0, 1]. Each method restores every image with the ground-truth field (or, with ``--estimator``, with the
field the network estimates from the blurry image). PSNR is on [0, 1] images, the whole image (borders included);
time is the solver call's wall time per image, one intra-op thread, one process: every solve (RL-TV and CG alike) runs
once untimed, then :data:`REPEAT` (``--repeat``) timed calls, the least kept. ``<solver> to reach RL-TV (n it.)``
gives two cells per field type: the first budget (half-quadratic rounds x CG steps, in :data:`GRADIENT_BUDGETS` /
:data:`TV_BUDGETS` order) whose PSNR matches RL-TV's with n iterations on each image, as steps and time over RL-TV's
(mean over the images where one does; the count says on how many), and the first single budget that matches it on
every image with its mean time over RL-TV's. The issue's target is at most a third of RL-TV's time. PCG runs with the
circulant preconditioner and with the default one (``precondition=True``: the mixture preconditioner on basis fields,
the circulant one on the others, whose runs are then shared).
The 720p rows are one timed run each on the astronaut photo with the ``basis`` field, budgets tried up to the first
that reaches the reference; with ``--estimator`` the same run follows with the first estimator's field.
Several ``--estimator`` (checkpoints or reference-model names) give one table each, on the same blurry images;
``--tta T`` / ``--smooth-sigma S`` average their fields at test time
(:class:`~basicsr_blurfield.reference_models.AveragedEstimator`).
"""
import argparse
import time
from functools import partial

import cv2
import numpy as np
import torch

from basicsr_blurfield.cli import add_averaging_arguments, averaging_label
from basicsr_blurfield.fields import BasisField, OffsetField
from basicsr_blurfield.fields.generators import (motion_basis_field, motion_offsets, random_camera_motion,
                                                 random_shake_kernel, region_field)
from basicsr_blurfield.restoration.deconvolution import deconvolve_cg, richardson_lucy_tv

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
FIELDS = ('basis', 'kernel', 'offset')
METHODS = {
    'RL-TV (30 it.)': lambda blurry, field: richardson_lucy_tv(blurry, field, num_iter=30),
    'RL-TV (100 it.)': lambda blurry, field: richardson_lucy_tv(blurry, field, num_iter=100),
    'CG, gradient prior (12 steps)': lambda blurry, field: deconvolve_cg(blurry, field, prior='gradient'),
    'CG, gradient prior (40 steps)': lambda blurry, field: deconvolve_cg(blurry, field, prior='gradient', cg_iter=40),
    'CG, TV prior (3 half-quadratic rounds x 8 steps)': lambda blurry, field: deconvolve_cg(blurry, field, prior='tv'),
    'PCG, TV prior (3 x 8, circulant preconditioner)': partial(deconvolve_cg, prior='tv', precondition='circulant'),
    'PCG, TV prior (3 x 8, default: mixture on basis fields)': partial(deconvolve_cg, prior='tv', precondition=True),
}
GRADIENT_BUDGETS = tuple((1, steps) for steps in (4, 6, 8, 10, 12, 15, 20, 25, 30, 40))
TV_BUDGETS = ((1, 4), (1, 6), (2, 3), (2, 4), (2, 5), (3, 4), (2, 6), (3, 5), (4, 4), (3, 6), (4, 5), (4, 6), (4, 8))
REACH = (  # (label, prior, precondition, budgets, reference)
    ('CG gradient', 'gradient', False, GRADIENT_BUDGETS, 'RL-TV (30 it.)'),
    ('CG TV', 'tv', False, TV_BUDGETS, 'RL-TV (30 it.)'),
    ('PCG TV (circulant)', 'tv', 'circulant', TV_BUDGETS, 'RL-TV (30 it.)'),
    ('PCG TV (default)', 'tv', True, TV_BUDGETS, 'RL-TV (30 it.)'),
    ('PCG TV (default)', 'tv', True, TV_BUDGETS, 'RL-TV (100 it.)'),
)
REPEAT = 3


def psnr(restored: torch.Tensor, sharp: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (restored.clamp(0, 1) - sharp).square().mean()))


def photo(name: str, height: int, width: int) -> torch.Tensor:
    """A bundled photo resized to H x W: (1, 3, H, W) float32 in [0, 1]."""
    from skimage import data as skimage_data

    image = getattr(skimage_data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    image = cv2.resize(image[..., :3], (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).contiguous()


def make_field(kind: str, height: int, width: int, seed: int):
    """A seeded ground-truth field of the given type (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if kind == 'basis':
        sample = region_field(
            height,
            width,
            rng,
            kernel_size=21,
            max_regions=3,
            min_area=height * width // 20,
            kernel_fn=lambda g: random_shake_kernel(21, g))
        return BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None])
    motion = random_camera_motion(height, width, rng, max_displacement=7.0)
    if kind == 'kernel':
        sample = motion_basis_field(motion, height, width, kernel_size=15)
        return BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None]).dense()
    return OffsetField(torch.from_numpy(motion_offsets(motion, height, width))[None])


def timed(function, *args):
    """(output, seconds): the least wall time of :data:`REPEAT` calls after one untimed warm-up call."""
    out = function(*args)
    best = float('inf')
    for _ in range(REPEAT):
        start = time.perf_counter()
        out = function(*args)
        best = min(best, time.perf_counter() - start)
    return out, best


def budget_runs(blurry, field, sharp, prior: str, precondition, budgets, stop_at: float = None) -> list:
    """(PSNR, seconds) of every (rounds, steps) budget, or up to the first whose PSNR reaches ``stop_at``."""
    runs = []
    for rounds, steps in budgets:
        restored, seconds = timed(lambda: deconvolve_cg(
            blurry, field, prior=prior, num_iter=rounds, cg_iter=steps, precondition=precondition))
        runs.append((psnr(restored, sharp), seconds))
        if stop_at is not None and runs[-1][0] >= stop_at:
            break
    return runs


def preconditioner_name(field, precondition) -> str:
    """What ``deconvolve_cg(..., precondition=precondition)`` uses on ``field``: 'none', 'circulant' or 'mixture'."""
    if precondition is True:
        return 'mixture' if isinstance(field, BasisField) else 'circulant'
    return precondition or 'none'


def run_case(sharp: torch.Tensor, field, estimator, seed: int, every_budget: bool = True) -> dict:
    noise = torch.randn(sharp.shape, generator=torch.Generator().manual_seed(seed))
    blurry = (field.blur(sharp) + 0.01 * noise).clamp(0, 1)
    row = {'blurry input': (psnr(blurry, sharp), 0.0)}
    used = field
    if estimator is not None:
        with torch.no_grad():
            used, seconds = timed(lambda image: estimator(image).detach(), blurry)
        row['(field estimation)'] = (float('nan'), seconds)
    for name, method in METHODS.items():
        restored, seconds = timed(method, blurry, used)
        row[name] = (psnr(restored, sharp), seconds)
    done = {}
    for label, prior, precondition, budgets, reference in REACH:
        if every_budget:  # the same runs serve every reference, and True that resolves to 'circulant' reuses its runs
            key = (prior, preconditioner_name(used, precondition))
            if key not in done:
                done[key] = budget_runs(blurry, used, sharp, prior, precondition, budgets)
            runs = done[key]
        else:
            runs = budget_runs(blurry, used, sharp, prior, precondition, budgets, row[reference][0])
        row[f'{label} to reach {reference}'] = (runs, budgets, row[reference])
    return row


def reach_cells(values) -> list:
    """Two cells for one field type: the first budget reaching the reference on each image (its steps and time over
    the reference's, mean over the images where one does), and the first budget that reaches it on all images."""
    runs, budgets, _ = values[0]
    ratios = [[seconds / reference[1] for _, seconds in runs] for runs, _, reference in values]
    reached = [[value >= reference[0] for value, _ in runs] for runs, _, reference in values]
    firsts = [hits.index(True) for hits in reached if True in hits]
    per_image = [ratio[hits.index(True)] for ratio, hits in zip(ratios, reached) if True in hits]
    steps = np.mean([budgets[i][0] * budgets[i][1] for i in firsts]) if firsts else float('nan')
    first = (f'{steps:.1f} steps, {np.mean(per_image):.2f}x ({len(firsts)}/{len(values)})') if firsts else \
        f'(0/{len(values)})'
    common = [i for i in range(min(map(len, reached))) if all(hits[i] for hits in reached)]
    if not common:
        return [first, 'none']
    rounds, steps_each = budgets[common[0]]
    return [first, f'{rounds} x {steps_each}: {np.mean([ratio[common[0]] for ratio in ratios]):.2f}x']


def print_table(title: str, rows: dict) -> None:
    """rows: column -> list of per-image dicts (method -> (psnr, seconds), or budget runs for the reach rows)."""
    columns = list(rows)
    print(f'\n### {title}\n')
    print('| method | ' + ' | '.join(f'{c}: PSNR (dB) | {c}: s / image' for c in columns) + ' |')
    print('|---|' + '---:|---:|' * len(columns))
    for method in rows[columns[0]][0]:
        cells = []
        for column in columns:
            values = [case[method] for case in rows[column]]
            if ' to reach ' in method:
                cells += reach_cells(values)
            else:
                cells += [f'{np.mean([v[0] for v in values]):.2f}', f'{np.mean([v[1] for v in values]):.3f}']
        print(f'| {method} | ' + ' | '.join(cells) + ' |')


def main() -> None:
    global REPEAT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='2 photos at 96x96, no 720p')
    parser.add_argument('--estimator', nargs='+', default=(),
                        help='checkpoints or reference-model names of field estimators (one table of rows each)')
    add_averaging_arguments(parser)
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads (default 1)')
    parser.add_argument('--no-720p', action='store_true', help='skip the 720p run')
    parser.add_argument('--only-720p', action='store_true', help='only the 720p run')
    parser.add_argument('--repeat', type=int, default=REPEAT, help=f'timed calls per solve (default {REPEAT})')
    parser.add_argument('--fields', nargs='+', choices=FIELDS, default=FIELDS, help='field types at 256x256 (all)')
    args = parser.parse_args()
    REPEAT = max(1, args.repeat)
    torch.set_num_threads(args.threads)
    estimators = {}
    if args.estimator:
        import basicsr_blurfield  # noqa: F401  (registers the archs)
        from basicsr_blurfield.reference_models import averaged_estimator
        from basicsr_blurfield.restoration.estimators import ESTIMATOR_KINDS, load_network

        averaging = averaging_label(args.tta, args.smooth_sigma)
        for name in args.estimator:
            kind, network = load_network(name)
            if kind not in ESTIMATOR_KINDS:
                raise SystemExit(f'error: --estimator {name}: a {kind} is no field estimator')
            estimators[name + averaging] = averaged_estimator(network, args.tta, args.smooth_sigma)
    size = 96 if args.quick else 256
    photos = PHOTOS[:2] if args.quick else PHOTOS
    truth, estimated = {}, {name: {} for name in estimators}
    for kind in () if args.only_720p else args.fields:
        for index, name in enumerate(photos):
            sharp = photo(name, size, size)
            field = make_field(kind, size, size, seed=100 * FIELDS.index(kind) + index)
            truth.setdefault(kind, []).append(run_case(sharp, field, None, seed=index))
            for checkpoint, estimator in estimators.items():
                estimated[checkpoint].setdefault(kind, []).append(run_case(sharp, field, estimator, seed=index))
            print(f'{kind} {name}: done', flush=True)
    if truth:
        print_table(f'{size}x{size}, ground-truth fields (mean over {len(photos)} photos)', truth)
    for name, rows in estimated.items():
        if rows:
            print_table(f'{size}x{size}, fields estimated by {name}', rows)
    if not (args.quick or args.no_720p):
        sharp = photo('astronaut', 720, 1280)
        field = make_field('basis', 720, 1280, seed=7)
        REPEAT = 1
        case = run_case(sharp, field, None, seed=0, every_budget=False)
        print_table('1280x720 (astronaut, basis field, one timed run each)', {'basis': [case]})
        for name, estimator in list(estimators.items())[:1]:
            case = run_case(sharp, field, estimator, seed=0, every_budget=False)
            print_table(f'1280x720 (astronaut, basis field), field estimated by {name}', {'basis': [case]})


if __name__ == '__main__':
    main()
