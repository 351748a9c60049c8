"""The estimation benchmark on a tiny subset: data written by make_synthetic_blur.py from held-out photos, baselines
equal to direct computations, the least-squares oracle exact on a uniform blur, outputs written."""
import json
import os

import numpy as np
import pytest
import torch

from basicsr_blurfield import benchmark_estimation as bench
from basicsr_blurfield.data.synthetic_blur_dataset import BUNDLED_PHOTOS
from basicsr_blurfield.fields import BasisField, KernelField
from basicsr_blurfield.fields import generators as gen
from basicsr_blurfield.losses.kernel_loss import textured_mask
from basicsr_blurfield.losses.reblur_loss import reblur_psnr


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bench'))
    png = os.path.join(root, 'grid.png')
    report = bench.run_benchmark(lambda lq: KernelField(_delta_kernels(lq)), 'delta-net', root, count=1, size=48,
                                 png=png, progress=False)
    return root, report, png


def _delta_kernels(lq):
    kernels = torch.zeros(lq.shape[0], bench.KERNEL_SIZE**2, *lq.shape[-2:])
    kernels[:, bench.KERNEL_SIZE**2 // 2] = 1
    return kernels


def test_held_out_photos_are_never_training_photos():
    assert not set(bench.HELD_OUT_PHOTOS) & set(BUNDLED_PHOTOS)
    assert all(os.path.isfile(path) for path in bench.held_out_photo_paths())


def test_benchmark_data_has_six_seeded_subsets_from_held_out_photos(tiny):
    root, report, _ = tiny
    assert sorted(report['results']) == sorted(
        bench.subset_name(t, n) for t in bench.FIELD_TYPES for n in bench.NOISE_LEVELS)
    folders = bench.prepare_benchmark(root, count=1, size=48)
    for name, folder in folders.items():
        with open(os.path.join(folder, 'manifest.json')) as handle:
            manifest = json.load(handle)
        assert manifest['items'][0]['source'] in bench.HELD_OUT_PHOTOS
        assert manifest['items'][0]['field_type'] == name.split('_')[0]
        assert manifest['kernel_size'] == bench.KERNEL_SIZE
    # the noise-free and noisy subsets of a field type share crops and fields
    clean = next(bench.load_items(folders['linear_noise0']))
    noisy = next(bench.load_items(folders['linear_noise0.01']))
    assert torch.equal(clean[1], noisy[1]) and torch.equal(clean[3].basis, noisy[3].basis)
    assert 0.002 < float((clean[2] - noisy[2]).std()) < 0.02


def test_baselines_equal_direct_computations(tiny):
    root, report, _ = tiny
    folders = bench.prepare_benchmark(root, count=1, size=48)
    items = {name: next(bench.load_items(folder)) for name, folder in folders.items()}
    means = [bench.mean_kernel(field) for _, _, _, field in items.values()]
    dataset_mean = torch.stack(means).mean(0)
    for name, (_, sharp, blurry, field) in items.items():
        scores = report['results'][name]
        dense = field.dense().kernels[0]  # (K*K, H, W)
        mask = textured_mask(sharp, bench.KERNEL_SIZE, bench.TEXTURE_THRESHOLD)[0, 0]
        image_mean = dense.mean((1, 2))
        delta = torch.zeros_like(image_mean)
        delta[delta.numel() // 2] = 1
        for method, kernel in (('identity', delta), ('image_mean_oracle', image_mean),
                               ('dataset_mean', dataset_mean.flatten())):
            distance = (dense - kernel[:, None, None]).abs().sum(0)
            assert scores[method]['kernel_l1'] == pytest.approx(float(distance.mean()), abs=1e-5)
            assert scores[method]['kernel_l1_textured'] == pytest.approx(float(distance[mask].mean()), abs=1e-5)
        assert scores['identity']['reblur_psnr'] == pytest.approx(reblur_psnr(sharp, blurry), abs=1e-6)
        # the estimator row of a network that outputs delta kernels is the identity baseline
        assert scores['delta-net'] == pytest.approx(scores['identity'], abs=1e-5)
        # the least-squares single kernel re-blurs at least as well as every other uniform kernel
        best = scores['best_single_kernel_oracle']['reblur_psnr']
        assert best >= max(scores[m]['reblur_psnr'] for m in ('identity', 'image_mean_oracle', 'dataset_mean')) - 1e-3


def test_best_single_kernel_recovers_a_uniform_blur():
    rng = np.random.default_rng(0)
    kernel = torch.from_numpy(gen.random_shake_kernel(9, rng)).float()
    sharp = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    blurry = BasisField(kernel[None, None], torch.ones(1, 1, 40, 40)).blur(sharp)
    estimate = bench.best_single_kernel(sharp, blurry, kernel_size=9)
    assert estimate.min() >= 0 and float(estimate.sum()) == pytest.approx(1, abs=1e-5)
    assert float((estimate - kernel).abs().sum()) < 1e-3


def test_textured_mask_marks_windows_with_gradients_only():
    sharp = torch.zeros(1, 3, 40, 40)
    sharp[..., 20:] = 1  # a vertical edge between columns 19 and 20
    mask = textured_mask(sharp, 5, 0.02)[0, 0]
    assert mask[:, 17:22].all() and not mask[:, :16].any() and not mask[:, 24:].any()


def test_outputs_table_json_and_png(tiny, tmp_path):
    _, report, png = tiny
    table = bench.format_markdown(report)
    assert table.count('\n') == 2 + 6 * 5 and '| linear_noise0 ' in table
    assert os.path.isfile(png)
    assert report['settings']['held_out_photos'] == list(bench.HELD_OUT_PHOTOS)


def test_command_line_refuses_a_missing_estimator(capsys):
    assert bench.main([]) == 2
    assert 'expected --estimator' in capsys.readouterr().err


def test_kernel_moments_give_the_direction_and_length_of_linear_kernels():
    angles = (0, 30, 90)
    kernels = torch.from_numpy(np.stack([gen.linear_kernel(19, 12.0, np.deg2rad(a)) for a in angles])).float()
    moments = bench.kernel_moments(kernels)
    assert moments['from_horizontal'][0] < 1 and moments['from_horizontal'][2] > 89
    assert float(moments['from_horizontal'][1]) == pytest.approx(30, abs=3)
    assert (moments['elongation'] > 3).all() and float(moments['length'][0]) == pytest.approx(12 / 12**0.5, rel=0.2)
    point = torch.zeros(1, 19, 19)
    point[0, 9, 9] = 1
    assert float(bench.kernel_moments(point)['length'][0]) < 1e-3


def test_clock_motion_report_splits_clock_and_background():
    report = bench.clock_motion_report(lambda lq: KernelField(_delta_kernels(lq)), scale=0.25, step=4)
    assert report['clock']['count'] > 10 and report['background']['count'] > 10
    assert report['clock']['length'] < 1e-3 and report['clock']['share_within_20deg'] >= 0


def test_command_line_scores_an_averaged_estimator(tiny, tmp_path, capsys):
    root, _, _ = tiny
    from basicsr.archs import build_network
    torch.manual_seed(0)
    net = build_network({'type': 'FlowKernelEstimator', 'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2,
                         'flow_hidden_size': 8})
    torch.save({'params': net.state_dict()}, tmp_path / 'ke.pth')
    scores = {}
    for sigma, tta in (('0', '1'), ('4', '2')):
        out = str(tmp_path / f'sigma{sigma}.json')
        assert bench.main(['--estimator', str(tmp_path / 'ke.pth'), '--data', root, '--count', '1', '--size', '48',
                           '--subsets', 'linear_noise0', '--json', out, '--quiet', '--smooth-sigma', sigma, '--tta',
                           tta]) == 0
        with open(out) as handle:
            report = json.load(handle)
        (name, ), = [[key for key in report['results']['linear_noise0'] if key.startswith('ke.pth')]]
        scores[sigma] = (name, report['results']['linear_noise0'][name]['kernel_l1'])
    assert scores['0'][0] == 'ke.pth (ufpnet)' and scores['4'][0] == 'ke.pth (ufpnet, 2 transforms, smoothed sigma 4)'
    assert scores['0'][1] != scores['4'][1]
    assert bench.main(['--estimator', str(tmp_path / 'ke.pth'), '--smooth-sigma', '-1']) == 2
    assert 'smooth sigma' in capsys.readouterr().err
