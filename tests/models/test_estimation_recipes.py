"""The estimation recipes (options/estimation_*.yml) at tiny sizes: the supervised kernel loss, weighted where blur is
observable, is the term the models log, equal to a direct computation; one step of each recipe runs."""
import os

import pytest
import torch
import yaml

from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr_blurfield.data.synthetic_blur_dataset import field_from_batch
from basicsr_blurfield.losses.kernel_loss import KernelLoss, observable_weight, textured_mask
from basicsr_blurfield.option_check import validate_options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {
    'estimation_ufpnet_ke.yml': {'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2, 'flow_hidden_size': 8},
    'estimation_ufpnet_ke_stage2.yml': {'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2, 'flow_hidden_size': 8},
    'estimation_ufpnet_ke_stage3.yml': {'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2, 'flow_hidden_size': 8},
    'estimation_ufpnet_ke_cues.yml': {'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2, 'flow_hidden_size': 8},
    'estimation_ufpnet_ke_cues_long.yml': {'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2,
                                           'flow_hidden_size': 8},
    'estimation_basis_kernels.yml': {'num_basis': 4, 'kernel_size': 9, 'num_feat': 8, 'enc_channels': [8, 8, 8],
                                     'kernel_channels': [8, 8, 8]},
    'estimation_basis_kernels_cues.yml': {'num_basis': 4, 'kernel_size': 9, 'num_feat': 8, 'enc_channels': [8, 8, 8],
                                          'kernel_channels': [8, 8, 8]},
}


def tiny_recipe(name: str, root) -> dict:
    with open(os.path.join(ROOT, 'options', name)) as handle:
        opt = yaml.safe_load(handle)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    for key in ('models', 'training_states', 'visualization', 'log'):
        opt['path'][key] = os.path.join(str(root), key)
    for phase, dataset in opt['datasets'].items():
        dataset.update(gt_size=16, kernel_size=5, min_region_area=20, phase=phase, num_worker_per_gpu=0)
    opt['network_g'].update(TINY[name])
    if opt['path'].get('pretrain_network_g'):  # stage 2 starts from stage 1: a tiny prior is fitted instead
        opt['path']['pretrain_network_g'] = None
        opt['train']['prior_fit'] = {}
    if 'prior_fit' in opt['train']:
        opt['train']['prior_fit'].update(num_iter=3, pool_size=20, batch_size=8)
    opt['train']['kernel_opt']['num_samples'] = 64
    return opt


@pytest.mark.parametrize('name', sorted(TINY))
def test_recipe_options_are_valid_and_log_the_observable_kernel_loss(name, tmp_path):
    with open(os.path.join(ROOT, 'options', name)) as handle:
        validate_options(yaml.safe_load(handle))
    opt = tiny_recipe(name, tmp_path)
    dataset = build_dataset(opt['datasets']['train'])
    batch = torch.utils.data.default_collate([dataset[i] for i in range(2)])
    model = build_model(opt)
    assert model.observable_threshold == pytest.approx(0.02)
    generator_state = model.sample_generator.get_state()
    with_reblur = bool(opt['train'].get('reblur_opt'))
    torch.manual_seed(0)  # the model's own draws, in its order: the re-blur's full decode, then the sampled pixels
    field = model.net_g(batch['lq']) if 'basis' in name else model.net_g(batch['lq'], lazy=True)
    if with_reblur and 'basis' not in name:
        field.kernels
    gt_field = field_from_batch(batch)
    weight = observable_weight(batch['gt'], 5, 0.02)
    if 'weight' in batch and opt['model_type'] == 'BasisKernelModel':
        weight = weight * batch['weight']
    generator = torch.Generator().set_state(generator_state)
    expected = KernelLoss(**{k: v for k, v in opt['train']['kernel_opt'].items() if k != 'type'})(
        field, gt_field, weight, 1, generator).detach()
    model.feed_data(batch)
    torch.manual_seed(0)
    model.optimize_parameters(1)
    log = model.get_current_log()
    assert log['l_kernel'] == pytest.approx(float(expected), rel=1e-4)
    assert ('l_reblur' in log) == with_reblur


def test_observable_weight_floors_flat_pixels():
    sharp = torch.zeros(1, 3, 12, 12)
    sharp[..., 6:] = 1
    weight = observable_weight(sharp, 3, 0.02, floor=0.1)
    mask = textured_mask(sharp, 3, 0.02)
    assert torch.equal(weight, torch.where(mask, torch.tensor(1.0), torch.tensor(0.1)))
    with pytest.raises(ValueError, match='floor'):
        observable_weight(sharp, 3, 0.02, floor=2)
    with pytest.raises(ValueError, match='kernel_size'):
        textured_mask(sharp, 4)


def test_kernel_opt_without_ground_truth_fields_is_refused(tmp_path):
    opt = tiny_recipe('estimation_ufpnet_ke.yml', tmp_path)
    dataset = build_dataset(opt['datasets']['train'])
    batch = torch.utils.data.default_collate([dataset[0]])
    model = build_model(opt)
    model.feed_data({'lq': batch['lq'], 'gt': batch['gt']})
    with pytest.raises(ValueError, match='ground-truth fields'):
        model.optimize_parameters(1)
