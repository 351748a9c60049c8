"""A short CPU training of the encoded blur-kernel space (Tran et al., CVPR 2021, eq. (4)) from
``options/blur_kernel_space_synthetic.yml`` with sizes overridden, then the paper's checks at that scale:

* kernel-retrieval reblur PSNR, PSNR(F(x, G(x, y)), y), against the identity baseline PSNR(x, y), on the synthetic
  validation set (Table 3's measure, with G's code instead of an optimised one);
* blur transfer against ground truth on the validation set's known fields (``transfer_psnr``);
* transfer of known **uniform** blur (§4.1.1, eq. (8)): pairs made with one uniform kernel (linear motion and camera
  shake kernels of ``fields.generators``), the code of each pair applied to another sharp crop and compared with that
  crop blurred by the same kernel; reported with the identity figure (target sharp vs target blurred) beside it.

    OMP_NUM_THREADS=1 python benchmarks/bench_blur_kernel_space_training.py --out /tmp/bks_short_run \\
        [--iters 6000] [--size 64] [--kernel-size 21] [--width 16] [--feat 32] [--batch 4] [--lr 3e-4] \\
        [--photo-scale 2] [--field-types linear=1]

Defaults: 6000 iterations at lr 3e-4 (figures below). Earlier defaults, ``--iters 1600 --lr 1.5e-3`` (1 thread, shared
2-core VM, 424 s of training, 854,819 parameters): reblur PSNR 28.66 dB
against the identity's 27.32, ground-truth transfer 28.28 (identity 26.92), uniform-kernel transfer 27.97 (identity
26.19). The same run with ``--iters 900 --batch 8 --lr 1e-3`` (516 s): 28.27 / 27.74 / 27.59. An untrained F of ours
is the identity operator (its last conv starts at zero), so every gain above is learnt blur.

Whether F reads its code at all: ``own_code_psnr`` / ``swapped_code_psnr`` / ``code_swap_change`` (:func:`code_swap`).
At lr 1.5e-3 (the earlier default) the code path dies: with ``--iters 8000`` (1511 s) the reblur PSNR is 29.79 dB but
F ignores the code exactly (F(x, k1) == F(x, k2) for any codes: the output of the second U-Net level's up-convolution is never
positive, so the ReLU in front of the outermost up-convolution, of the released pix2pix design, passes nothing from
the inner levels; G's codes shrink to ~1e-6). With ``--iters 6000 --lr 3e-4`` (830 s) F reads it: 29.53 dB with each
pair's own code against 28.66 dB with another pair's, mean change 0.010; kernel-space uses (transfer, blind
deblurring) need such an F.

Writes ``net_g.pth`` / ``net_f.pth`` (BasicSR layout, ``params``), ``options.yml`` (the overridden options: rebuild G
and F from its ``network_g`` / ``network_f``) and ``figures.json`` under ``--out``, atomically; prints the figures.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import yaml
from _common import training_steps

import basicsr_blurfield  # noqa: F401  (applies compat, registers everything)
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr_blurfield.atomic import write_text
from basicsr_blurfield.data.synthetic_blur_dataset import bundled_photo_paths, random_crop
from basicsr_blurfield.fields import BasisField
from basicsr_blurfield.fields import generators as gen
from basicsr_blurfield.losses.reblur_loss import reblur_psnr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_run_options(args) -> dict:
    """The synthetic recipe with the sizes of this run (bundled photos, small crops, small widths)."""
    with open(os.path.join(ROOT, 'options', 'blur_kernel_space_synthetic.yml')) as handle:
        opt = yaml.safe_load(handle)
    opt.update(name='BlurKernelSpace-short-cpu-run', num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    out = os.path.abspath(args.out)
    opt['path'].update(
        experiments_root=out,
        models=out,
        log=out,
        training_states=out,
        visualization=os.path.join(out, 'visualization'))
    photos = write_photos(os.path.join(out, 'photos'), args.photo_scale) if args.photo_scale > 1 else None
    for phase, dataset in opt['datasets'].items():
        dataset.update(
            dataroot_gt=photos,
            gt_size=args.size,
            kernel_size=args.kernel_size,
            min_region_area=50,
            phase=phase,
            field_types=dict(args.field_types))
    opt['datasets']['train'].update(batch_size_per_gpu=args.batch, num_worker_per_gpu=0)
    opt['datasets']['val']['num_samples'] = args.val_samples
    opt['network_g'].update(
        num_feat=args.feat,
        num_front_block=1,
        enc_feat=args.width,
        num_down=args.levels,
        code_channels=4 * args.width,
        num_block=1)
    opt['network_f'].update(
        num_feat=args.feat,
        num_front_block=1,
        num_back_block=2,
        unet_feat=args.width,
        num_levels=args.levels,
        code_channels=4 * args.width)
    opt['train']['optim_g']['lr'] = args.lr
    opt['train']['scheduler'] = {
        'type': 'CosineAnnealingRestartLR',
        'periods': [args.iters],
        'restart_weights': [1],
        'eta_min': args.lr / 10
    }
    opt['train']['total_iter'] = args.iters
    return opt


def write_photos(folder: str, scale: int) -> str:
    """The bundled photos reduced ``scale`` times (area interpolation) as PNGs in ``folder``: denser texture per
    pixel, so the same blur changes the image more and the short run has more to learn."""
    import cv2

    from basicsr_blurfield.atomic import imwrite

    for path in bundled_photo_paths():
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        image = cv2.resize(image, (image.shape[1] // scale, image.shape[0] // scale), interpolation=cv2.INTER_AREA)
        imwrite(os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + '.png'), image)
    return folder


def validation_figures(model, dataset) -> dict:
    loader = torch.utils.data.DataLoader(dataset, batch_size=1)
    model.opt['val']['save_img'] = False
    model.nondist_validation(loader, 0, None, False)
    return dict(model.metric_results)


def uniform_transfer(model,
                     size: int,
                     kernel_size: int,
                     scale: int = 1,
                     num_kernels: int = 8,
                     num_pairs: int = 4,
                     seed: int = 7) -> dict:
    """Transfer of known uniform kernels: mean PSNR(F(x', G(x, k * x)), k * x') and PSNR(x', k * x')."""
    rng = np.random.default_rng(seed)
    photos = _photos(scale)
    transferred, identity = [], []
    for index in range(num_kernels):
        kind = 'linear' if index % 2 == 0 else 'shake'
        kernel = torch.from_numpy(gen.random_kernel(kernel_size, rng, kind))
        for _ in range(num_pairs):
            source, target = (_crop(photos[int(rng.integers(len(photos)))], size, rng) for _ in range(2))
            field = BasisField(kernel[None, None], torch.ones(1, 1, size, size))
            with torch.no_grad():
                model.feed_data({'gt': source, 'lq': field.blur(source)})
                model.test()
                truth = field.blur(target)
                transferred.append(reblur_psnr(model.transfer(target), truth))
            identity.append(reblur_psnr(target, truth))
    return {
        'uniform_transfer_psnr': float(np.mean(transferred)),
        'uniform_identity_psnr': float(np.mean(identity)),
        'uniform_cases': len(transferred)
    }


def code_swap(model, dataset) -> dict:
    """Whether F reads its code: on the validation pairs, mean PSNR(F(x, G(x, y)), y) with each pair's own code and
    with the code of the next pair (a different blur), and the mean |F(x, k_own) - F(x, k_other)|. An F whose code
    path has died (e.g. a ReLU that never fires) gives the same PSNR both ways and a difference of 0."""
    pairs = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        codes = [model.net_g(item['gt'][None], item['lq'][None]) for item in pairs]
        own, other, change = [], [], []
        for index, item in enumerate(pairs):
            sharp, blurry = item['gt'][None], item['lq'][None]
            mine = model.net_f(sharp, codes[index])
            swapped = model.net_f(sharp, codes[(index + 1) % len(pairs)])
            own.append(reblur_psnr(mine, blurry))
            other.append(reblur_psnr(swapped, blurry))
            change.append(float((mine - swapped).abs().mean()))
    return {'own_code_psnr': float(np.mean(own)), 'swapped_code_psnr': float(np.mean(other)),
            'code_swap_change': float(np.mean(change))}


def _photos(scale: int) -> list:
    import cv2

    photos = []
    for path in bundled_photo_paths():
        image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        photos.append(
            cv2.resize(image, (image.shape[1] // scale, image.shape[0] // scale), interpolation=cv2.INTER_AREA))
    return photos


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
    crop, _ = random_crop(photo.astype(np.float32) / 255, size, rng)
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='folder for the checkpoints, options and figures')
    parser.add_argument('--iters', type=int, default=6000)
    parser.add_argument('--size', type=int, default=64, help='crop size')
    parser.add_argument('--kernel-size', type=int, default=21)
    parser.add_argument('--width', type=int, default=16, help='U-Net / G base width; the code has 4x this')
    parser.add_argument('--feat', type=int, default=32, help='feature-extractor and reconstruction width')
    parser.add_argument('--levels', type=int, default=4, help='U-Net levels and G down-samplings')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--lr', type=float, default=3e-4, help='1.5e-3 kills F\'s code path (see above)')
    parser.add_argument('--val-samples', type=int, default=16)
    parser.add_argument('--photo-scale', type=int, default=2, help='reduce the bundled photos this many times (1: not)')
    parser.add_argument(
        '--field-types',
        type=lambda text: dict((k, float(v)) for k, v in (item.split('=') for item in text.split(','))),
        default={'linear': 1.0},
        help='e.g. linear=1 or region=0.4,smooth=0.3,linear=0.3')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    opt = short_run_options(args)
    train_set, val_set = build_dataset(opt['datasets']['train']), build_dataset(opt['datasets']['val'])
    model = build_model(opt)
    figures = {'params': sum(p.numel() for p in model.net.parameters()), 'before': validation_figures(model, val_set)}
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    start, losses = time.time(), []
    for step in training_steps(model, loader, args.iters):
        losses.append(float(model.log_dict['l_pix']))
        if step % 100 == 0:
            print(f'iter {step}: l_pix (mean of last 100) {np.mean(losses[-100:]):.1f}, {time.time() - start:.0f} s',
                  flush=True)
    figures['train_seconds'] = time.time() - start
    figures['l_pix_first_100'], figures['l_pix_last_100'] = float(np.mean(losses[:100])), float(np.mean(losses[-100:]))
    figures['after'] = validation_figures(model, val_set)
    figures.update(uniform_transfer(model, args.size, args.kernel_size, args.photo_scale))
    figures.update(code_swap(model, val_set))
    model.save_network(model.net_g, 'net_g', -1)
    model.save_network(model.net_f, 'net_f', -1)
    for role in ('g', 'f'):
        os.replace(
            os.path.join(opt['path']['models'], f'net_{role}_latest.pth'), os.path.join(args.out, f'net_{role}.pth'))
    write_text(os.path.join(args.out, 'options.yml'), yaml.safe_dump(opt, sort_keys=False))
    write_text(os.path.join(args.out, 'figures.json'), json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == '__main__':
    main()
