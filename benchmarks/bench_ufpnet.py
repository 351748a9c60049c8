"""Cost of UFPNet's KE module (kernel estimator + flow decoding + kernel attention) on CPU, against NAFNet of the same
width: time and peak memory of one training step (256x256, batch 2: forward, PSNR + 0.01 re-blur loss, backward,
AdamW step) and of inference on a 720x1280 image, for the published width-64 networks by default.

    python benchmarks/bench_ufpnet.py [--width 64] [--enc 1 1 1 28] [--size 720 1280] [--repeat 1] [--threads 2]

Each measurement is preceded by an untimed warm-up call at 64x64. Peak memory is the peak resident set size of a
fresh child process per measurement (the parent only reports), so the figures include PyTorch's own footprint (its
baseline is printed first). Prints a Markdown table with the ratios.
"""
import argparse
import json
import multiprocessing as mp
import resource
import time


def _measure(kind: str, arch: str, args: dict, queue) -> None:
    import torch

    import basicsr_blurfield  # noqa: F401
    from basicsr.archs import build_network
    from basicsr.losses import build_loss

    torch.set_num_threads(args['threads'])
    torch.manual_seed(0)
    result = {}
    if kind != 'baseline':
        opt = {'type': arch, 'width': args['width'], 'enc_blk_nums': tuple(args['enc']), 'middle_blk_num': 1,
               'dec_blk_nums': (1, ) * len(args['enc'])}
        net = build_network(opt)
        result['params'] = sum(p.numel() for p in net.parameters())
        if kind == 'train':
            net.train()
            pixel = build_loss({'type': 'PSNRLoss', 'loss_weight': 1.0})
            reblur = build_loss({'type': 'ReblurLoss', 'loss_weight': 0.01})
            params = [p for p in net.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, 1e-3, betas=(0.9, 0.9), weight_decay=1e-3)
            times = []
            for step in range(args['repeat'] + 1):
                size = 64 if step == 0 else 256  # step 0 warms up at a small size and is not timed
                lq, gt = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
                start = time.perf_counter()
                optimizer.zero_grad()
                if arch == 'UFPNet':
                    out, field = net(lq, return_field=True)
                    loss = pixel(out, gt) + reblur(field, out, lq)
                else:
                    loss = pixel(net(lq), gt)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 0.01)
                optimizer.step()
                if step:
                    times.append(time.perf_counter() - start)
        else:
            net.eval()
            image = torch.rand(1, 3, *args['size'])
            times = []
            with torch.no_grad():
                net(torch.rand(1, 3, 64, 64))  # warm-up, not timed
                for _ in range(args['repeat']):
                    start = time.perf_counter()
                    net(image)
                    times.append(time.perf_counter() - start)
        result['seconds'] = min(times)
    result['peak_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def measure(kind: str, arch: str, args: dict) -> dict:
    context = mp.get_context('spawn')
    queue = context.Queue()
    process = context.Process(target=_measure, args=(kind, arch, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=64)
    parser.add_argument('--enc', type=int, nargs='+', default=[1, 1, 1, 28])
    parser.add_argument('--size', type=int, nargs=2, default=[720, 1280])
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', default=None, help='also write the raw figures to this file')
    args = vars(parser.parse_args())
    baseline = measure('baseline', None, args)
    print(f'CPU, {args["threads"]} threads; width {args["width"]}, enc_blk_nums {tuple(args["enc"])}; '
          f'process baseline {baseline["peak_mib"]:.0f} MiB (torch + package imported)\n')
    rows = {}
    for kind, label in (('train', 'train step 2x3x256x256'), ('infer', f'inference 1x3x{args["size"][0]}x'
                                                                           f'{args["size"][1]}')):
        for arch in ('NAFNet', 'UFPNet'):
            rows[(kind, arch)] = measure(kind, arch, args)
            print(f'measured {label} {arch}: {rows[(kind, arch)]}', flush=True)
    print('\n| measurement | NAFNet time (s) | UFPNet time (s) | time ratio | NAFNet peak RSS (MiB) | '
          'UFPNet peak RSS (MiB) | memory ratio |')
    print('|---|---|---|---|---|---|---|')
    for kind, label in (('train', 'train step, batch 2, 256x256'), ('infer', f'inference {args["size"][0]}x'
                                                                                 f'{args["size"][1]}')):
        naf, ufp = rows[(kind, 'NAFNet')], rows[(kind, 'UFPNet')]
        print(f'| {label} | {naf["seconds"]:.2f} | {ufp["seconds"]:.2f} | {ufp["seconds"] / naf["seconds"]:.2f} | '
              f'{naf["peak_mib"]:.0f} | {ufp["peak_mib"]:.0f} | {ufp["peak_mib"] / naf["peak_mib"]:.2f} |')
    naf_params, ufp_params = rows[('train', 'NAFNet')]['params'], rows[('train', 'UFPNet')]['params']
    print(f'\nparameters: NAFNet {naf_params:,d}, UFPNet {ufp_params:,d}')
    if args['json']:
        with open(args['json'], 'w') as f:
            json.dump({f'{k[0]}/{k[1]}': v for k, v in rows.items()}, f, indent=1)


if __name__ == '__main__':
    main()
