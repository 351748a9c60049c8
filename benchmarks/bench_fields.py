"""Time and peak memory of the blur-field operators against the published / naive baselines.

Usage::

    python benchmarks/bench_fields.py                 # every case, prints a Markdown table
    python benchmarks/bench_fields.py --quick         # small sizes only (a smoke run)
    python benchmarks/bench_fields.py --only perpixel --repeats 3 --threads 1

Each (case, implementation, mode) runs in its own subprocess: it builds the inputs, reads its resident set size
(``VmRSS``), resets the kernel's high-water mark (writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM``), runs
the operation once and reads ``VmHWM``. Peak memory is ``VmHWM - VmRSS before``: everything the operation (and the
backward pass, gradients included) made resident on top of its inputs. torch's CPU allocator takes large blocks
from the OS with ``mmap`` and gives them back on free, so RSS follows torch's own usage. Time is the median of
``--repeats`` further runs (only the first run when it takes over a minute). Runs whose estimated memory exceeds
``--memory-fraction`` (default 70 %) of ``MemAvailable`` are skipped and reported with the estimate.

Baselines (written here, not in the library): per-pixel blur by ``F.unfold`` (UFPNet's published formulation:
unfold the padded image to ``(N, C*K*K, H*W)``, multiply by the kernels, sum), basis blur by ``B`` direct grouped
convolutions, each followed by its mixing map, and trajectory blur by a Python loop of ``T`` ``grid_sample`` calls
(Motion-ETR's blur creation module).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from basicsr_blurfield.fields import BasisField, KernelField, OffsetField, normalize_kernels

GIB = 1024**3
CASES = {
    # name: (kind, dict of sizes)
    'perpixel K=19 720p N=1': ('perpixel', dict(num=1, height=720, width=1280, size=19)),
    'perpixel K=33 720p N=1': ('perpixel', dict(num=1, height=720, width=1280, size=33)),
    'perpixel K=19 256 N=8': ('perpixel', dict(num=8, height=256, width=256, size=19)),
    'perpixel K=33 256 N=8': ('perpixel', dict(num=8, height=256, width=256, size=33)),
    'basis B=25 K=33 720p N=1': ('basis', dict(num=1, height=720, width=1280, size=33, num_basis=25)),
    'offsets T=15 720p N=1': ('offsets', dict(num=1, height=720, width=1280, steps=15)),
    'offsets T=15 256 N=8': ('offsets', dict(num=8, height=256, width=256, steps=15)),
}
QUICK = {
    'perpixel K=9 64 N=2': ('perpixel', dict(num=2, height=64, width=64, size=9)),
    'basis B=5 K=15 64 N=2': ('basis', dict(num=2, height=64, width=64, size=15, num_basis=5)),
    'offsets T=7 64 N=2': ('offsets', dict(num=2, height=64, width=64, steps=7)),
}
IMPLS = {
    'perpixel': ('tap loop (ours)', 'F.unfold'),
    'basis': ('method=auto (ours)', 'B direct convs'),
    'offsets': ('OffsetField (ours)', 'loop of grid_sample')
}


def unfold_blur(sharp, kernels):
    num, channels, height, width = sharp.shape
    size = int(round(kernels.shape[1]**0.5))
    padded = F.pad(sharp, (size // 2, ) * 4, mode='replicate')
    columns = F.unfold(padded, size).view(num, channels, size * size, height, width)
    return (columns * kernels[:, None]).sum(2)


def direct_basis_blur(sharp, basis, mixing):
    num, channels, height, width = sharp.shape
    size = basis.shape[-1]
    padded = F.pad(sharp, (size // 2, ) * 4, mode='replicate').reshape(1, num * channels, height + size - 1, -1)
    out = 0
    for b in range(basis.shape[1]):
        weight = basis[:, b, None, None].expand(num, channels, 1, size, size).reshape(num * channels, 1, size, size)
        out = out + mixing[:, b, None] * F.conv2d(padded, weight, groups=num * channels).view(sharp.shape)
    return out


def loop_offset_blur(sharp, offsets):
    num, steps, _, height, width = offsets.shape
    rows = torch.arange(height, dtype=sharp.dtype)[:, None]
    cols = torch.arange(width, dtype=sharp.dtype)
    out = 0
    for t in range(steps):
        grid = torch.stack(
            ((cols + offsets[:, t, 0]) * (2 / (width - 1)) - 1, (rows + offsets[:, t, 1]) * (2 / (height - 1)) - 1), -1)
        out = out + F.grid_sample(sharp, grid, padding_mode='border', align_corners=True)
    return out / steps


def estimate_bytes(kind, sizes, impl, backward):
    """Rough resident bytes of a run (inputs included), used only to skip runs that cannot fit."""
    channels = 3
    if kind == 'perpixel':
        image = sizes['num'] * sizes['height'] * sizes['width'] * 4
        field = image * sizes['size']**2
        work = field * channels * (3 if backward else 2) if impl == 1 else image * channels * 4
        return field * (1 + backward) + work
    return 0


def build(kind, sizes, requires_grad):
    gen = torch.Generator().manual_seed(0)
    num, height, width = sizes['num'], sizes['height'], sizes['width']
    sharp = torch.rand(num, 3, height, width, generator=gen)
    if kind == 'perpixel':
        tensors = [normalize_kernels(torch.rand(num, sizes['size']**2, height, width, generator=gen), 1)]
    elif kind == 'basis':
        basis = normalize_kernels(
            torch.rand(num, sizes['num_basis'], sizes['size'], sizes['size'], generator=gen), (2, 3))
        tensors = [basis, torch.softmax(torch.randn(num, sizes['num_basis'], height, width, generator=gen), 1)]
    else:
        tensors = [3 * torch.randn(num, sizes['steps'], 2, height, width, generator=gen)]
    for tensor in [sharp] + tensors:
        tensor.requires_grad_(requires_grad)
    return sharp, tensors


def operation(kind, impl):
    if kind == 'perpixel':
        return (lambda x, k: KernelField(k, check=False).blur(x)) if impl == 0 else unfold_blur
    if kind == 'basis':
        return (lambda x, b, m: BasisField(b, m, check=False).blur(x)) if impl == 0 else direct_basis_blur
    return (lambda x, o: OffsetField(o, check=False).blur(x)) if impl == 0 else loop_offset_blur


def _status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{key} not found in /proc/self/status')


def run_one(kind, sizes, impl, backward, repeats):
    """Runs in the child process; returns a dict with seconds and peak bytes."""
    sharp, tensors = build(kind, sizes, backward)
    fn = operation(kind, impl)

    def step():
        out = fn(sharp, *tensors)
        if backward:
            out.backward(torch.ones_like(out))
            for tensor in [sharp] + tensors:
                tensor.grad = None
        return out

    before = _status('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    peak = _status('VmHWM') - before
    times = [first]
    if first < 60:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return {'seconds': statistics.median(times), 'peak_bytes': peak}


def mem_available():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def run_case(name, kind, sizes, impl, backward, repeats, threads, memory_fraction):
    need = estimate_bytes(kind, sizes, impl, backward)
    if need > memory_fraction * mem_available():
        return {'skipped': f'needs ~{need / GIB:.0f} GiB'}
    payload = json.dumps(dict(kind=kind, sizes=sizes, impl=impl, backward=backward, repeats=repeats))
    cmd = [sys.executable, os.path.abspath(__file__), '--child', payload, '--threads', str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {'skipped': f'failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}'}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(result):
    if 'skipped' in result:
        return result['skipped'], '-'
    return f"{result['seconds']:.3f}", f"{result['peak_bytes'] / 2**20:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small sizes only')
    parser.add_argument('--only', default='', help='run the cases whose name contains this text')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads in each child')
    parser.add_argument(
        '--memory-fraction', type=float, default=0.7, help='skip runs estimated above this share of MemAvailable')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        torch.set_num_threads(args.threads)
        spec = json.loads(args.child)
        print(json.dumps(run_one(spec['kind'], spec['sizes'], spec['impl'], spec['backward'], spec['repeats'])))
        return
    cases = QUICK if args.quick else CASES
    print(f'torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}; '
          'peak = resident memory added on top of the inputs\n')
    print('| case | mode | ours | time (s) | peak (MiB) | baseline | time (s) | peak (MiB) | speed-up | memory ratio |')
    print('|---|---|---|---:|---:|---|---:|---:|---:|---:|')
    for name, (kind, sizes) in cases.items():
        if args.only not in name:
            continue
        for backward in (False, True):
            ours = run_case(name, kind, sizes, 0, backward, args.repeats, args.threads, args.memory_fraction)
            base = run_case(name, kind, sizes, 1, backward, args.repeats, args.threads, args.memory_fraction)
            speed = ratio = '-'
            if 'skipped' not in ours and 'skipped' not in base:
                speed = f"{base['seconds'] / ours['seconds']:.2f}x"
                ratio = f"{ours['peak_bytes'] / max(base['peak_bytes'], 1):.3f}"
            mode = 'fwd+bwd' if backward else 'fwd'
            print(
                f'| {name} | {mode} | {IMPLS[kind][0]} | {" | ".join(fmt(ours))} | {IMPLS[kind][1]} | '
                f'{" | ".join(fmt(base))} | {speed} | {ratio} |',
                flush=True)


if __name__ == '__main__':
    main()
