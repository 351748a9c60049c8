"""MotionOffsetModel from options/motion_etr_synthetic.yml and motion_etr_gopro.yml at tiny sizes; motion error."""
import glob

import pytest
import torch

from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.fields import OffsetField
from basicsr_blurfield.models.motion_offset_model import motion_error
from tests.conftest import experiment_paths, load_project_option, train_through_basicsr, validate_figures



def tiny_option(root, total_iter: int) -> dict:
    """motion_etr_synthetic.yml with sizes overridden: bundled photos, 32 px crops, K = 9, nf = 8, 3-scale MS-SSIM."""
    opt = load_project_option('motion_etr_synthetic.yml')
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(experiment_paths(root))
    for phase, dataset in opt['datasets'].items():
        dataset.update(dataroot_gt=None, gt_size=32, kernel_size=9, phase=phase)
    opt['datasets']['train'].update(batch_size_per_gpu=4, num_worker_per_gpu=0)
    opt['datasets']['val']['num_samples'] = 6
    opt['network_g']['num_feat'] = 8
    opt['train']['optim_g']['lr'] = 1e-3
    opt['train']['scheduler']['total_iters'] = total_iter
    opt['train']['total_iter'] = total_iter
    opt['train']['msssim_opt']['num_scales'] = 1  # 32 px crops: one scale (the loss needs > 40 px for three)
    return opt


def test_gopro_yaml_is_the_published_recipe():
    opt = load_project_option('motion_etr_gopro.yml')
    net = MotionOffsetNet(**{key: value for key, value in opt['network_g'].items() if key != 'type'})
    assert sum(p.numel() for p in net.parameters()) == 1129604
    assert (net.constraint, net.num_steps, net.padding) == ('quadratic', 15, 'zeros')
    train = opt['train']
    assert (train['optim_g']['type'], train['optim_g']['lr'], train['optim_g']['betas']) == ('Adam', 1e-4, [0.9, 0.999])
    assert train['reblur_opt']['criterion'] == 'l2' and train['msssim_opt']['loss_weight'] == 0.1
    assert (train['tv_opt']['loss_weight'], train['magnitude_opt']['loss_weight']) == (0.002, 2e-5)
    assert train['total_iter'] == train['scheduler']['total_iters'] == 801 * -(-2103 // 8)
    assert train['scheduler']['type'] == 'LinearLR' and train['scheduler']['end_factor'] == 0
    assert opt['datasets']['train']['gt_size'] == 256 and opt['datasets']['train']['batch_size_per_gpu'] == 8
    synthetic = load_project_option('motion_etr_synthetic.yml')
    assert synthetic['datasets']['val']['field_representation'] == 'offset'
    assert 'motion_error' in synthetic['val']['metrics']


def test_motion_error_is_the_endpoint_vector_mse_whatever_the_time_direction():
    offsets = torch.zeros(1, 5, 2, 3, 4)
    offsets[:, 0, 0], offsets[:, -1, 0] = -2.0, 2.0  # motion (4, 0) everywhere
    truth = OffsetField(offsets)
    assert motion_error(truth, truth) == 0
    assert motion_error(OffsetField(offsets.flip(1)), truth) == 0  # the reversed trajectory blurs the same
    other = torch.zeros(1, 9, 2, 3, 4)
    other[:, -1, 1] = 3.0  # motion (0, 3): squared distance 16 + 9 in both directions
    assert motion_error(OffsetField(other), truth) == pytest.approx(25.0)
    with pytest.raises(ValueError, match='one batch and size'):
        motion_error(OffsetField(torch.zeros(1, 3, 2, 3, 5)), truth)


def test_short_cpu_training_from_the_yaml_beats_the_identity_field_and_lowers_motion_error(tmp_path):
    torch.manual_seed(0)
    total_iter = 30
    opt = tiny_option(tmp_path, total_iter)
    train_set, val_set = build_dataset(opt['datasets']['train']), build_dataset(opt['datasets']['val'])
    model = build_model(opt)
    before = validate_figures(model, val_set)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    for step, batch in enumerate(loader, 1):
        model.feed_data(batch)
        model.optimize_parameters(step)
        model.update_learning_rate(step)
        if step == total_iter:
            break
    assert set(model.log_dict) == {'l_reblur', 'l_msssim', 'l_tv', 'l_magnitude'}
    after = validate_figures(model, val_set)
    print(f'validation before: {before}\nvalidation after {total_iter} iterations: {after}')
    assert after['reblur_psnr'] > after['identity_psnr'] + 1.0
    assert after['reblur_psnr'] > before['reblur_psnr'] + 0.5
    assert after['reblur_ssim'] > after['identity_ssim']
    assert after['motion_error'] < 0.9 * before['motion_error']


def test_unknown_metric_and_missing_losses_are_rejected(tmp_path):
    opt = tiny_option(tmp_path, 2)
    opt['val']['metrics']['kernel_error'] = {'better': 'lower'}
    with pytest.raises(ValueError, match='unknown'):
        build_model(opt)
    opt = tiny_option(tmp_path, 2)
    del opt['train']['reblur_opt'], opt['train']['msssim_opt']
    with pytest.raises(ValueError, match='reblur_opt and/or train.msssim_opt'):
        build_model(opt)


def test_yaml_trains_validates_and_saves_trajectory_plots_through_the_basicsr_pipeline(tmp_path):
    opt = tiny_option(tmp_path, 2)
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    opt['network_g']['num_feat'] = 4
    opt['datasets']['val']['num_samples'] = 2
    opt['val'].update(save_img=True, trajectory_step=8)
    experiment = train_through_basicsr(tmp_path, opt, 'tiny-motion-etr')
    checkpoint = torch.load(experiment / 'models' / 'net_g_2.pth', weights_only=True)
    MotionOffsetNet(num_feat=4).load_state_dict(checkpoint['params'])
    log = open(glob.glob(str(experiment / 'train_*.log'))[0]).read()
    for name in ('l_reblur', 'l_msssim', 'l_tv', 'l_magnitude', '# reblur_psnr', '# reblur_ssim', '# motion_error'):
        assert name in log, name
    pictures = glob.glob(str(experiment / 'visualization' / '*' / '*_trajectories.png'))
    assert len(pictures) == 2
    assert not glob.glob(str(experiment / 'visualization' / '*' / '*.tmp*'))
