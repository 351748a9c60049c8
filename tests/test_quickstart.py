"""The quickstart (options/quickstart.yml), shortened: starts from the shipped reference estimator, trains a few
iterations on the bundled photos with the re-blur + observable kernel loss, logs the metrics and the one-kernel
baselines, writes checkpoints and labelled field PNGs; the reference model resolves by name in the scripts."""
import glob
import os
import runpy
import sys

import cv2
import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.reference_models import load_estimator, reference_model_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART_REFERENCE = 'ufpnet-ke-cues-reference'  # the estimator reading blur cues (docs/estimation.md, section 3)


def shortened_quickstart(folder: str, total_iter: int = 4) -> dict:
    with open(os.path.join(ROOT, 'options', 'quickstart.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    for key in ('models', 'training_states', 'visualization', 'log'):
        opt['path'][key] = os.path.join(folder, key)
        os.makedirs(opt['path'][key], exist_ok=True)
    opt['train']['total_iter'] = total_iter
    opt['datasets']['train'].update(phase='train', num_worker_per_gpu=0, num_samples=8, gt_size=32,
                                    batch_size_per_gpu=2)
    opt['datasets']['val'].update(phase='val', num_samples=2, gt_size=64)
    return opt


def test_quickstart_starts_from_the_shipped_reference_model():
    with open(os.path.join(ROOT, 'options', 'quickstart.yml')) as f:
        opt = yaml.safe_load(f)
    # by name, so the option works from any directory; the model's loader resolves it to the shipped file
    assert opt['path']['pretrain_network_g'] == QUICKSTART_REFERENCE
    assert os.path.isfile(reference_model_path(QUICKSTART_REFERENCE))
    net, kind = load_estimator(QUICKSTART_REFERENCE)
    assert kind == 'ufpnet'
    built = build_network(opt['network_g'])
    built.load_state_dict(net.state_dict())  # the quickstart's network is the reference model's


@pytest.fixture(scope='module')
def quickstart_run(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('quickstart'))
    opt = shortened_quickstart(folder)
    train_opt, val_opt = opt['datasets']['train'], opt['datasets']['val']
    train_loader = build_dataloader(build_dataset(train_opt), train_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    val_loader = build_dataloader(build_dataset(val_opt), val_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model = build_model(opt)
    reference, _ = load_estimator(QUICKSTART_REFERENCE)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.net_g.state_dict().items())
    batch = next(iter(train_loader))
    logs = []
    for current_iter in range(1, opt['train']['total_iter'] + 1):
        model.feed_data(batch)
        model.optimize_parameters(current_iter)
        logs.append(model.get_current_log())
    model.save(0, opt['train']['total_iter'])
    model.validation(val_loader, opt['train']['total_iter'], None, save_img=True)
    return opt, model, logs


def test_shortened_quickstart_logs_losses_metrics_and_baselines(quickstart_run):
    opt, model, logs = quickstart_run
    assert set(logs[0]) >= {'l_reblur', 'l_kernel', 'reblur_psnr', 'kernel_error'}
    # the same batch again and again: the supervised kernel loss must go down
    assert logs[-1]['l_kernel'] < logs[0]['l_kernel']
    assert model.metric_results['reblur_psnr'] > 20 and 0 <= model.metric_results['kernel_error'] <= 2
    baselines = model.val_baselines[opt['datasets']['val']['name']]
    assert set(baselines) == {'dataset_mean_kernel', 'image_mean_kernel_oracle', 'no_blur_kernel',
                              'no_blur_reblur_psnr'}
    assert 0 < baselines['image_mean_kernel_oracle'] <= baselines['dataset_mean_kernel'] <= 2
    assert 0 < baselines['no_blur_kernel'] <= 2
    val = build_dataset(opt['datasets']['val'])  # the no-blur field re-blurs each sharp image into itself
    expected = sum(reblur_psnr(val[i]['gt'][None], val[i]['lq'][None]) for i in range(len(val))) / len(val)
    assert baselines['no_blur_reblur_psnr'] == pytest.approx(expected, abs=1e-4)
    assert baselines['no_blur_reblur_psnr'] < model.metric_results['reblur_psnr']


def test_shortened_quickstart_writes_labelled_field_pngs_and_a_loadable_checkpoint(quickstart_run):
    opt, _, _ = quickstart_run
    pngs = glob.glob(os.path.join(opt['path']['visualization'], '*', 'field_*.png'))
    assert len(pngs) == 2
    panel = cv2.imread(pngs[0])
    # estimate | gap | ground truth, each enlarged 2x under a 24-pixel title band
    assert panel.shape == (24 + 2 * 64, 2 * 2 * 64 + 8, 3)
    assert (panel[:24] < 128).any() and (panel[:24] > 250).mean() > 0.8  # dark title text on white
    checkpoint = os.path.join(opt['path']['models'], 'net_g_4.pth')
    estimator = build_network(opt['network_g'])
    estimator.load_state_dict(torch.load(checkpoint)['params'])
    assert estimator.eval()(torch.rand(1, 3, 20, 20)).kernels.shape == (1, 361, 20, 20)


def test_estimate_field_script_resolves_the_reference_model_by_name(tmp_path, monkeypatch):
    from skimage import data as skimage_data

    photo = os.path.join(skimage_data.data_dir, 'clock_motion.png')
    output = str(tmp_path / 'clock_field.png')
    monkeypatch.setattr(sys, 'argv', ['estimate_field.py', photo, '--checkpoint', QUICKSTART_REFERENCE, '-o', output,
                                      '--max-size', '64', '--step', '16', '--save-field', str(tmp_path / 'f.npz')])
    runpy.run_path(os.path.join(ROOT, 'scripts', 'estimate_field.py'), run_name='__main__')
    drawing = cv2.imread(output)
    assert drawing.shape == (48, 64, 3)  # clock_motion.png is 300 x 400, resized to a longer side of 64
    assert os.path.isfile(str(tmp_path / 'f.npz'))


def test_estimate_field_script_averages_the_field_on_request(tmp_path, monkeypatch):
    from skimage import data as skimage_data

    from basicsr_blurfield.fields import load_field
    from basicsr_blurfield.reference_models import AveragedEstimator, load_estimator

    photo = os.path.join(skimage_data.data_dir, 'clock_motion.png')
    fields = {}
    for sigma, tta in (('0', '1'), ('3', '2')):
        saved = str(tmp_path / f'f{sigma}.npz')
        monkeypatch.setattr(sys, 'argv', ['estimate_field.py', photo, '--checkpoint', QUICKSTART_REFERENCE, '-o',
                                          str(tmp_path / 'field.png'), '--max-size', '64', '--save-field', saved,
                                          '--smooth-sigma', sigma, '--tta', tta])
        runpy.run_path(os.path.join(ROOT, 'scripts', 'estimate_field.py'), run_name='__main__')
        fields[sigma] = load_field(saved)
    net, _ = load_estimator(QUICKSTART_REFERENCE)
    small = cv2.resize(cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB), (64, 48), interpolation=cv2.INTER_AREA)
    photo_tensor = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        raw = net(photo_tensor).kernels
        expected = AveragedEstimator(net, 2, 3.0)(photo_tensor).kernels
    assert (fields['3'].kernels - fields['0'].kernels).abs().max() > 1e-3
    assert torch.allclose(fields['0'].kernels, raw, atol=1e-5)
    assert torch.allclose(fields['3'].kernels, expected, atol=1e-5)


def test_estimate_field_script_draws_small_cells_that_leave_the_photo_visible(tmp_path, monkeypatch):
    from skimage import data as skimage_data

    photo = os.path.join(skimage_data.data_dir, 'clock_motion.png')
    image = cv2.imread(photo)
    small = cv2.resize(image, None, fx=64 / 400, fy=64 / 400, interpolation=cv2.INTER_AREA)
    touched = {}
    for cell in ('14', '4'):
        output = str(tmp_path / f'cell{cell}.png')
        monkeypatch.setattr(sys, 'argv', ['estimate_field.py', photo, '--checkpoint', QUICKSTART_REFERENCE, '-o', output,
                                          '--max-size', '64', '--step', '16', '--cell', cell])
        runpy.run_path(os.path.join(ROOT, 'scripts', 'estimate_field.py'), run_name='__main__')
        touched[cell] = float((cv2.imread(output) != small).any(-1).mean())
    assert touched['4'] < 0.1 < 0.5 < touched['14']
