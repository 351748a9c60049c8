"""DeblurModel from YAML-style option dicts: reblur through a frozen estimator or the generator's own field,
multi-output backbones, EMA checkpoints, gradient clipping, padding for odd sizes, and option errors."""
import copy

import pytest
import torch

from basicsr.models import build_model
from basicsr_blurfield.losses.reblur_loss import ReblurLoss

NAFNET = {'type': 'NAFNet', 'width': 8, 'enc_blk_nums': [1, 1], 'middle_blk_num': 1, 'dec_blk_nums': [1, 1]}
BASIS_ESTIMATOR = {'type': 'BasisKernelNet', 'num_basis': 4, 'kernel_size': 9, 'num_feat': 8,
                   'enc_channels': [8, 12, 16], 'kernel_channels': [12, 8, 8]}
TINY_UFPNET = {'type': 'UFPNet', 'width': 8, 'enc_blk_nums': [1, 1], 'middle_blk_num': 1, 'dec_blk_nums': [1, 1],
               'kernel_size': 5, 'kam_levels': 2, 'estimator_feat': 8, 'flow_num_block': 2, 'flow_hidden_size': 8}


def model_option(network_g, train_extra=None, **extra):
    option = {
        'name': 'deblur_test', 'model_type': 'DeblurModel', 'num_gpu': 0, 'is_train': True, 'dist': False,
        'network_g': network_g, 'path': {'models': '', 'training_states': ''},
        'train': dict({'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'betas': [0.9, 0.9]},
                       'scheduler': {'type': 'TrueCosineAnnealingLR', 'T_max': 10, 'eta_min': 1e-7},
                       'pixel_opt': {'type': 'PSNRLoss'}}, **(train_extra or {})),
    }
    option.update(extra)
    return option


def batch(size=(2, 3, 32, 32), seed=0):
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(*size, generator=generator)
    return {'lq': (gt + torch.roll(gt, 2, dims=-1)) / 2, 'gt': gt}


def test_reblur_through_a_frozen_estimator_trains_only_the_deblurrer():
    option = model_option(NAFNET, {'reblur_opt': {'type': 'ReblurLoss', 'loss_weight': 0.01}},
                          network_k=BASIS_ESTIMATOR)
    model = build_model(option)
    estimator_before = copy.deepcopy(model.net_k.state_dict())
    deblurrer_before = copy.deepcopy(model.net_g.state_dict())
    data = batch()
    model.feed_data(data)
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix', 'l_reblur'}
    assert all(torch.equal(value, model.net_k.state_dict()[key]) for key, value in estimator_before.items())
    assert any(not torch.equal(value, model.net_g.state_dict()[key]) for key, value in deblurrer_before.items())
    with torch.no_grad():
        expected = ReblurLoss(loss_weight=0.01)(model.net_k(data['lq']), model.output, data['lq'])
    assert model.log_dict['l_reblur'] == pytest.approx(expected.item(), rel=1e-5)


def test_reblur_through_the_generators_own_field_applies_the_weight_once():
    option = model_option(TINY_UFPNET, {'reblur_opt': {'type': 'ReblurLoss', 'loss_weight': 0.01}})
    model = build_model(option)
    data = batch(seed=1)
    model.feed_data(data)
    net = model.net_g
    torch.manual_seed(0)
    with torch.no_grad():
        restored, field = net(data['lq'], return_field=True)
        expected = 0.01 * (field.blur(restored) - data['lq']).abs().mean()
    model.optimizer_g.step = lambda: None  # measure the loss of this step without changing the weights
    torch.manual_seed(0)
    model.optimize_parameters(1)
    assert model.log_dict['l_reblur'] == pytest.approx(expected.item(), rel=1e-4)


