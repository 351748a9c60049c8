"""Time and peak memory of the blur-field operators against the published / naive baselines.

Usage::

    python benchmarks/bench_fields.py                 # every case, prints a Markdown table
    python benchmarks/bench_fields.py --quick         # small sizes only (a smoke run)
    python benchmarks/bench_fields.py --only perpixel --repeats 3 --threads 1
    python benchmarks/bench_fields.py --only "K=19 360x640" --baseline "#10" --clock cpu   # against our previous code

Each (case, implementation, mode) runs in its own subprocess: it builds the inputs, reads its resident set size
(``VmRSS``), resets the kernel's high-water mark (writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM``), runs
the operation once and reads ``VmHWM``. Peak memory is ``VmHWM - VmRSS before``: everything the operation (and the
backward pass, gradients included) made resident on top of its inputs. torch's CPU allocator takes large blocks
from the OS with ``mmap`` and gives them back on free, so RSS follows torch's own usage. Time is the median of
``--repeats`` further runs (only the first run when it takes over a minute), on the wall clock or, with
``--clock cpu``, in CPU seconds of the child (``time.process_time``: user plus system time, so page faults count;
with one thread it equals the wall time on an idle machine and does not grow when other jobs share the cores). Runs
whose estimated memory exceeds ``--memory-fraction`` (default 70 %) of ``MemAvailable`` are skipped and reported with
the estimate.

Baselines (written here, not in the library): per-pixel blur by ``F.unfold`` (UFPNet's published formulation:
unfold the padded image to ``(N, C*K*K, H*W)``, multiply by the kernels, sum), basis blur by ``B`` direct grouped
convolutions, each followed by its mixing map, and trajectory blur by a Python loop of ``T`` ``grid_sample`` calls
(Motion-ETR's blur creation module). The previous versions of our own per-pixel tap loop and FFT basis blur (before
issue 10) are kept here as baselines too, so that every table shows what a change gained. The time and memory
ratios are ours / baseline (below 1 is better).
"""
import argparse
import json
import os
import statistics
import time

import math

import torch
import torch.nn.functional as F
from _common import run_child, status_bytes, time_and_peak_cells

from basicsr_blurfield.fields import BasisField, KernelField, OffsetField, normalize_kernels
from basicsr_blurfield.fields._common import pad_image
from basicsr_blurfield.fields.basis_field import fast_fft_length

GIB = 1024**3
CASES = {
    # name: (kind, dict of sizes)
    'perpixel K=19 360x640 N=1': ('perpixel', dict(num=1, height=360, width=640, size=19)),
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
    'perpixel': ('tap loop (ours)', 'F.unfold', 'tap loop before #10'),
    'basis': ('method=auto (ours)', 'B direct convs', 'FFT before #10'),
    'offsets': ('OffsetField (ours)', 'loop of grid_sample')
}


