"""A short CPU training run from ``options/motion_etr_synthetic.yml`` (Zhang et al., §4.1 and §6.3), with sizes
overridden: does the self-supervised reblur loss learn motion?

    OMP_NUM_THREADS=1 python benchmarks/train_motion_etr_synthetic.py [--iters 300] [--size 64] [--kernel-size 17]
        [--num-feat 16] [--batch 4] [--lr 1e-3] [--val-samples 16] [--every 50] [--out DIR]

Data: ``SyntheticBlurDataset`` on the photos bundled with scikit-image (no download), linear motion-flow fields in the
offset representation (ground-truth offsets per pixel), ``--size`` crops, motion bounded by ``--kernel-size``. The
losses, weights and optimiser are the YAML's (MSE + 0.1 (1 - MS-SSIM) + 0.002 TV + 2e-5 magnitude, Adam with a linear
decay), except the learning rate (``--lr``) and the MS-SSIM scales (as many as the crop allows). Prints, at the start
and every ``--every`` iterations, on a fixed validation set: reblur PSNR / SSIM of the predicted field, the same for
the identity field (``gt`` against ``lq``), and the paper's motion error (squared endpoint-vector distance, px^2)
of the prediction and of the zero field. With ``--out`` it writes the final checkpoint and a trajectory plot of the
first validation image. Nothing is asserted: the test suite has a smaller version of this run.
"""
import argparse
import os
import time

import numpy as np
import torch
import yaml
from _common import training_steps

import basicsr_blurfield  # noqa: F401  (applies compat, registers everything)
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr_blurfield.atomic import imwrite, torch_save
from basicsr_blurfield.fields import OffsetField, draw_trajectories
from basicsr_blurfield.models.motion_offset_model import motion_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_option(args, root: str) -> dict:
    with open(os.path.join(ROOT, 'options', 'motion_etr_synthetic.yml')) as handle:
        opt = yaml.safe_load(handle)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(experiments_root=root, models=os.path.join(root, 'models'), log=root,
                       training_states=os.path.join(root, 'training_states'), visualization=os.path.join(root, 'vis'))
    for phase, dataset in opt['datasets'].items():
        dataset.update(dataroot_gt=None, gt_size=args.size, kernel_size=args.kernel_size, phase=phase)
    opt['datasets']['train'].update(batch_size_per_gpu=args.batch, num_worker_per_gpu=0)
    opt['datasets']['val']['num_samples'] = args.val_samples
    opt['network_g']['num_feat'] = args.num_feat
    opt['train']['optim_g']['lr'] = args.lr
    opt['train']['scheduler']['total_iters'] = args.iters
    opt['train']['total_iter'] = args.iters
    opt['train']['msssim_opt']['num_scales'] = max(s for s in range(1, 6) if args.size > 10 * 2**(s - 1))
    return opt


def validate(model, dataset) -> dict:
    figures = []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=1):
        model.feed_data(batch)
        model.test()
        values = model.evaluate_current()
        values['zero_field_motion_error'] = motion_error(OffsetField(torch.zeros_like(model.gt_field.offsets)),
                                                         model.gt_field)
        figures.append(values)
    return {name: float(np.mean([f[name] for f in figures])) for name in figures[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--kernel-size', type=int, default=17)
    parser.add_argument('--num-feat', type=int, default=16)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--val-samples', type=int, default=16)
    parser.add_argument('--every', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None, help='folder for the final checkpoint and a trajectory plot')
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    root = args.out or os.path.join('/tmp', 'motion_etr_short_run')
    opt = build_option(args, root)
    train_set, val_set = build_dataset(opt['datasets']['train']), build_dataset(opt['datasets']['val'])
    model = build_model(opt)
    print(f'{args.iters} iterations, {args.size}x{args.size} crops, K={args.kernel_size}, nf={args.num_feat}, batch '
          f'{args.batch}, lr {args.lr}, MS-SSIM scales {opt["train"]["msssim_opt"]["num_scales"]}, '
          f'{args.val_samples} validation images, torch threads {torch.get_num_threads()}\n')
    print('| iteration | reblur PSNR | identity PSNR | reblur SSIM | identity SSIM | motion error | zero-field motion '
          'error | seconds |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')

    def report(step, seconds):
        v = validate(model, val_set)
        print(f"| {step} | {v['reblur_psnr']:.2f} | {v['identity_psnr']:.2f} | {v['reblur_ssim']:.4f} | "
              f"{v['identity_ssim']:.4f} | {v['motion_error']:.2f} | {v['zero_field_motion_error']:.2f} | "
              f'{seconds:.0f} |', flush=True)

    report(0, 0)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    start = time.perf_counter()
    for step in training_steps(model, loader, args.iters):
        if step % args.every == 0 or step == args.iters:
            report(step, time.perf_counter() - start)
    if args.out:
        torch_save({'params': model.net_g.state_dict()}, os.path.join(args.out, 'net_g_short_run.pth'))
        batch = next(iter(torch.utils.data.DataLoader(val_set, batch_size=1)))
        model.feed_data(batch)
        model.test()
        picture = draw_trajectories(model.lq[0], model.field, step=8)
        imwrite(os.path.join(args.out, 'trajectories_val0.png'), picture[..., ::-1].copy())


if __name__ == '__main__':
    main()
