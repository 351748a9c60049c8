"""Blind deblurring in the encoded blur-kernel space (Tran et al., CVPR 2021, Alg. 1 and eq. (5)-(7)) with a
short-trained blur operator family F, on synthetic 128x128 cases made the way F was trained.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_blur_kernel_space_training.py --out /tmp/bks_short_run  # trains F
    OMP_NUM_THREADS=1 python benchmarks/bench_blind_deblur.py --operator /tmp/bks_short_run \\
        [--iters 300] [--modes alternating joint] [--photos astronaut coffee chelsea] [--size 128] [--noise 0] \\
        [--warmup 100] [--kernel-iter 5] [--lr 5e-4] [--num-feat 32] [--num-levels 4] [--num-skip 16] \\
        [--kernel-weight 1e-3] [--prior-weight 2e-3] [--sparsity-weight 0] [--patience 200] [--seed 0] \\
        [--init-code none|mean] [--code-prior none|gaussian] [--code-prior-weight 1e-2] [--save-init-code C.npy] \\
        [--save-code-prior P.npz] [--json FILE]

``--operator`` is the training benchmark's ``--out`` folder (``net_f.pth`` + ``options.yml``; ``net_g.pth`` too) or a
``net_f.pth`` with ``options.yml`` beside it. F is loaded as the CLI loads it (``restoration.estimators.load_network``,
sizes read off the weights). Cases: one per photo (bundled scikit-image photos, reduced ``--photo-scale`` times with
area interpolation as F's training did; by default the scale is read off the training's photo folder), a
``size``-pixel crop blurred by a field drawn as F's training set draws it (``synthesize_field`` with the field types,
kernel size, region and basis settings of ``options.yml``'s training dataset, basis representation, the blur computed
on a margin of K // 2 so the borders are real blur), then Gaussian noise of std ``--noise`` and clipping to [0, 1].
Case ``i`` comes from ``numpy.random.default_rng([seed, i])``; :func:`blind_deblur` runs with ``seed + i``.
``--init-code mean`` starts the kernel prior at the kernel space's typical blur: the mean of G's codes (averaged over
the code grid) over ``--init-pairs`` pairs drawn like the cases but from other seeds (``[seed, 1000 + j]``) and on
every training photo in turn; it needs ``net_g.pth`` and nothing of the test cases. ``--save-init-code C.npy`` saves
that code for ``python -m basicsr_blurfield.restore --method blind_bks --init-code C.npy``. ``--code-prior gaussian``
adds the code's negative log-likelihood under a diagonal Gaussian fitted to those same pairs' codes (per channel mean
and std over pairs and code cells, ``blind_deblur(code_prior=...)``, weight ``--code-prior-weight``);
``--save-code-prior P.npz`` saves it for ``restore --code-prior P.npz``. ``--sparsity-weight`` adds the L1/L2 gradient
prior (``blind_deblur(sparsity_weight=...)``).

Every case runs :func:`blind_deblur` in each mode (``'alternating'``: Algorithm 1, Charbonnier data term;
``'joint'``: the released code's joint updates with 1 - SSIM) with ``--iters`` outer steps; the deep image prior is
shrunk for CPU (``--num-feat`` / ``--num-levels``; the released prior is 128 / 5). Printed per case and as the mean
over cases: PSNR (dB, peak 1, whole image) of the blurry input vs the sharp crop, of the result vs the sharp crop, the
gain, the data fit PSNR(F(result, code), blurry), the oracle fit PSNR(F(sharp, G(sharp, blurry)), blurry) (what F
can explain of this blur when the sharp image is known; needs ``net_g.pth``), steps, whether the early stop ended the
run, and the wall time of the :func:`blind_deblur` call (one intra-op thread by default).

Measured (shared 2-core VM, 1 thread), F from ``bench_blur_kernel_space_training.py`` at its earlier defaults
(1600 iterations, lr 1.5e-3; 331 s of training; reblur 28.64 dB vs identity 27.32), this script at its defaults
(460 s wall): the blurry input 25.30 dB mean, alternating 25.09 (-0.21; data fit 38.80 dB), joint 23.45 (-1.85; data
fit 30.53), about 92 / 59 s per case. The oracle fit is only 26.56 dB, against data fits of 30-40 dB: the short F
reproduces y from a blurry x (near identity) better than from the sharp one, so the optimum is the blurry image
itself; no gain over the input at this F. Tables:
benchmarks/README.md, section "Blind deblurring with a short-trained F". That F, trained at lr 1.5e-3, may ignore
its code (the 8000-step run at that rate does exactly: see bench_blur_kernel_space_training.py). With F from
``--iters 6000 --lr 3e-4`` (830 s, it reads its code) and ``--init-code mean``: alternating +0.03 dB on average at 300
steps (+0.11 / +0.31 / -0.31 dB per case), +0.16 dB at ``--iters 800`` (+0.14 / +0.43 / -0.09); without
``--init-code`` the alternating mode falls to -3.58 dB; joint -0.48 / -0.42 dB. With F from ``--iters 16000``,
800 steps and ``--init-code mean``: -0.20 dB (+0.11 / +0.37 / -1.09); adding ``--code-prior gaussian``: +0.21 dB
(+0.13 / +0.48 / +0.03) at weight 1e-2, +0.06 dB at 1e-1.
"""
import argparse
import json
import os
import time

