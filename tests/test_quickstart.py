"""The quickstart (options/quickstart.yml), shortened: fits the prior, trains the kernel estimator a few iterations on
the bundled photos, logs re-blur PSNR and kernel error, writes checkpoints and the field PNG, and learns."""
import glob
import os
import runpy
import sys

import cv2
import torch
import yaml

from basicsr.archs import build_network
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shortened_quickstart(folder: str, total_iter: int = 6) -> dict:
    with open(os.path.join(ROOT, 'options', 'quickstart.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    for key in ('models', 'training_states', 'visualization', 'log'):
        opt['path'][key] = os.path.join(folder, key)
        os.makedirs(opt['path'][key], exist_ok=True)
    opt['train']['total_iter'] = total_iter
    opt['train']['prior_fit'].update(num_iter=30, pool_size=200)
    opt['datasets']['train'].update(phase='train', num_worker_per_gpu=0, num_samples=8)
    opt['datasets']['val'].update(phase='val', num_samples=2)
    return opt


def run_and_check_shortened_quickstart(folder: str) -> str:
    """Runs the shortened quickstart in ``folder`` with its checks; returns the final checkpoint path."""
    opt = shortened_quickstart(folder)
    assert opt['num_gpu'] == 0 and opt['model_type'] == 'KernelEstimationModel'
    train_opt, val_opt = opt['datasets']['train'], opt['datasets']['val']
    train_loader = build_dataloader(build_dataset(train_opt), train_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    val_loader = build_dataloader(build_dataset(val_opt), val_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model = build_model(opt)
    batch = next(iter(train_loader))
    model.feed_data(batch)
    model.optimize_parameters(1)
    first = model.get_current_log()
    assert set(first) >= {'l_reblur', 'reblur_psnr', 'kernel_error'}
    for current_iter in range(2, opt['train']['total_iter'] + 1):
        model.feed_data(batch)
        model.optimize_parameters(current_iter)
    # the same batch again and again: the self-supervised re-blur loss must go down
    assert model.get_current_log()['l_reblur'] < first['l_reblur']
    model.save(0, opt['train']['total_iter'])
    trained = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.validation(val_loader, opt['train']['total_iter'], None, save_img=True)
    # validate_initial scored the starting weights first (iteration 0) and put the trained ones back
    assert all(torch.equal(v, trained[k]) for k, v in model.net_g.state_dict().items())
    assert model.metric_results['reblur_psnr'] > 20 and 0 <= model.metric_results['kernel_error'] <= 2
    pngs = glob.glob(os.path.join(opt['path']['visualization'], '*', 'field_*.png'))
    assert len(pngs) == 4 and len([p for p in pngs if p.endswith('_0.png')]) == 2
    panel = cv2.imread(pngs[0])
    assert panel.shape == (64, 128, 3)  # the estimated field next to the ground truth
    checkpoint = os.path.join(opt['path']['models'], 'net_g_6.pth')
    estimator = build_network(opt['network_g'])
    estimator.load_state_dict(torch.load(checkpoint)['params'])
    assert estimator.eval()(torch.rand(1, 3, 20, 20)).kernels.shape == (1, 81, 20, 20)
    return checkpoint


def test_shortened_quickstart_logs_metrics_and_writes_checkpoint_and_field_png(tmp_path):
    assert os.path.isfile(run_and_check_shortened_quickstart(str(tmp_path)))


def test_estimate_field_script_draws_the_field_of_a_real_blurry_photo(tmp_path, monkeypatch):
    from skimage import data as skimage_data

    checkpoint = run_and_check_shortened_quickstart(str(tmp_path))
    photo = os.path.join(skimage_data.data_dir, 'clock_motion.png')
    output = str(tmp_path / 'clock_field.png')
    monkeypatch.setattr(sys, 'argv', ['estimate_field.py', photo, '--checkpoint', checkpoint, '-o', output,
                                      '--max-size', '64', '--step', '16', '--save-field', str(tmp_path / 'f.npz')])
    runpy.run_path(os.path.join(ROOT, 'scripts', 'estimate_field.py'), run_name='__main__')
    drawing = cv2.imread(output)
    assert drawing.shape == (48, 64, 3)  # clock_motion.png is 300 x 400, resized to a longer side of 64
    assert os.path.isfile(str(tmp_path / 'f.npz'))