def test_multi_output_backbone_gets_a_loss_per_output_and_returns_the_full_size_image():
    option = model_option({'type': 'MIMOUNet', 'num_res': 1, 'base_channel': 8})
    model = build_model(option)
    model.feed_data(batch(size=(1, 3, 24, 24)))
    model.optimize_parameters(1)
    assert model.output.shape == (1, 3, 24, 24)
    model.feed_data(batch(size=(1, 3, 21, 27)))
    model.test()
    assert model.output.shape == (1, 3, 21, 27)


def test_odd_sizes_work_and_pad_to_multiple_pads_for_networks_that_need_it():
    model = build_model(model_option(NAFNET))
    model.feed_data(batch(size=(1, 3, 37, 45)))
    model.test()
    assert model.output.shape == (1, 3, 37, 45)

    class NeedsMultipleOf8(torch.nn.Module):

        def forward(self, x):
            assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0, f'got {tuple(x.shape)}'
            return x * 2

    model = build_model(model_option(NAFNET, pad_to_multiple=8))
    model.net_g = NeedsMultipleOf8()
    data = batch(size=(1, 3, 37, 45))
    model.feed_data(data)
    model.test()
    assert torch.equal(model.output, data['lq'] * 2)
    model = build_model(model_option(NAFNET, pad_to_multiple=0))
    model.feed_data(data)
    with pytest.raises(ValueError, match='pad_to_multiple: expected a positive integer'):
        model.test()


def test_gradient_clipping_bounds_an_sgd_step():
    option = model_option(NAFNET, {'optim_g': {'type': 'SGD', 'lr': 1.0}, 'use_grad_clip': True,
                                   'grad_clip_norm': 1e-3})
    model = build_model(option)
    before = [param.detach().clone() for param in model.net_g.parameters()]
    model.feed_data(batch())
    model.optimize_parameters(1)
    step = torch.sqrt(sum(((param - old)**2).sum() for param, old in zip(model.net_g.parameters(), before)))
    assert 0 < step.item() <= 1e-3 * (1 + 1e-4)


def test_ema_checkpoints_hold_params_and_params_ema(tmp_path):
    option = model_option(NAFNET, {'ema_decay': 0.5}, path={'models': str(tmp_path), 'training_states': str(tmp_path)})
    model = build_model(option)
    key = 'intro.weight'
    initial = model.net_g.state_dict()[key].clone()
    model.feed_data(batch())
    model.optimize_parameters(1)
    model.save(0, 1)
    checkpoint = torch.load(tmp_path / 'net_g_1.pth', map_location='cpu')
    assert set(checkpoint) == {'params', 'params_ema'}
    assert not torch.equal(checkpoint['params'][key], initial)
    assert torch.allclose(checkpoint['params_ema'][key], 0.5 * initial + 0.5 * checkpoint['params'][key])
    assert (tmp_path / '1.state').is_file() and not list(tmp_path.glob('*.tmp'))


def test_option_errors_say_what_is_missing():
    with pytest.raises(ValueError, match='needs a blur field: add network_k'):
        build_model(model_option(NAFNET, {'reblur_opt': {'type': 'ReblurLoss'}}))
    with pytest.raises(ValueError, match='both are missing'):
        build_model(model_option(NAFNET, {'pixel_opt': None}))
    with pytest.raises(ValueError, match="Unsupported optimizer type: Adamw. Supported ones are"):
        build_model(model_option(NAFNET, {'optim_g': {'type': 'Adamw', 'lr': 1e-3}}))
    with pytest.raises(ValueError, match='Unsupported scheduler type: Cosine'):
        build_model(model_option(NAFNET, {'scheduler': {'type': 'Cosine'}}))
    with pytest.raises(FileNotFoundError, match='pretrained network not found'):
        build_model(model_option(NAFNET, path={'pretrain_network_g': '/nowhere/net.pth'}))


