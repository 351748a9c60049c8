"""Speed and memory of UFPNetLocal (Fang et al., CVPR 2023) on CPU: the fast path against the faithful reference path.

Both variants compute the released network (same weights, same inputs; ``tests/archs/test_ufpnet.py`` checks that
their outputs and gradients agree). The *reference* is the implementation before the speed work, kept here as the
baseline (:func:`reference_path` patches it in):

- kernel decoding: softmax and standardisation over full (N, 361, H, W) tensors, a permute to (N*H*W, 361) rows, the
  flow's layer-by-layer inverse over all 361 entries of each coupling (masked products), a permute back;
- both estimator heads at once, sigma by an out-of-place sigmoid; every kernel map held until the forward ends;
- NCHW memory format everywhere; channel layer norm by ``var_mean`` over dim 1; 1x1 convs through ``nn.Conv2d``
  (PyTorch's native path for a batch below 16 on one thread).

The *fast* path is the library's: per-pixel blocks of 1024 codes run through the whole flow in cache, in place,
computing only the changing half of each coupling (:meth:`KernelFlowPrior.decode_columns`), no (N, 361, H, W)
temporaries; the uncertainty head reduced in place before the code head runs; each kernel map released once its
attention modules have run; channels-last on CPU (oneDNN's convs, the 361-channel ones 2-5x faster);
``F.layer_norm`` on the channels-last view; oneDNN for every 1x1 conv.

    python benchmarks/bench_ufpnet.py [--width 64] [--enc 1 1 1 28] [--sizes 256x256 720x1280] [--no-train]
                                      [--threads 1] [--repeat 1]

Every measurement runs in a fresh child process (spawn), preceded by an untimed warm-up call at 64x64; peak memory
is that process's peak resident set size (so it includes PyTorch, the weights and the warm-up; the bare process
baseline is printed first). Training step: UFPNetLocal, batch 2, 256x256, PSNR loss + 0.01 re-blur L1 through the
returned field, backward, gradient clipping, AdamW (estimator frozen, as in stage III). Prints a Markdown table.
"""
import argparse
import contextlib
import json
import resource
import time


def _reference_decode_codes(self, code, sigma, noise, normalize):
    """Before the speed work: full-tensor standardisation, permute to rows, layer-by-layer flow inverse, permute."""
    import torch

    from basicsr_blurfield.archs.kernel_estimator_arch import resample_codes

    code = torch.softmax(code, dim=1)
    std, mean = torch.std_mean(code, dim=1, keepdim=True)
    z_hat = resample_codes((code - mean) / std, sigma, noise is not None, noise=noise)
    num, taps, height, width = z_hat.shape
    rows = z_hat.permute(0, 2, 3, 1).reshape(-1, taps)
    if torch.is_grad_enabled() or rows.shape[0] <= 65536:
        kernels = self.flow.decode(rows, normalize=normalize)
    else:
        kernels = torch.cat([self.flow.decode(chunk, normalize=normalize) for chunk in rows.split(65536)])
    return kernels.reshape(num, height, width, taps).permute(0, 3, 1, 2).contiguous()


def _reference_heads(self, features, size):
    """Before the speed work: both heads at once, sigma by an out-of-place sigmoid."""
    import torch

    from basicsr_blurfield.archs.arch_util import crop_to

    code, logits = self.kernel_extra.Conv_tail['mean'](features), self.kernel_extra.Conv_tail['var'](features)
    return crop_to(code, size), torch.sigmoid(crop_to(logits, size)).mean(dim=1, keepdim=True)


def _reference_layer_norm(self, x):
    import torch

    var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
    normed = (x - mean) * torch.rsqrt(var + self.eps)
    return normed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


