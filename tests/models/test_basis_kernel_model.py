"""BasisKernelModel trained from options/basis_kernels_synthetic.yml at tiny sizes; the reblur fine-tuning YAML."""
import glob

import numpy as np
import pytest
import torch

from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr_blurfield.archs.basis_kernel_arch import BasisKernelNet
from tests.conftest import experiment_paths, load_project_option, train_through_basicsr, validate_figures

TINY_NET = dict(num_basis=6, kernel_size=9, num_feat=16, enc_channels=[16, 32, 32], kernel_channels=[32, 16, 16])


def tiny_basis_option(root, total_iter: int, switch_iter: int) -> dict:
    """The recipe YAML with sizes overridden: bundled photos, 32 px crops, K = 9, a small net, 256 sampled pixels."""
    opt = load_project_option('basis_kernels_synthetic.yml')
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(experiment_paths(root))
    for phase, dataset in opt['datasets'].items():
        dataset.update(dataroot_gt=None, gt_size=32, kernel_size=9, min_region_area=50, phase=phase)
    opt['datasets']['train'].update(batch_size_per_gpu=4, num_worker_per_gpu=0)
    opt['datasets']['val']['num_samples'] = 8
    opt['network_g'].update(TINY_NET)
    opt['train']['optim_g']['lr'] = 1e-3
    opt['train']['scheduler'].update(T_max=total_iter, eta_min=1e-4)
    opt['train']['total_iter'] = total_iter
    opt['train']['kernel_opt'].update(switch_iter=switch_iter, num_samples=256, tile_size=1024)
    return opt


def test_recipe_yaml_is_the_papers_configuration():
    opt = load_project_option('basis_kernels_synthetic.yml')
    net = BasisKernelNet(**{key: value for key, value in opt['network_g'].items() if key != 'type'})
    assert sum(p.numel() for p in net.parameters()) == 79829298
    train = opt['train']
    assert train['reblur_opt']['loss_weight'] == train['kernel_opt']['loss_weight']
    assert train['reblur_opt']['criterion'] == 'l2'
    assert (train['kernel_opt']['p'], train['kernel_opt']['p_after_switch']) == (2, 1)
    assert train['kernel_opt']['switch_iter'] / train['total_iter'] == pytest.approx(350 / 900)
    assert opt['datasets']['train']['gt_size'] == 256 and opt['datasets']['train']['field_types'] == {'region': 1.0}


def test_short_cpu_training_from_the_yaml_lowers_losses_and_beats_the_identity_field(tmp_path):
    torch.manual_seed(0)
    total_iter = 100
    opt = tiny_basis_option(tmp_path, total_iter, switch_iter=total_iter + 1)
    train_set, val_set = build_dataset(opt['datasets']['train']), build_dataset(opt['datasets']['val'])
    model = build_model(opt)
    before = validate_figures(model, val_set)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    log, step = [], 0
    while step < total_iter:
        for batch in loader:
            step += 1
            model.feed_data(batch)
            model.optimize_parameters(step)
            model.update_learning_rate(step)
            log.append({name: float(value) for name, value in model.log_dict.items()})
            if step == total_iter:
                break
    after = validate_figures(model, val_set)
    first, last = log[:20], log[-20:]
    for name in ('l_reblur', 'l_kernel'):
        start, end = np.mean([e[name] for e in first]), np.mean([e[name] for e in last])
        print(f'{name}: first 20 iterations {start:.4f}, last 20 {end:.4f}')
        assert end < (0.5 if name == 'l_reblur' else 0.85) * start, (name, start, end)
    print(f'validation before: {before}\nvalidation after {total_iter} iterations: {after}')
    assert after['reblur_psnr'] > after['identity_psnr'] + 2.0
    assert after['kernel_error'] < 0.8 * before['kernel_error']


def test_kernel_norm_switches_at_the_configured_iteration(tmp_path):
    opt = tiny_basis_option(tmp_path, total_iter=4, switch_iter=2)
    model = build_model(opt)
    assert [model.cri_kernel.order_at(i) for i in (1, 2, 3)] == [2, 1, 1]


def test_unknown_validation_metric_is_rejected(tmp_path):
    opt = tiny_basis_option(tmp_path, total_iter=4, switch_iter=2)
    opt['val']['metrics']['psnr'] = {'type': 'calculate_psnr'}
    with pytest.raises(ValueError, match='unknown'):
        build_model(opt)


def test_yaml_trains_validates_and_saves_through_the_basicsr_pipeline(tmp_path):
    opt = tiny_basis_option(tmp_path, total_iter=2, switch_iter=1)
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    opt['datasets']['val']['num_samples'] = 2
    opt['val'].update(save_img=True, kernel_grid_step=16)
    experiment = train_through_basicsr(tmp_path, opt, 'tiny-basis')
    assert (experiment / 'models' / 'net_g_2.pth').is_file()
    log = open(glob.glob(str(experiment / 'train_*.log'))[0]).read()
    assert 'l_reblur' in log and 'l_kernel' in log and '# reblur_psnr' in log and '# kernel_error' in log
    assert glob.glob(str(experiment / 'visualization' / '*' / '*_kernels.png'))


def test_reblur_finetune_yaml_trains_the_deblurrer_through_a_frozen_estimator(tmp_path):
    from tests.conftest import make_paired_folders

    gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'data'), count=2, size=(32, 32))
    estimator = BasisKernelNet(**TINY_NET)
    torch.save({'params': estimator.state_dict()}, tmp_path / 'net_k.pth')
    opt = load_project_option('deblur_reblur_finetune.yml')
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(experiment_paths(tmp_path / 'exp'), pretrain_network_g=None,
                       pretrain_network_k=str(tmp_path / 'net_k.pth'))
    opt['network_g'].update(width=8, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
    opt['network_k'].update(TINY_NET)
    opt['datasets']['train'].update(
        dataroot_gt=gt_dir, dataroot_lq=lq_dir, io_backend={'type': 'disk'}, gt_size=32, phase='train', scale=1)
    model = build_model(opt)
    train_set = build_dataset(opt['datasets']['train'])
    batch = next(iter(torch.utils.data.DataLoader(train_set, batch_size=2)))
    frozen = {name: value.clone() for name, value in model.net_k.state_dict().items()}
    generator_before = [p.detach().clone() for p in model.net_g.parameters()]
    for step in (1, 2):
        model.feed_data(batch)
        model.optimize_parameters(step)
    assert 'l_reblur' in model.log_dict and 'l_pix' in model.log_dict
    assert all(torch.equal(frozen[name], value) for name, value in model.net_k.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, model.net_g.parameters()))
    assert not any(p.requires_grad for p in model.net_k.parameters())
