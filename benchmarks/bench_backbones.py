"""Deblurring backbones at their published configurations: parameters, MACs and CPU forward time at 256 x 256.

MACs come from mmengine's ``FlopAnalyzer`` (one multiply-add counts once; TLC's cumulative sums are not counted).
Forward time is the median of ``--repeats`` eval-mode, no-grad forwards of one (1, 3, S, S) image after
``--warmup`` untimed forwards, with ``--threads`` torch threads. Also times NAFNetLocal on a larger image
(``--local-size``), where TLC's local pooling is active.

    python benchmarks/bench_backbones.py [--size 256] [--repeats 3] [--warmup 1] [--threads 2] [--no-macs]
                                         [--archs NAFNet MPRNet ...] [--local-size 512] [--ma-conv]

``--ma-conv`` also times one 32-channel 3x3 convolution against one motion-aware convolution (Motion-ETR eq. 16,
the pure-torch deformable path) on a 1280 x 720 feature map, the size of MotionAwareDMPHN's full-resolution layers.
The motion-aware rows' MACs count its 9 per-tap 1x1 convolutions (as many as one 3x3 conv), not the bilinear sampling.
"""
import argparse
import os
import statistics
import time

import torch

from basicsr.archs import build_network

PUBLISHED = {
    'NAFNet': {'type': 'NAFNet', 'width': 64, 'middle_blk_num': 1, 'enc_blk_nums': [1, 1, 1, 28],
               'dec_blk_nums': [1, 1, 1, 1]},
    'NAFNetLocal': {'type': 'NAFNetLocal', 'width': 64, 'middle_blk_num': 1, 'enc_blk_nums': [1, 1, 1, 28],
                    'dec_blk_nums': [1, 1, 1, 1], 'train_size': [1, 3, 256, 256]},
    'MPRNet': {'type': 'MPRNet'},
    'MIMOUNet': {'type': 'MIMOUNet'},
    'MIMOUNetPlus': {'type': 'MIMOUNetPlus'},
    'DMPHN': {'type': 'DMPHN'},
    'MotionAwareDMPHN': {'type': 'MotionAwareDMPHN'},
}


def count_macs(net: torch.nn.Module, size: int) -> float:
    """Multiply-accumulates of one forward at (1, 3, size, size), via mmengine."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(net, (torch.rand(1, 3, size, size), ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    return float(analyzer.total())


def forward_seconds(net: torch.nn.Module, size: int, repeats: int, warmup: int) -> float:
    """Median wall time of ``repeats`` forwards after ``warmup`` untimed ones."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def ma_conv_cost(height: int, width: int, channels: int, repeats: int, warmup: int) -> list:
    """Forward time of one 3x3 conv vs one motion-aware conv (eq. 16, pure-torch deformable path) on a
    (1, channels, height, width) feature map: rows ``(name, seconds)``."""
    from basicsr_blurfield.archs.dmphn_arch import motion_aware_offsets
    from basicsr_blurfield.fields import OffsetField, deform_conv2d
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, channels, height, width, generator=generator)
    weight = torch.randn(channels, channels, 3, 3, generator=generator) * 0.05
    bias = torch.zeros(channels)
    ends = torch.randn(2, 1, 2, height, width, generator=generator) * 5
    offset = motion_aware_offsets(OffsetField.from_endpoints(ends[0], ends[1], 15, 'quadratic').offsets)
    rows = []
    for name, call in (('conv2d 3x3', lambda: torch.nn.functional.conv2d(x, weight, bias, padding=1)),
                       ('motion-aware 3x3 (deform_conv2d)', lambda: deform_conv2d(x, offset, weight, bias, padding=1))):
        times = []
        with torch.no_grad():
            for _ in range(warmup):
                call()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--archs', nargs='+', default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--local-size', type=int, default=512, help='image side for the extra NAFNetLocal row')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--no-macs', action='store_true', help='skip the MAC count (one extra traced forward each)')
    parser.add_argument('--ma-conv', action='store_true',
                        help='also time one 32-channel 3x3 conv against one motion-aware conv at 1280 x 720')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, cpu cores: {os.cpu_count()}, torch threads: {args.threads}, '
          f'load average: {tuple(round(v, 1) for v in os.getloadavg())}')
    print('| arch | params | GMACs @ S x S | CPU forward s (1 x 3 x S x S) | input S |')
    print('|---|---|---|---|---|')
    rows = [(name, args.size) for name in args.archs]
    if 'NAFNetLocal' in args.archs and args.local_size != args.size:
        rows.append(('NAFNetLocal', args.local_size))
    for name, size in rows:
        net = build_network(dict(PUBLISHED[name])).eval()
        params = sum(p.numel() for p in net.parameters())
        macs = '-' if args.no_macs or size != args.size else f'{count_macs(net, size) / 1e9:.2f}'
        seconds = forward_seconds(net, size, args.repeats, args.warmup)
        print(f'| {name} | {params:,} | {macs} | {seconds:.2f} | {size} |', flush=True)
        del net
    if args.ma_conv:
        print('\n| layer at 1 x 32 x 720 x 1280 | CPU forward s |\n|---|---|')
        for name, seconds in ma_conv_cost(720, 1280, 32, args.repeats, args.warmup):
            print(f'| {name} | {seconds:.3f} |', flush=True)


if __name__ == '__main__':
    main()