@contextlib.contextmanager
def reference_path():
    """Within the block, the UFPNet family runs the faithful un-optimised reference path (module docstring)."""
    from torch import nn

    from basicsr_blurfield.archs import kernel_attention, kernel_estimator_arch, nafnet_arch

    saved = [(kernel_estimator_arch.LatentKernelEstimation, '_decode_codes', _reference_decode_codes),
             (kernel_estimator_arch.LatentKernelEstimation, '_heads', _reference_heads),
             (kernel_attention.KernelGuidedMixin, '_release_finished_maps', lambda self: None),
             (nafnet_arch._LayerNorm2d, 'forward', _reference_layer_norm),
             (nafnet_arch._PointwiseConv, 'forward', nn.Conv2d.forward),
             (nafnet_arch, 'channels_last_on_cpu', lambda x: x),
             (kernel_estimator_arch, 'channels_last_on_cpu', lambda x: x)]
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in saved]
    try:
        for owner, name, replacement in saved:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _measure(kind: str, variant: str, args: dict, queue) -> None:
    import torch

    import basicsr_blurfield  # noqa: F401
    from basicsr.archs import build_network
    from basicsr.losses import build_loss

    torch.set_num_threads(args['threads'])
    result = {}
    context = reference_path() if variant == 'reference' else contextlib.nullcontext()
    with context:
        if kind != 'baseline':
            torch.manual_seed(0)
            net = build_network({'type': 'UFPNetLocal', 'width': args['width'], 'enc_blk_nums': tuple(args['enc']),
                                 'middle_blk_num': 1, 'dec_blk_nums': (1, ) * len(args['enc'])})
            generator = torch.Generator().manual_seed(1)
            times = []
            if kind == 'train':
                net.train()
                pixel = build_loss({'type': 'PSNRLoss', 'loss_weight': 1.0})
                reblur = build_loss({'type': 'ReblurLoss', 'loss_weight': 0.01})
                params = [p for p in net.parameters() if p.requires_grad]
                optimizer = torch.optim.AdamW(params, 1e-3, betas=(0.9, 0.9), weight_decay=1e-3)
                for step in range(args['repeat'] + 1):
                    size = 64 if step == 0 else 256  # step 0 warms up at a small size and is not timed
                    lq = torch.rand(2, 3, size, size, generator=generator)
                    gt = torch.rand(2, 3, size, size, generator=generator)
                    start = time.perf_counter()
                    optimizer.zero_grad()
                    out, field = net(lq, return_field=True, generator=torch.Generator().manual_seed(2))
                    loss = pixel(out, gt) + reblur(field, out, lq)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 0.01)
                    optimizer.step()
                    if step:
                        times.append(time.perf_counter() - start)
            else:
                net.eval()
                image = torch.rand(1, 3, *kind, generator=generator)
                with torch.no_grad():
                    net(torch.rand(1, 3, 64, 64))  # warm-up, not timed
                    for _ in range(args['repeat']):
                        start = time.perf_counter()
                        net(image)
                        times.append(time.perf_counter() - start)
            result['seconds'] = min(times)
    result['peak_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def measure(kind, variant: str, args: dict) -> dict:
    from _common import run_spawned  # the benchmarks folder (tests load this file for its reference path only)

    return run_spawned(_measure, kind, variant, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=64)
    parser.add_argument('--enc', type=int, nargs='+', default=[1, 1, 1, 28])
    parser.add_argument('--sizes', nargs='+', default=['256x256', '720x1280'], help='inference sizes, HxW')
    parser.add_argument('--no-train', action='store_true', help='skip the training step')
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--json', default=None, help='also write the raw figures to this file')
    args = vars(parser.parse_args())
    baseline = measure('baseline', 'fast', args)
    print(f'CPU, {args["threads"]} thread(s); UFPNetLocal width {args["width"]}, enc_blk_nums {tuple(args["enc"])}; '
          f'bare process {baseline["peak_mib"]:.0f} MiB (torch + package imported)\n', flush=True)
    kinds = [] if args['no_train'] else [('train', 'train step, batch 2, 256x256')]
    kinds += [(tuple(int(v) for v in size.split('x')), f'inference {size}') for size in args['sizes']]
    rows = {}
    for kind, label in kinds:
        for variant in ('reference', 'fast'):
            rows[(label, variant)] = measure(kind, variant, args)
            print(f'measured {label} {variant}: {rows[(label, variant)]}', flush=True)
    print('\n| measurement | reference time (s) | fast time (s) | time ratio | reference peak RSS (MiB) | '
          'fast peak RSS (MiB) | memory ratio |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for _, label in kinds:
        ref, fast = rows[(label, 'reference')], rows[(label, 'fast')]
        print(f'| {label} | {ref["seconds"]:.2f} | {fast["seconds"]:.2f} | {fast["seconds"] / ref["seconds"]:.2f} | '
              f'{ref["peak_mib"]:.0f} | {fast["peak_mib"]:.0f} | {fast["peak_mib"] / ref["peak_mib"]:.2f} |')
    if args['json']:
        from basicsr_blurfield.atomic import write_text
        write_text(args['json'], json.dumps({f'{label}/{variant}': value for (label, variant), value in rows.items()},
                                            indent=1))


if __name__ == '__main__':
    main()
