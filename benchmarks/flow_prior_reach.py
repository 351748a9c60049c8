"""How close the kernels an estimator can reach through a flow prior come to the true ones (UFPNet, Fang et al. eq. 3-6).

The published estimator standardises its code at every pixel (softmax over the L = K*K channels, then zero mean and
unit unbiased std), so it only reaches kernels ``f_theta(z)`` with ``z`` on that sphere. This script takes true
kernels of synthetic fields (the training field types, K = 19), encodes them with the prior (``z = f_theta^-1(k)``)
and reports, as the mean kernel L1 ``sum |k' - k|`` to the clean kernel (0 = exact, 2 = disjoint):

- ``exact latent``: decode(encode(k)): the flow's own round trip;
- ``standardised latent``: decode(standardise(encode(k))): the nearest code of that form to the exact one;
- ``dequantised``: the kernel with the prior's training noise (``dequantize``, U(0, a) per tap, renormalised);
- ``standardised dequantised latent``: decode(standardise(encode(dequantised k))).

It also prints the per-kernel mean and std of the exact latents (a standardised code has 0 and 1).

    python benchmarks/flow_prior_reach.py [--checkpoint ufpnet-ke-reference] [--amplitude 1e-3] [--count 8]
"""
import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default='ufpnet-ke-reference', help='estimator holding the prior')
    parser.add_argument('--amplitude', type=float, default=1e-3, help='dequantisation amplitude (prior fit: 1e-3)')
    parser.add_argument('--count', type=int, default=8, help='synthetic 96 x 96 images (default: 8)')
    parser.add_argument('--points', type=int, default=256, help='kernels drawn per image (default: 256)')
    args = parser.parse_args()

    import torch

    from basicsr_blurfield.data.synthetic_blur_dataset import SyntheticBlurDataset, field_from_batch
    from basicsr_blurfield.models.flow_prior_model import dequantize
    from basicsr_blurfield.reference_models import load_estimator

    torch.manual_seed(0)
    net, _ = load_estimator(args.checkpoint, kind='ufpnet')
    dataset = SyntheticBlurDataset(dict(name='reach', dataroot_gt=None, gt_size=96, kernel_size=net.flow.size,
                                        field_types={'region': 0.2, 'smooth': 0.4, 'linear': 0.4}, basis_grid=4,
                                        num_samples=args.count, seed=1, phase='val'))
    kernels = []
    for index in range(args.count):
        field = field_from_batch(torch.utils.data.default_collate([dataset[index]]))
        points = torch.stack([torch.zeros(args.points, dtype=torch.long), torch.randint(96, (args.points, )),
                              torch.randint(96, (args.points, ))], 1)
        kernels.append(field.kernels_at(points).flatten(1))
    clean = torch.cat(kernels)

    def standardised(z):
        return (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)

    def decode(z):
        return net.flow.decode_columns(z.T.contiguous()).T

    with torch.no_grad():
        latent = net.flow.encode(clean)
        noisy = dequantize(clean.view(-1, net.flow.size, net.flow.size), args.amplitude).flatten(1)
        rows = [('exact latent', decode(latent)), ('standardised latent', decode(standardised(latent))),
                (f'dequantised (a = {args.amplitude:g})', noisy),
                ('standardised dequantised latent', decode(standardised(net.flow.encode(noisy))))]
    print(f'{len(clean)} true kernels of {args.count} synthetic images, prior of {args.checkpoint}; exact latents: '
          f'per-kernel mean {latent.mean(1).mean():.2f} (+-{latent.mean(1).std():.2f}), '
          f'std {latent.std(1).mean():.2f} (+-{latent.std(1).std():.2f})\n')
    print('| kernel | L1 to the clean kernel |\n|---|---:|')
    for name, reached in rows:
        print(f'| {name} | {(reached - clean).abs().sum(1).mean():.3f} |')


if __name__ == '__main__':
    main()
