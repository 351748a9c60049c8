"""End to end on CPU: train a tiny NAFNet through ``python -m basicsr_blurfield.train``, resume it, train it
distributed with torchrun (gloo), run BasicSR's installed ``basicsr/train.py`` on the same option, and test it."""
import glob
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import torch
import yaml

from tests.conftest import make_paired_folders


def tiny_option(name: str, gt_dir: str, lq_dir: str, total_iter: int = 4) -> dict:
    return {
        'name': name,
        'model_type': 'DeblurModel',
        'scale': 1,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'train': {
                'name': 'tiny-train', 'type': 'PairedBlurDataset', 'dataroot_gt': gt_dir, 'dataroot_lq': lq_dir,
                'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': True, 'use_rot': True,
                'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 4,
                'prefetch_mode': None
            },
            'val': {
                'name': 'tiny-val', 'type': 'PairedBlurDataset', 'dataroot_gt': gt_dir, 'dataroot_lq': lq_dir,
                'io_backend': {'type': 'disk'}
            },
        },
        'network_g': {
            'type': 'NAFNet', 'width': 8, 'enc_blk_nums': [1, 1], 'middle_blk_num': 1, 'dec_blk_nums': [1, 1]
        },
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 1e-3, 'betas': [0.9, 0.9]},
            'scheduler': {'type': 'TrueCosineAnnealingLR', 'T_max': 8, 'eta_min': 1e-7},
            'total_iter': total_iter, 'warmup_iter': -1, 'use_grad_clip': True,
            'pixel_opt': {'type': 'PSNRLoss', 'loss_weight': 1, 'reduction': 'mean'}
        },
        'val': {'val_freq': 4, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr_uint8_rgb', 'crop_border': 0}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }


def run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.pop('BASICSR_BLURFIELD_NO_HOOK', None)
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result


def latest_log(folder: str) -> str:
    logs = sorted(glob.glob(os.path.join(folder, 'train_*.log')), key=os.path.getmtime)
    with open(logs[-1]) as f:
        return f.read()


@pytest.fixture
def workspace(tmp_path):
    gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'data'), count=3, size=(37, 45))
    return tmp_path, gt_dir, lq_dir


def write_option(folder, option) -> str:
    path = os.path.join(folder, f'{option["name"]}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(option, f)
    return path


def test_train_resume_and_test_through_the_module_entry_points(workspace):
    tmp_path, gt_dir, lq_dir = workspace
    option = tiny_option('tiny_nafnet', gt_dir, lq_dir)
    option['val']['validate_initial'] = True
    option = write_option(tmp_path, option)
    first = run([sys.executable, '-m', 'basicsr_blurfield.train', '-opt', option], cwd=tmp_path)
    experiment = tmp_path / 'experiments' / 'tiny_nafnet'
    assert (experiment / 'models' / 'net_g_4.pth').is_file()
    assert (experiment / 'training_states' / '4.state').is_file()
    checkpoint = torch.load(experiment / 'models' / 'net_g_latest.pth', map_location='cpu')
    assert set(checkpoint) == {'params'} and 'intro.weight' in checkpoint['params']
    first_log = latest_log(str(experiment))
    assert '# psnr:' in first_log
    # validate_initial before the first step, then once at the last iteration (not again after the loop)
    assert [line.split('iter')[-1].strip() for line in first_log.splitlines() if 'Validation tiny-val' in line] == [
        '0', '4']
    assert first_log.index('Validation tiny-val, iter 0') < first_log.index('iter:       1')
    # the network structure and option dump are in the log file, not on the console
    assert 'NAFBlock(' in first_log and 'NAFBlock(' not in first.stdout + first.stderr
    assert 'Network: NAFNet, with parameters:' in first.stdout + first.stderr
    assert not list(experiment.rglob('*.tmp'))

    run([sys.executable, '-m', 'basicsr_blurfield.train', '-opt', option, '--auto_resume', '--force_yml',
         'train:total_iter=6'], cwd=tmp_path)
    resumed_log = latest_log(str(experiment))
    assert 'Resuming training from epoch' in resumed_log and 'iter: 4' in resumed_log
    assert (experiment / 'models' / 'net_g_6.pth').is_file()
    # validate_initial after a resume scores the resumed weights at the resumed iteration
    assert [line.split('iter')[-1].strip() for line in resumed_log.splitlines() if 'Validation tiny-val' in line] == [
        '4', '6']

    test_option = tiny_option('tiny_nafnet_test', gt_dir, lq_dir)
    test_option['datasets'] = {'test_1': dict(test_option['datasets']['val'], name='tiny-test')}
    test_option['path']['pretrain_network_g'] = str(experiment / 'models' / 'net_g_latest.pth')
    test_option['val'] = dict(test_option['val'], save_img=True, suffix=None)
    del test_option['train']
    run([sys.executable, '-m', 'basicsr_blurfield.test', '-opt', write_option(tmp_path, test_option)], cwd=tmp_path)
    saved = sorted(glob.glob(str(tmp_path / 'results' / 'tiny_nafnet_test' / 'visualization' / 'tiny-test' / '*.png')))
    assert len(saved) == 3
    import cv2
    assert cv2.imread(saved[0]).shape == (37, 45, 3)  # odd size: padded for the U-Net, cropped back


def test_distributed_training_with_torchrun_on_cpu_reaches_total_iter(workspace):
    tmp_path, gt_dir, lq_dir = workspace
    option = tiny_option('tiny_nafnet_ddp', gt_dir, lq_dir)
    # 3 images x 2 = 6, batch 2, 2 processes: 3 images and one full batch per process and epoch (the loader drops
    # the partial one); BasicSR's loop counted 2 per epoch and stopped at iteration 3 of 4
    option['datasets']['train']['dataset_enlarge_ratio'] = 2
    option['logger']['save_checkpoint_freq'] = 3
    option = write_option(tmp_path, option)
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29541', '-m',
         'basicsr_blurfield.train', '-opt', option, '--launcher', 'pytorch'], cwd=tmp_path)
    experiment = tmp_path / 'experiments' / 'tiny_nafnet_ddp'
    log = latest_log(str(experiment))
    assert 'World size (gpu number): 2' in log and 'Require iter number per epoch: 1' in log
    assert 'iter:       4' in log and 'End of training at iter 4' in log
    assert sorted(p.name for p in (experiment / 'models').iterdir()) == ['net_g_3.pth', 'net_g_4.pth',
                                                                         'net_g_latest.pth']
    assert (experiment / 'training_states' / '4.state').is_file()


