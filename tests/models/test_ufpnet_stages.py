"""UFPNet's three training stages from their option files (sizes overridden), chained through checkpoints:
stage I (flow prior) -> stage II (kernel estimator, loads I) -> stage III (UFPNet, loads II)."""
import copy
import os

import pytest
import torch
import yaml

from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr_blurfield.archs.ufpnet_arch import UFPNet
from basicsr_blurfield.models.ufpnet_model import load_estimator_weights
from tests.conftest import make_paired_folders

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
TINY_FLOW = {'kernel_size': 5, 'num_block': 2, 'hidden_size': 8}
TINY_ESTIMATOR = {'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2, 'flow_hidden_size': 8}
TINY_UFPNET = {'width': 4, 'enc_blk_nums': [1, 1, 1, 1], 'dec_blk_nums': [1, 1, 1, 1], 'kernel_size': 5,
               'estimator_feat': 4, 'flow_num_block': 2, 'flow_hidden_size': 8}


def load_option(name: str, folder: str) -> dict:
    with open(os.path.join(ROOT, 'options', name)) as f:
        opt = yaml.safe_load(f)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    for key in ('models', 'training_states', 'visualization', 'log'):
        opt['path'][key] = os.path.join(folder, opt['name'], key)
        os.makedirs(opt['path'][key], exist_ok=True)
    for phase, dataset_opt in opt['datasets'].items():
        dataset_opt['phase'] = phase
        dataset_opt.update(num_worker_per_gpu=0, prefetch_mode=None)
    return opt


def train(opt: dict, iterations: int = 2):
    """Builds the model and dataloaders of an option dict and runs a few iterations, then saves net_g."""
    train_opt = opt['datasets']['train']
    loader = build_dataloader(build_dataset(train_opt), train_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model = build_model(opt)
    batches = [batch for _, batch in zip(range(iterations), loader)]
    for current_iter in range(1, iterations + 1):
        model.feed_data(batches[(current_iter - 1) % len(batches)])
        model.optimize_parameters(current_iter)
        model.update_learning_rate(current_iter)
    model.save(0, iterations)
    return model


def validate(model, opt: dict) -> dict:
    val_opt = opt['datasets']['val']
    loader = build_dataloader(build_dataset(val_opt), val_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model.validation(loader, 2, None, save_img=False)
    return model.metric_results


@pytest.fixture(scope='module')
def stage_one(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('ufpnet'))
    opt = load_option('ufpnet_flow_prior.yml', folder)
    for phase in ('train', 'val'):
        opt['datasets'][phase].update(kernel_size=5, num_samples=16, batch_size_per_gpu=8)
    opt['network_g'].update(TINY_FLOW)
    model = train(opt)
    metrics = validate(model, opt)
    return folder, os.path.join(opt['path']['models'], 'net_g_2.pth'), model, metrics


def test_stage_one_trains_the_flow_prior_and_reports_its_likelihood(stage_one):
    _, checkpoint, model, metrics = stage_one
    assert os.path.isfile(checkpoint)
    assert torch.isfinite(torch.tensor(metrics['nll']))
    assert set(model.get_current_log()) >= {'l_nll', 'nll_per_tap'}


def _stage_two_option(name: str, folder: str, flow_checkpoint: str) -> dict:
    opt = load_option(name, folder)
    opt['network_g'].update(TINY_ESTIMATOR)
    opt['path']['pretrain_network_flow'] = flow_checkpoint
    opt['train']['kernel_error_samples'] = 16
    return opt


@pytest.fixture(scope='module')
def stage_two(stage_one):
    folder, flow_checkpoint, _, _ = stage_one
    gt_dir, lq_dir = make_paired_folders(os.path.join(folder, 'pairs'), count=2, size=(24, 28))
    opt = _stage_two_option('ufpnet_kernel_estimation_gopro.yml', folder, flow_checkpoint)
    for phase in ('train', 'val'):
        opt['datasets'][phase].update(dataroot_gt=gt_dir, dataroot_lq=lq_dir, io_backend={'type': 'disk'})
    opt['datasets']['train'].update(gt_size=16, batch_size_per_gpu=2)
    model = train(opt)
    return folder, os.path.join(opt['path']['models'], 'net_g_2.pth'), flow_checkpoint, (gt_dir, lq_dir), model


def test_stage_two_loads_the_stage_one_prior_and_keeps_it_frozen(stage_two):
    _, _, flow_checkpoint, _, model = stage_two
    prior = torch.load(flow_checkpoint, weights_only=True)['params']
    flow = model.net_g.flow.state_dict()
    assert all(torch.equal(flow[key], value) for key, value in prior.items())
    assert not any(p.requires_grad for p in model.net_g.flow.parameters())
    assert {'l_reblur', 'reblur_psnr'} <= set(model.get_current_log())


def test_stage_two_on_synthetic_data_reports_kernel_error(stage_one):
    folder, flow_checkpoint, _, _ = stage_one
    opt = _stage_two_option('ufpnet_kernel_estimation_synthetic.yml', folder, flow_checkpoint)
    for phase in ('train', 'val'):
        opt['datasets'][phase].update(dataroot_gt=None, io_backend={'type': 'disk'}, gt_size=24, kernel_size=5,
                                      basis_grid=2, max_regions=1, min_region_area=16)
    opt['datasets']['train'].update(batch_size_per_gpu=2, num_samples=4)
    opt['datasets']['val'].update(num_samples=1)
    model = train(opt)
    metrics = validate(model, opt)
    assert 0 <= model.get_current_log()['kernel_error'] <= 2
    assert 0 <= metrics['kernel_error'] <= 2 and metrics['reblur_psnr'] > 10


def test_stage_three_loads_the_stage_two_estimator_and_trains_the_deblurrer(stage_two):
    folder, estimator_checkpoint, _, (gt_dir, lq_dir), _ = stage_two
    opt = load_option('ufpnet_gopro.yml', folder)
    for phase in ('train', 'val'):
        opt['datasets'][phase].update(dataroot_gt=gt_dir, dataroot_lq=lq_dir, io_backend={'type': 'disk'})
    opt['datasets']['train'].update(gt_size=16, batch_size_per_gpu=2)
    opt['network_g'].update(TINY_UFPNET)
    opt['path']['pretrain_network_ke'] = estimator_checkpoint
    opt['train']['ema_decay'] = 0.999
    assert opt['train']['reblur_opt']['loss_weight'] == 0.01
    model = train(opt)
    estimator = torch.load(estimator_checkpoint, weights_only=True)['params']
    for net in (model.net_g, model.net_g_ema):  # the EMA re-averages equal values: equal up to rounding
        own = net.state_dict()
        assert all(torch.allclose(own[key], value, rtol=1e-5, atol=1e-6) for key, value in estimator.items())
    log = model.get_current_log()
    assert {'l_pix', 'l_reblur'} <= set(log) and log['l_reblur'] < 0.01
    metrics = validate(model, opt)
    assert metrics['psnr'] > 10


def test_estimator_loading_rejects_a_checkpoint_of_another_size(stage_two):
    _, estimator_checkpoint, _, _, _ = stage_two
    checkpoint = torch.load(estimator_checkpoint, weights_only=True)
    other = UFPNet(**dict(TINY_UFPNET, kernel_size=3))
    with pytest.raises((KeyError, ValueError)):
        load_estimator_weights(other, copy.deepcopy(checkpoint))
