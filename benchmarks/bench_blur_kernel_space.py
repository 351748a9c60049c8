"""Cost of the encoded blur-kernel space (Tran et al., CVPR 2021) on CPU: time and peak memory of the kernel
extractor G (code of a pair) and of the blur operator family F (blur from a code), inference, at 256x256 and 720p,
for the published sizes by default (G 26.4M, F 23.7M parameters; 49.2M together with shared features).

    python benchmarks/bench_blur_kernel_space.py [--sizes 256x256 720x1280] [--threads 1] [--repeat 1]
        [--only G F] [--width 64]

Each measurement runs in a fresh child process: it builds the network, makes its inputs, runs one untimed warm-up at
128x128, resets the kernel's resident-set high-water mark (``5`` into ``/proc/self/clear_refs``) and reads ``VmHWM``
after the timed calls; *peak* is that high-water mark minus ``VmRSS`` before the timed calls, i.e. what inference made
resident on top of the network and its inputs. *Time* is the fastest of ``--repeat`` calls. Prints a Markdown table.
``--width`` scales every width of G and F (64: published) for quick checks.
"""
import argparse
import time

from _common import run_spawned, status_bytes


def _measure(net_name: str, size: tuple, args: dict, queue) -> None:
    import torch

    from basicsr_blurfield.archs.blur_kernel_space_arch import BlurKernelExtractor, BlurOperatorFamily

    torch.set_num_threads(args['threads'])
    torch.manual_seed(0)
    width = args['width']
    if net_name == 'G':
        net = BlurKernelExtractor(num_feat=width, enc_feat=width, code_channels=8 * width).eval()
        run = lambda x: net(x, x.roll(3, dims=-1))  # noqa: E731
    else:
        net = BlurOperatorFamily(num_feat=width, unet_feat=width, code_channels=8 * width).eval()
        run = lambda x: net(x, torch.randn(1, net.code_channels, *net.code_size(*x.shape[-2:])))  # noqa: E731
    image = torch.rand(1, 3, *size)
    times = []
    with torch.no_grad():
        run(torch.rand(1, 3, 128, 128))
        before = status_bytes('VmRSS') / 2**20
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        for _ in range(args['repeat']):
            start = time.perf_counter()
            run(image)
            times.append(time.perf_counter() - start)
    queue.put({
        'params': sum(p.numel() for p in net.parameters()),
        'seconds': min(times),
        'peak_mib': status_bytes('VmHWM') / 2**20 - before
    })


def measure(net_name: str, size: tuple, args: dict) -> dict:
    return run_spawned(_measure, net_name, size, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', nargs='+', default=['256x256', '720x1280'], help='HxW sizes')
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads of each child')
    parser.add_argument('--repeat', type=int, default=1, help='timed calls per case (fastest reported)')
    parser.add_argument('--only', nargs='+', default=['G', 'F'], choices=['G', 'F'], help='networks to measure')
    parser.add_argument('--width', type=int, default=64, help='base width (64: published sizes)')
    args = parser.parse_args()
    options = {'threads': args.threads, 'repeat': args.repeat, 'width': args.width}
    print(f'threads {args.threads}, width {args.width}, fastest of {args.repeat}\n')
    print('| network | size | parameters | time (s) | peak (MiB) |\n|---|---|---:|---:|---:|')
    for size_text in args.sizes:
        size = tuple(int(v) for v in size_text.lower().split('x'))
        for net_name in args.only:
            result = measure(net_name, size, options)
            label = 'G (extractor)' if net_name == 'G' else 'F (operator)'
            print(
                f'| {label} | {size[0]}x{size[1]} | {result["params"]:,d} | {result["seconds"]:.2f} | '
                f'{result["peak_mib"]:.0f} |',
                flush=True)


if __name__ == '__main__':
    main()