def test_basicsrs_own_train_script_finds_the_plugin(workspace):
    tmp_path, gt_dir, lq_dir = workspace
    import basicsr
    script = os.path.join(os.path.dirname(basicsr.__file__), 'train.py')
    root = os.path.dirname(os.path.dirname(basicsr.__file__))  # upstream writes experiments/ under its root path
    name = f'tiny_nafnet_upstream_{uuid.uuid4().hex[:8]}'
    option = write_option(tmp_path, tiny_option(name, gt_dir, lq_dir, total_iter=2))
    try:
        run([sys.executable, script, '-opt', option], cwd=tmp_path)
        assert os.path.isfile(os.path.join(root, 'experiments', name, 'models', 'net_g_latest.pth'))
    finally:
        shutil.rmtree(os.path.join(root, 'experiments', name), ignore_errors=True)


def test_bad_options_give_clear_messages(workspace):
    tmp_path, gt_dir, lq_dir = workspace
    bad_arch = tiny_option('bad_arch', gt_dir, lq_dir)
    bad_arch['network_g']['type'] = 'NAFNett'
    missing_root = tiny_option('missing_root', gt_dir, lq_dir)
    del missing_root['datasets']['train']['dataroot_lq']
    typo = tiny_option('typo', gt_dir, lq_dir)
    typo['datasets']['train']['gt_szie'] = typo['datasets']['train'].pop('gt_size')
    for option, message, clean in (
            (bad_arch, "No object named 'NAFNett'", True),
            (missing_root, "option 'dataroot_lq' is missing", False),
            (typo, "error: datasets.train: unknown option 'gt_szie' (did you mean 'gt_size'?)", True)):
        path = write_option(tmp_path, option)
        env = dict(os.environ, OMP_NUM_THREADS='1')
        result = subprocess.run([sys.executable, '-m', 'basicsr_blurfield.train', '-opt', path], cwd=tmp_path,
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]
        if clean:  # refused before anything was built: one line, exit status 2, no experiment folder
            assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-3000:]
            assert not (tmp_path / 'experiments' / option['name']).exists()


def test_the_test_entry_point_refuses_num_gpu_without_cuda_in_one_line(workspace):
    if torch.cuda.is_available():
        pytest.skip('needs a machine without CUDA')
    tmp_path, gt_dir, lq_dir = workspace
    option = tiny_option('tiny_test_gpu', gt_dir, lq_dir)
    option.update(num_gpu=8, datasets={'test_1': dict(option['datasets']['val'], name='tiny-test')})
    del option['train']
    result = subprocess.run([sys.executable, '-m', 'basicsr_blurfield.test', '-opt', write_option(tmp_path, option)],
                            cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            timeout=300)
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert 'error: num_gpu: 8 but this torch sees no CUDA device; to run on the CPU set num_gpu: 0' in result.stderr