def unfold_blur(sharp, kernels):
    num, channels, height, width = sharp.shape
    size = int(round(kernels.shape[1]**0.5))
    padded = F.pad(sharp, (size // 2, ) * 4, mode='replicate')
    columns = F.unfold(padded, size).view(num, channels, size * size, height, width)
    return (columns * kernels[:, None]).sum(2)


class _PreviousTaps:
    """The per-pixel tap loop as it was before issue 10 (row tiles of 2**15 image values, one multiply-add per tap and
    channel in the kernel gradient), with its three autograd functions."""
    tile_elements = 1 << 15

    @classmethod
    def row_tiles(cls, image):
        num, channels, height, width = image.shape
        rows = max(1, cls.tile_elements // (num * channels * width))
        return range(0, height, rows), rows

    @classmethod
    def gather(cls, padded, kernels):
        size, height, width = math.isqrt(kernels.shape[1]), kernels.shape[2], kernels.shape[3]
        out = padded.new_zeros(padded.shape[:2] + (height, width))
        starts, rows = cls.row_tiles(out)
        for top in starts:
            bottom = min(top + rows, height)
            tile, tile_kernels = out[:, :, top:bottom], kernels[:, :, top:bottom]
            for tap in range(size * size):
                i, j = divmod(tap, size)
                tile.addcmul_(tile_kernels[:, tap:tap + 1], padded[:, :, top + i:bottom + i, j:j + width])
        return out

    @classmethod
    def scatter(cls, values, kernels):
        size, height, width = math.isqrt(kernels.shape[1]), kernels.shape[2], kernels.shape[3]
        padded = values.new_zeros(values.shape[:2] + (height + size - 1, width + size - 1))
        starts, rows = cls.row_tiles(values)
        for top in starts:
            bottom = min(top + rows, height)
            tile, tile_kernels = values[:, :, top:bottom], kernels[:, :, top:bottom]
            for tap in range(size * size):
                i, j = divmod(tap, size)
                padded[:, :, top + i:bottom + i, j:j + width].addcmul_(tile_kernels[:, tap:tap + 1], tile)
        return padded

    @classmethod
    def correlate(cls, values, padded, size):
        height, width = values.shape[-2:]
        out = values.new_empty((values.shape[0], size * size, height, width))
        starts, rows = cls.row_tiles(values)
        for top in starts:
            bottom = min(top + rows, height)
            tile, tile_out = values[:, :, top:bottom], out[:, :, top:bottom]
            for tap in range(size * size):
                i, j = divmod(tap, size)
                window = padded[:, :, top + i:bottom + i, j:j + width]
                torch.mul(tile[:, 0], window[:, 0], out=tile_out[:, tap])
                for c in range(1, values.shape[1]):
                    tile_out[:, tap].addcmul_(tile[:, c], window[:, c])
        return out


class _PreviousGather(torch.autograd.Function):

    @staticmethod
    def forward(ctx, padded, kernels):
        ctx.save_for_backward(padded, kernels)
        return _PreviousTaps.gather(padded, kernels)

    @staticmethod
    def backward(ctx, grad):
        padded, kernels = ctx.saved_tensors
        size = math.isqrt(kernels.shape[1])
        return _PreviousTaps.scatter(grad, kernels), _PreviousTaps.correlate(grad, padded, size)


def previous_tap_blur(sharp, kernels):
    return _PreviousGather.apply(pad_image(sharp, math.isqrt(kernels.shape[1]) // 2, 'replicate'), kernels)


def previous_fft_basis_blur(sharp, basis, mixing):
    """The FFT basis blur as it was before issue 10: all B basis spectra at once, inverse FFTs in chunks."""
    num, channels, height, width = sharp.shape
    padded = pad_image(sharp, basis.shape[-1] // 2, 'replicate')
    fft_size = (fast_fft_length(padded.shape[2]), fast_fft_length(padded.shape[3]))
    image_spectrum = torch.fft.rfft2(padded, s=fft_size)
    basis_spectra = torch.fft.rfft2(basis, s=fft_size).conj()
    chunk = max(1, (1 << 24) // (num * channels * fft_size[0] * fft_size[1]))
    out = sharp.new_zeros(sharp.shape)
    for start in range(0, basis.shape[1], chunk):
        spectra = image_spectrum[:, None] * basis_spectra[:, start:start + chunk, None]
        filtered = torch.fft.irfft2(spectra, s=fft_size)[..., :height, :width]
        out = out + (mixing[:, start:start + chunk, None] * filtered).sum(1)
    return out


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
        return ((lambda x, k: KernelField(k, check=False).blur(x)), unfold_blur, previous_tap_blur)[impl]
    if kind == 'basis':
        return ((lambda x, b, m: BasisField(b, m, check=False).blur(x)), direct_basis_blur,
                previous_fft_basis_blur)[impl]
    return ((lambda x, o: OffsetField(o, check=False).blur(x)), loop_offset_blur)[impl]


def run_one(kind, sizes, impl, backward, repeats, clock='wall'):
    """Runs in the child process; returns a dict with seconds and peak bytes."""
    timer = time.process_time if clock == 'cpu' else time.perf_counter
    sharp, tensors = build(kind, sizes, backward)
    fn = operation(kind, impl)

    def step():
        out = fn(sharp, *tensors)
        if backward:
            out.backward(torch.ones_like(out))
            for tensor in [sharp] + tensors:
                tensor.grad = None
        return out

    before = status_bytes('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    start = timer()
    step()
    first = timer() - start
    peak = status_bytes('VmHWM') - before
    times = [first]
    if first < 60:
        times = []
        for _ in range(repeats):
            start = timer()
            step()
            times.append(timer() - start)
    return {'seconds': statistics.median(times), 'peak_bytes': peak}


def mem_available():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def run_case(name, kind, sizes, impl, backward, repeats, threads, memory_fraction, clock):
    need = estimate_bytes(kind, sizes, impl, backward)
    if need > memory_fraction * mem_available():
        return {'skipped': f'needs ~{need / GIB:.0f} GiB'}
    payload = dict(kind=kind, sizes=sizes, impl=impl, backward=backward, repeats=repeats, clock=clock)
    return run_child(os.path.abspath(__file__), payload, threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small sizes only')
    parser.add_argument('--only', default='', help='run the cases whose name contains this text')
    parser.add_argument('--baseline', default='', help='run the baselines whose label contains this text')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads in each child')
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall', help='wall time or CPU time of the child')
    parser.add_argument(
        '--memory-fraction', type=float, default=0.7, help='skip runs estimated above this share of MemAvailable')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        torch.set_num_threads(args.threads)
        spec = json.loads(args.child)
        print(
            json.dumps(
                run_one(spec['kind'], spec['sizes'], spec['impl'], spec['backward'], spec['repeats'], spec['clock'])))
        return
    cases = QUICK if args.quick else CASES
    print(f'torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, {args.clock} clock; '
          'peak = resident memory added on top of the inputs\n')
    print('| case | mode | ours | time (s) | peak (MiB) | baseline | time (s) | peak (MiB) | time ratio | '
          'memory ratio |')
    print('|---|---|---|---:|---:|---|---:|---:|---:|---:|')
    for name, (kind, sizes) in cases.items():
        if args.only not in name:
            continue
        for backward in (False, True):
            ours = run_case(name, kind, sizes, 0, backward, args.repeats, args.threads, args.memory_fraction,
                            args.clock)
            for impl in range(1, len(IMPLS[kind])):
                if args.baseline not in IMPLS[kind][impl]:
                    continue
                base = run_case(name, kind, sizes, impl, backward, args.repeats, args.threads, args.memory_fraction,
                                args.clock)
                speed = ratio = '-'
                if 'skipped' not in ours and 'skipped' not in base:
                    speed = f"{ours['seconds'] / base['seconds']:.2f}"
                    ratio = f"{ours['peak_bytes'] / max(base['peak_bytes'], 1):.3f}"
                mode = 'fwd+bwd' if backward else 'fwd'
                cells_ours, cells_base = ' | '.join(time_and_peak_cells(ours)), ' | '.join(time_and_peak_cells(base))
                print(
                    f'| {name} | {mode} | {IMPLS[kind][0]} | {cells_ours} | {IMPLS[kind][impl]} | {cells_base} | '
                    f'{speed} | {ratio} |',
                    flush=True)


if __name__ == '__main__':
    main()
