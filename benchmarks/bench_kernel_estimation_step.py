"""Training-step time of UFPNet's kernel estimator (stage II) with the supervised kernel loss: lazy vs eager field.

Same network (``FlowKernelEstimator``, K = 19), same batch of synthetic blurry crops and ground-truth fields, one
process, 1 thread by default. Cases per crop size:

- ``eager``: the field decoded at every pixel with autograd (``net(lq)``), then ``KernelLoss`` on sampled pixels
  (what a step cost before the lazy field);
- ``lazy``: ``net(lq, lazy=True)``: the trunk at every pixel, heads and flow only at the sampled pixels (ours);
- ``lazy + re-blur``: the lazy field plus the re-blur L1 (which decodes every pixel, once).

Prints a Markdown table: seconds per step (forward, backward, AdamW step; the least of ``--repeats``), ratio to eager.

    python benchmarks/bench_kernel_estimation_step.py [--sizes 64 96] [--batch 8] [--samples 256] [--num-feat 16]
"""
import argparse
import time

import torch


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[64, 96], help='crop sides (default: 64 96)')
    parser.add_argument('--batch', type=int, default=8, help='crops per step (default: 8)')
    parser.add_argument('--samples', type=int, default=256, help='kernel-loss pixels per crop (default: 256)')
    parser.add_argument('--num-feat', type=int, default=16, help='estimator width (default: 16; published 64)')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps per case, least kept (default: 3)')
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads (default: 1)')
    return parser.parse_args()


def main():
    args = _parse()
    torch.set_num_threads(args.threads)
    from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
    from basicsr_blurfield.data.synthetic_blur_dataset import SyntheticBlurDataset, field_from_batch
    from basicsr_blurfield.losses.kernel_loss import KernelLoss
    from basicsr_blurfield.losses.reblur_loss import ReblurLoss

    rows = []
    for size in args.sizes:
        dataset = SyntheticBlurDataset(dict(name='bench', dataroot_gt=None, gt_size=size, kernel_size=19,
                                            field_types={'smooth': 0.5, 'linear': 0.5}, basis_grid=4,
                                            num_samples=args.batch, seed=0, phase='val'))
        batch = torch.utils.data.default_collate([dataset[i] for i in range(args.batch)])
        gt_field = field_from_batch(batch)
        times = {}
        for case in ('eager', 'lazy', 'lazy + re-blur'):
            torch.manual_seed(0)
            net = FlowKernelEstimator(num_feat=args.num_feat).train()
            optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-4)
            kernel_loss, reblur_loss = KernelLoss(p=1, num_samples=args.samples, tile_size=4096), ReblurLoss()
            best = float('inf')
            for repeat in range(args.repeats + 1):  # the first step is a warm-up
                start = time.perf_counter()
                field = net(batch['lq'], lazy=case != 'eager')
                loss = kernel_loss(field, gt_field, generator=torch.Generator().manual_seed(repeat))
                if case == 'lazy + re-blur':
                    loss = loss + reblur_loss(field, batch['gt'], batch['lq'])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if repeat:
                    best = min(best, time.perf_counter() - start)
            times[case] = best
        for case, seconds in times.items():
            rows.append(f'| {args.batch} x {size}x{size} | {case} | {seconds:.3f} | {seconds / times["eager"]:.2f} |')
    print(f'FlowKernelEstimator K=19, num_feat {args.num_feat}, kernel L1 on {args.samples} pixels per crop, '
          f'{args.threads} thread(s)\n')
    print('| batch | field | s / step | ratio to eager |\n|---|---|---:|---:|')
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
