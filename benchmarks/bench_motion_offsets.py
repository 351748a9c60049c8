"""Time and peak memory of Motion-ETR's offset network + blur creation (Zhang et al., eq. 3-4, Table 1): ours against
the published blur module's formulation.

Usage::

    python benchmarks/bench_motion_offsets.py                  # 256x256 batch 8 and 720p, prints a Markdown table
    python benchmarks/bench_motion_offsets.py --quick          # 64x64 batch 2 (a smoke run)
    python benchmarks/bench_motion_offsets.py --only 720p --repeats 1 --threads 1

Implementations (same weights, same inputs, zero padding outside the image as published):

- ours: ``MotionOffsetNet(constraint='quadratic', num_steps=15)(lq)`` returns an ``OffsetField`` built from the two
  endpoints, whose ``blur`` runs one ``grid_sample`` per instant accumulated in place;
- published formulation (written here, not in the library): the same network's endpoints expanded into the full
  ``(N, 2 T, H, W)`` offset map (what the authors' ``OffsetNet_quad.forward`` returns), split into T chunks, one
  ``grid_sample`` each (their per-chunk ``BlurNet`` call), the T warped images kept in a list and averaged.

Modes: ``fwd`` is inference (``torch.no_grad``: network + blur); ``fwd+bwd`` is a training step's forward and backward
(MSE of the re-blurred image against a blurry one, gradients for every network weight); the ``blur only`` rows time
the blur creation alone on fixed offsets (fwd+bwd: gradients for the image and the offsets). Each (case,
implementation, mode) runs in a fresh subprocess; peak memory is the rise of the resident set's high-water mark
(``VmHWM`` after ``/proc/self/clear_refs``) over the resident size before the operation, so it counts everything the
operation made resident on top of its inputs and the network, as in ``bench_fields.py``. Time is the median of
``--repeats`` runs after the first.
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from _common import run_child, status_bytes, time_and_peak_cells

import basicsr_blurfield  # noqa: F401  (applies compat, registers the archs)
from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.fields import OffsetField
from basicsr_blurfield.fields.offset_field import trajectory_weights

CASES = {'256x256 N=8': dict(num=8, height=256, width=256), '720p N=1': dict(num=1, height=720, width=1280)}
QUICK = {'64x64 N=2': dict(num=2, height=64, width=64)}
IMPLS = ('ours (OffsetField)', 'published (T chunks, list of T grid_sample)')
STEPS = 15


def published_blur(sharp, start, end, steps=STEPS):
    """The authors' formulation: full offset map, T chunks, T warped images kept, then averaged (zeros outside)."""
    first, last = trajectory_weights(steps, 'quadratic')
    offsets = torch.cat([a * start + b * end for a, b in zip(first.tolist(), last.tolist())], 1)  # (N, 2 T, H, W)
    height, width = sharp.shape[-2:]
    rows = torch.arange(height, dtype=sharp.dtype, device=sharp.device)[:, None]
    cols = torch.arange(width, dtype=sharp.dtype, device=sharp.device)
    warped = []
    for chunk in torch.chunk(offsets, steps, dim=1):
        grid = torch.stack(
            ((cols + chunk[:, 0]) * (2 / (width - 1)) - 1, (rows + chunk[:, 1]) * (2 / (height - 1)) - 1), -1)
        warped.append(F.grid_sample(sharp, grid, padding_mode='zeros', align_corners=True))
    return sum(warped) / steps


def run_one(sizes, impl, mode, repeats):
    """Runs in the child process; returns seconds (median) and peak bytes."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    num, height, width = sizes['num'], sizes['height'], sizes['width']
    sharp, blurry = torch.rand(num, 3, height, width, generator=gen), torch.rand(num, 3, height, width, generator=gen)
    net = MotionOffsetNet(num_feat=16, constraint='quadratic', num_steps=STEPS, padding='zeros')
    if mode == 'blur only':
        start = (3 * torch.randn(num, 2, height, width, generator=gen)).requires_grad_(True)
        end = (3 * torch.randn(num, 2, height, width, generator=gen)).requires_grad_(True)
        sharp.requires_grad_(True)
    train = mode != 'fwd'

    def step():
        with torch.set_grad_enabled(train):
            if mode == 'blur only':
                out = (
                    OffsetField.from_endpoints(start, end, STEPS, 'quadratic', 'zeros').blur(sharp)
                    if impl == 0 else published_blur(sharp, start, end))
            elif impl == 0:
                out = net(blurry).blur(sharp)
            else:
                out = published_blur(sharp, *net.endpoints(blurry))
            if train:
                F.mse_loss(out, blurry).backward()
                for tensor in list(net.parameters()) + ([sharp, start, end] if mode == 'blur only' else []):
                    tensor.grad = None

    before = status_bytes('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    start_time = time.perf_counter()
    step()
    first = time.perf_counter() - start_time
    peak = status_bytes('VmHWM') - before
    times = []
    for _ in range(repeats):
        start_time = time.perf_counter()
        step()
        times.append(time.perf_counter() - start_time)
    return {'seconds': statistics.median(times) if times else first, 'peak_bytes': peak}


def run_case(sizes, impl, mode, repeats, threads):
    return run_child(os.path.abspath(__file__), dict(sizes=sizes, impl=impl, mode=mode, repeats=repeats), threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small size only')
    parser.add_argument('--only', default='', help='run the cases whose name contains this text')
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads in each child')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        torch.set_num_threads(args.threads)
        spec = json.loads(args.child)
        print(json.dumps(run_one(spec['sizes'], spec['impl'], spec['mode'], spec['repeats'])))
        return
    print(f'torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} after one untimed run; '
          f'MotionOffsetNet nf=16 quadratic T={STEPS}; peak = resident memory added on top of inputs and weights\n')
    print('| case | mode | ours time (s) | ours peak (MiB) | published time (s) | published peak (MiB) | time ratio | '
          'memory ratio |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for name, sizes in (QUICK if args.quick else CASES).items():
        if args.only not in name:
            continue
        for mode in ('fwd', 'fwd+bwd', 'blur only'):
            ours = run_case(sizes, 0, mode, args.repeats, args.threads)
            base = run_case(sizes, 1, mode, args.repeats, args.threads)
            speed = ratio = '-'
            if 'skipped' not in ours and 'skipped' not in base:
                speed = f"{ours['seconds'] / base['seconds']:.2f}"
                ratio = f"{ours['peak_bytes'] / max(base['peak_bytes'], 1):.2f}"
            label = 'blur only, fwd+bwd' if mode == 'blur only' else f'net + blur, {mode}'
            cells_ours, cells_base = ' | '.join(time_and_peak_cells(ours)), ' | '.join(time_and_peak_cells(base))
            print(f'| {name} | {label} | {cells_ours} | {cells_base} | {speed} | {ratio} |', flush=True)


if __name__ == '__main__':
    main()