import cv2
import numpy as np
import torch
import yaml

import basicsr_blurfield  # noqa: F401  (applies compat, registers everything)
from basicsr_blurfield.atomic import atomic_path, write_text
from basicsr_blurfield.data.synthetic_blur_dataset import SyntheticBlurDataset, bundled_photo_paths
from basicsr_blurfield.restoration.blind_deblur import BLIND_MODES, blind_deblur
from basicsr_blurfield.restoration.estimators import load_network

PHOTOS = ('astronaut', 'coffee', 'chelsea')


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB (peak 1) of ``image`` clipped to [0, 1] against ``reference``, whole image."""
    return float(10 * torch.log10(1 / (image.clamp(0, 1) - reference).square().mean().clamp_min(1e-12)))


def operator_files(path: str) -> tuple:
    """(net_f.pth, options.yml, net_g.pth or None) of a training ``--out`` folder or of a ``net_f.pth``."""
    folder, net_f = (path, os.path.join(path, 'net_f.pth')) if os.path.isdir(path) else (os.path.dirname(path), path)
    options = os.path.join(folder, 'options.yml')
    for name in (net_f, options):
        if not os.path.isfile(name):
            raise SystemExit(f'error: --operator {path}: expected {name} (the training benchmark writes both)')
    net_g = os.path.join(folder, 'net_g.pth')
    return net_f, options, net_g if os.path.isfile(net_g) else None


def load_extractor(path: str, network_opt: dict) -> torch.nn.Module:
    """G of the training run, built from ``options.yml``'s ``network_g`` and loaded strictly (eval mode)."""
    from basicsr.archs import build_network

    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict

    net = build_network(dict(network_opt))
    net.load_state_dict(unwrap_state_dict(torch.load(path, map_location='cpu', weights_only=True)))
    return net.eval()


def photo_scale(dataroot) -> int:
    """The reduction the training applied to the bundled photos, read off its photo folder (1: the photos as they
    are, ``dataroot_gt: ~``)."""
    if not dataroot:
        return 1
    original = cv2.imread(bundled_photo_paths()[0], cv2.IMREAD_COLOR)
    reduced = cv2.imread(os.path.join(dataroot, 'astronaut.png'), cv2.IMREAD_COLOR)
    if reduced is None:
        raise SystemExit(f'error: cannot read the training photos in {dataroot}; give --photo-scale')
    return max(1, round(original.shape[1] / reduced.shape[1]))


