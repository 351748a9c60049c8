"""Throughput of SyntheticBlurDataset (and KernelDataset) through a DataLoader: samples per second.

Crops of 256 x 256 (blurred on a 256 + 2 * (K // 2) margin), K in {19, 33}, default field mix and each field type,
DataLoader with 0 and 2 workers, batch 8. Target (issue 4): >= 30 samples/s with 2 workers at K = 33. Besides the
wall-clock rate (which depends on what else runs on the machine) the table gives the CPU time per sample and the rate
it allows on an idle machine with as many free cores as workers.

    python benchmarks/bench_data.py [--samples 96] [--kernel-sizes 19 33] [--workers 0 2]
"""
import argparse
import gc
import os
import resource
import time

import torch
from torch.utils.data import DataLoader

from basicsr_blurfield.data.kernel_dataset import KernelDataset
from basicsr_blurfield.data.synthetic_blur_dataset import SyntheticBlurDataset

MIXES = {
    'mix 0.6/0.2/0.2': {
        'region': 0.6,
        'smooth': 0.2,
        'linear': 0.2
    },
    'region': {
        'region': 1.0
    },
    'smooth': {
        'smooth': 1.0
    },
    'linear': {
        'linear': 1.0
    },
}


def measure(dataset, workers: int, samples: int, batch_size: int = 8) -> dict:
    """Wall-clock samples/s and CPU ms per sample (main process + reaped workers) over ``samples`` items.

    One warm-up batch (worker start-up) is excluded from the wall time. The CPU time of the workers is read from
    ``RUSAGE_CHILDREN`` after they exit, so it includes their start-up; it bounds the throughput an idle machine with
    ``workers`` free cores would reach: ``workers * 1000 / cpu_ms`` (``1000 / cpu_ms`` for 0 workers).
    """
    cpu_start = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    iterator = iter(loader)
    next(iterator)
    start, seen = time.perf_counter(), 0
    for batch in iterator:
        seen += batch[next(iter(batch))].shape[0]
        if seen >= samples:
            break
    wall = time.perf_counter() - start
    del iterator
    gc.collect()
    cpu = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu_start
    cpu_ms = 1000 * cpu / (seen + batch_size)
    return {'rate': seen / wall, 'cpu_ms': cpu_ms, 'idle_rate': max(workers, 1) * 1000 / cpu_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--samples', type=int, default=96)
    parser.add_argument('--kernel-sizes', type=int, nargs='+', default=[19, 33])
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--representation', default='basis', choices=('basis', 'offset'))
    parser.add_argument('--mixes', nargs='+', default=list(MIXES), choices=list(MIXES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f'cpu cores: {os.cpu_count()}, torch threads in the main process: 1, load average: {os.getloadavg()}')
    print('| dataset | field types | K | workers | samples/s (wall, this load) | CPU ms/sample | samples/s if idle |')
    print('|---|---|---|---|---|---|---|')
    for kernel_size in args.kernel_sizes:
        for mix in args.mixes:
            ratios = MIXES[mix]
            if args.representation == 'offset' and 'region' in ratios:
                continue
            opt = {
                'phase': 'train',
                'gt_size': 256,
                'kernel_size': kernel_size,
                'num_samples': 100000,
                'seed': 0,
                'field_types': ratios,
                'field_representation': args.representation,
                'use_hflip': True,
                'use_rot': True
            }
            dataset = SyntheticBlurDataset(opt)
            for workers in args.workers:
                result = measure(dataset, workers, args.samples)
                print(
                    f'| SyntheticBlurDataset 256x256 {args.representation} | {mix} | {kernel_size} | {workers} | '
                    f'{result["rate"]:.1f} | {result["cpu_ms"]:.1f} | {result["idle_rate"]:.0f} |',
                    flush=True)
    for kernel_size in args.kernel_sizes:
        dataset = KernelDataset({'phase': 'train', 'kernel_size': kernel_size, 'num_samples': 100000})
        for workers in args.workers:
            result = measure(dataset, workers, 20 * args.samples, batch_size=64)
            print(
                f'| KernelDataset | shake 0.8 / linear 0.2 | {kernel_size} | {workers} | {result["rate"]:.0f} | '
                f'{result["cpu_ms"]:.2f} | {result["idle_rate"]:.0f} |',
                flush=True)


if __name__ == '__main__':
    main()