def test_validation_saves_results_under_the_dataset_key_so_scenes_do_not_collide(tmp_path):
    import shutil

    from basicsr.data import build_dataloader, build_dataset
    from tests.conftest import make_paired_folders
    for scene in ('GOPR0001_11_00', 'GOPR0002_11_01'):
        gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'src' / scene), count=2, size=(20, 24))
        shutil.copytree(gt_dir, tmp_path / 'test' / scene / 'sharp')
        shutil.copytree(lq_dir, tmp_path / 'test' / scene / 'blur')
    dataset_opt = {'name': 'gopro', 'type': 'PairedBlurDataset', 'layout': 'gopro', 'dataroot': str(tmp_path / 'test'),
                   'phase': 'val', 'io_backend': {'type': 'disk'}}
    loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None)
    option = model_option(NAFNET, path={'visualization': str(tmp_path / 'vis')}, is_train=False,
                          val={'suffix': None, 'metrics': {'psnr': {'type': 'calculate_psnr_uint8_rgb'}}})
    del option['train']
    model = build_model(option)
    model.nondist_validation(loader, 0, None, save_img=True)
    saved = sorted(str(path.relative_to(tmp_path / 'vis' / 'gopro')) for path in (tmp_path / 'vis').rglob('*.png'))
    assert saved == [f'{scene}/sharp/{index:03d}.png' for scene in ('GOPR0001_11_00', 'GOPR0002_11_01')
                     for index in range(2)]
    assert 10 < model.metric_results['psnr'] < 60


def test_a_jointly_trained_estimator_is_saved_and_comes_back_on_resume(tmp_path):
    from basicsr.utils import check_resume
    paths = {'models': str(tmp_path), 'training_states': str(tmp_path)}
    option = model_option(NAFNET, {'reblur_opt': {'type': 'ReblurLoss', 'loss_weight': 0.01},
                                   'freeze_network_k': False}, network_k=BASIS_ESTIMATOR, path=dict(paths))
    model = build_model(option)
    model.feed_data(batch())
    model.optimize_parameters(1)
    model.save(0, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['1.state', 'net_g_1.pth', 'net_k_1.pth']
    resumed_option = copy.deepcopy(option)
    resumed_option['path'] = dict(paths, resume_state=str(tmp_path / '1.state'))
    check_resume(resumed_option, 1)  # what BasicSR's resume does: pretrain_network_<role> = net_<role>_<iter>.pth
    resumed = build_model(resumed_option)
    for name in ('net_g', 'net_k'):
        trained, loaded = getattr(model, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(value, loaded[key]) for key, value in trained.items()), name
    assert any(param.requires_grad for param in resumed.net_k.parameters())


def test_the_ema_copy_follows_the_buffers_of_the_network():
    model = build_model(model_option(NAFNET, {'ema_decay': 0.5}))
    model.net_g, model.net_g_ema = torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    model.net_g(torch.rand(4, 3, 5, 5) * 3 + 1)
    model.model_ema(0.5)
    assert torch.equal(model.net_g_ema.running_mean, model.net_g.running_mean)
    assert torch.equal(model.net_g_ema.num_batches_tracked, model.net_g.num_batches_tracked)
    assert torch.allclose(model.net_g_ema.weight, torch.ones(3))


def test_the_network_structure_goes_to_the_log_file_only(tmp_path, capsys):
    import logging

    from basicsr.utils import get_root_logger
    logger = get_root_logger()
    handler, level = logging.FileHandler(tmp_path / 'train.log'), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        build_model(model_option(NAFNET))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    log = (tmp_path / 'train.log').read_text()
    assert 'Network: NAFNet, with parameters:' in log and 'NAFBlock(' in log
    console = capsys.readouterr()
    assert 'NAFBlock(' not in console.out + console.err


def test_a_pretrained_path_that_is_neither_a_file_nor_a_reference_name_is_named_with_the_choices(tmp_path):
    from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
    from basicsr_blurfield.models.base import BlurFieldBaseModel

    model = BlurFieldBaseModel.__new__(BlurFieldBaseModel)
    with pytest.raises(FileNotFoundError, match=r"'no-such-model'.*ufpnet-ke-reference"):
        model.load_network(FlowKernelEstimator(kernel_size=5, num_feat=4), 'no-such-model')