def load_photo(name: str, scale: int) -> np.ndarray:
    """A bundled photo, RGB float32 in [0, 1], reduced ``scale`` times with area interpolation (as the training)."""
    paths = {os.path.splitext(os.path.basename(path))[0]: path for path in bundled_photo_paths()}
    if name not in paths:
        raise SystemExit(f'error: --photos: unknown photo {name!r}; expected among {sorted(paths)}')
    image = cv2.cvtColor(cv2.imread(paths[name], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if scale > 1:
        image = cv2.resize(image, (image.shape[1] // scale, image.shape[0] // scale), interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255


def make_case(photo: np.ndarray, data_opt: dict, size: int, noise: float, rng: np.random.Generator) -> dict:
    """A sharp crop and its blurred copy, drawn by ``SyntheticBlurDataset.draw`` with F's training options (no flips,
    ``size`` pixels, Gaussian noise of std ``noise``)."""
    dataset = SyntheticBlurDataset(
        dict(
            data_opt,
            gt_size=size,
            use_hflip=False,
            use_rot=False,
            noise_std=noise if noise > 0 else None,
            poisson_peak=None))
    item = dataset.draw(photo, rng)
    return {'sharp': item['gt'][None].float(), 'blurry': item['lq'][None].float(), 'field': item['field_type']}


def code_statistics(extractor, data_opt: dict, scale: int, size: int, count: int, seed: int) -> tuple:
    """``(mean, std)``, each (1, D, 1, 1): per channel, over ``count`` training-like pairs and the code grid cells of
    ``G(x, y)`` (std floored at 1e-3)."""
    names = [os.path.splitext(os.path.basename(path))[0] for path in bundled_photo_paths()]
    codes = []
    for index in range(count):
        case = make_case(load_photo(names[index % len(names)], scale), data_opt, size, 0.0,
                         np.random.default_rng([seed, 1000 + index]))
        with torch.no_grad():
            code = extractor(case['sharp'], case['blurry'])
        codes.append(code.permute(0, 2, 3, 1).reshape(-1, code.shape[1]))
    codes = torch.cat(codes)
    return codes.mean(0).view(1, -1, 1, 1), codes.std(0).clamp_min(1e-3).view(1, -1, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--operator', required=True, help="the training benchmark's --out folder, or a net_f.pth")
    parser.add_argument('--iters', type=int, default=300, help='outer steps of blind_deblur')
    parser.add_argument('--modes', nargs='+', default=list(BLIND_MODES), choices=BLIND_MODES)
    parser.add_argument('--photos', nargs='+', default=list(PHOTOS))
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--photo-scale', type=int, default=None, help="default: the training's (from options.yml)")
    parser.add_argument('--noise', type=float, default=0.0, help='Gaussian noise std added to the blurry image')
    parser.add_argument('--warmup', type=int, default=100)
    parser.add_argument('--kernel-iter', type=int, default=5)
    parser.add_argument('--lr', type=float, default=5e-4)
    parser.add_argument('--num-feat', type=int, default=32, help='image-prior width (released: 128)')
    parser.add_argument('--num-levels', type=int, default=4, help='image-prior levels (released: 5)')
    parser.add_argument('--num-skip', type=int, default=16)
    parser.add_argument('--kernel-weight', type=float, default=1e-3)
    parser.add_argument('--prior-weight', type=float, default=2e-3)
    parser.add_argument('--sparsity-weight', type=float, default=0.0, help='weight of the L1/L2 sharpness prior')
    parser.add_argument('--patience', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--init-code', choices=('none', 'mean'), default='none',
                        help="start G^k at the mean training code (needs net_g.pth) or as initialised (default)")
    parser.add_argument('--init-pairs', type=int, default=16,
                        help='pairs averaged by --init-code mean and --code-prior gaussian')
    parser.add_argument('--code-prior', choices=('none', 'gaussian'), default='none',
                        help="add the code's Gaussian negative log-likelihood under G's training codes (needs "
                        'net_g.pth) to the objective (default: none)')
    parser.add_argument('--code-prior-weight', type=float, default=1e-2)
    parser.add_argument('--save-code-prior', default=None,
                        help="save G's code mean and std (.npz) for restore.py --code-prior")
    parser.add_argument('--save-init-code', default=None,
                        help='with --init-code mean: also save the mean code (.npy) for restore.py --init-code')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--json', default=None, help='also write the raw figures to this file')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net_f, options, net_g = operator_files(args.operator)
    with open(options) as handle:
        opt = yaml.safe_load(handle)
    data_opt = opt['datasets']['train']
    scale = args.photo_scale or photo_scale(data_opt.get('dataroot_gt'))
    _, operator = load_network(net_f)
    extractor = load_extractor(net_g, opt['network_g']) if net_g else None
    init_code = code_prior = None
    if args.init_code == 'mean' or args.code_prior != 'none' or args.save_code_prior:
        if extractor is None:
            raise SystemExit(f'error: --init-code mean, --code-prior gaussian and --save-code-prior need net_g.pth '
                             f'beside {net_f}')
        statistics = code_statistics(extractor, data_opt, scale, args.size, args.init_pairs, args.seed)
        code_prior = statistics if args.code_prior == 'gaussian' else None
        if args.save_code_prior:
            with atomic_path(args.save_code_prior) as temporary, open(temporary, 'wb') as handle:
                np.savez(handle, mean=statistics[0].numpy(), std=statistics[1].numpy())
    if args.init_code == 'mean':
        init_code = statistics[0]
        if args.save_init_code:
            with atomic_path(args.save_init_code) as temporary, open(temporary, 'wb') as handle:
                np.save(handle, init_code.numpy())
    elif args.save_init_code:
        raise SystemExit('error: --save-init-code needs --init-code mean')
    print(f'F: {net_f} ({sum(p.numel() for p in operator.parameters()):,} parameters); field types '
          f"{data_opt.get('field_types')}, K={data_opt.get('kernel_size')}, photos reduced {scale}x, "
          f'{args.size}x{args.size}, noise {args.noise}; image prior {args.num_feat} x {args.num_levels} levels, '
          f'{args.iters} steps (warm-up {args.warmup}), lr {args.lr}, kernel_iter {args.kernel_iter}, init code '
          f'{args.init_code}, code prior {args.code_prior}'
          f"{f' (weight {args.code_prior_weight})' if args.code_prior != 'none' else ''}")
    rows = []
    for index, name in enumerate(args.photos):
        case = make_case(
            load_photo(name, scale), data_opt, args.size, args.noise, np.random.default_rng([args.seed, index]))
        sharp, blurry = case['sharp'], case['blurry']
        oracle = float('nan')
        if extractor is not None:
            with torch.no_grad():
                oracle = psnr(operator(sharp, extractor(sharp, blurry)), blurry)
        for mode in args.modes:
            start = time.perf_counter()
            result = blind_deblur(
                blurry,
                operator,
                mode=mode,
                num_iter=args.iters,
                kernel_iter=args.kernel_iter,
                warmup_iter=args.warmup,
                init_code=init_code,
                code_prior=code_prior,
                code_prior_weight=args.code_prior_weight,
                lr=args.lr,
                kernel_weight=args.kernel_weight,
                prior_weight=args.prior_weight,
                sparsity_weight=args.sparsity_weight,
                patience=args.patience,
                num_feat=args.num_feat,
                num_skip=args.num_skip,
                num_levels=args.num_levels,
                seed=args.seed + index,
                progress=False)
            seconds = time.perf_counter() - start
            rows.append({
                'case': f"{name} ({case['field']})",
                'mode': mode,
                'blurry_psnr': psnr(blurry, sharp),
                'result_psnr': psnr(result.image, sharp),
                'data_fit_psnr': psnr(result.reblurred, blurry),
                'oracle_fit_psnr': oracle,
                'steps': result.steps,
                'stopped_early': result.stopped_early,
                'seconds': seconds,
                'first_loss': result.losses[0] if result.losses else float('nan'),
                'last_loss': result.losses[-1] if result.losses else float('nan'),
            })
            print(json.dumps(rows[-1]), flush=True)
    print()
    print('| case | mode | PSNR blurry (dB) | PSNR result (dB) | gain (dB) | data fit PSNR(F(x, k), y) | '
          'oracle fit PSNR(F(x*, G(x*, y)), y) | steps | stopped early | seconds |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for row in rows:
        print(f"| {row['case']} | {row['mode']} | {row['blurry_psnr']:.2f} | {row['result_psnr']:.2f} | "
              f"{row['result_psnr'] - row['blurry_psnr']:+.2f} | {row['data_fit_psnr']:.2f} | "
              f"{row['oracle_fit_psnr']:.2f} | {row['steps']} | {'yes' if row['stopped_early'] else 'no'} | "
              f"{row['seconds']:.0f} |")
    for mode in args.modes:
        mine = [row for row in rows if row['mode'] == mode]
        mean = {key: float(np.mean([row[key] for row in mine])) for key in mine[0] if isinstance(mine[0][key], float)}
        early = sum(row['stopped_early'] for row in mine)
        print(f"| **mean of {len(mine)}** | {mode} | {mean['blurry_psnr']:.2f} | {mean['result_psnr']:.2f} | "
              f"{mean['result_psnr'] - mean['blurry_psnr']:+.2f} | {mean['data_fit_psnr']:.2f} | "
              f"{mean['oracle_fit_psnr']:.2f} | {np.mean([row['steps'] for row in mine]):.0f} | {early}/{len(mine)} | "
              f"{mean['seconds']:.0f} |")
    if args.json:
        write_text(args.json, json.dumps({'args': vars(args), 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
