"""BlurOperatorModel from options/blur_kernel_space_{gopro,synthetic}.yml: recipe, a short CPU run, the BasicSR
pipeline (validation figures, transfer strips, checkpoints), the VAE's KL term and checkpoint loading."""
import copy
import glob

import pytest
import torch

from basicsr.data import build_dataset
from basicsr.models import build_model
from tests.conftest import experiment_paths, load_project_option, train_through_basicsr

TINY_G = dict(num_feat=8, num_front_block=1, enc_feat=8, num_down=3, code_channels=16, num_block=1)
TINY_F = dict(num_feat=8, num_front_block=1, num_back_block=1, unet_feat=8, num_levels=3, code_channels=16)


def tiny_option(root, total_iter: int = 4, name: str = 'blur_kernel_space_synthetic.yml') -> dict:
    """The YAML with sizes overridden: bundled photos, 32 px crops, K = 9, tiny G and F."""
    opt = load_project_option(name)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(experiment_paths(root))
    for phase, dataset in opt['datasets'].items():
        dataset.update(dataroot_gt=None, gt_size=32, kernel_size=9, min_region_area=50, phase=phase)
    opt['datasets']['train'].update(batch_size_per_gpu=4, num_worker_per_gpu=0)
    opt['datasets']['val']['num_samples'] = 4
    opt['network_g'].update(TINY_G)
    opt['network_f'].update(TINY_F)
    opt['train']['optim_g']['lr'] = 1e-3
    opt['train']['scheduler'] = {
        'type': 'CosineAnnealingRestartLR',
        'periods': [total_iter],
        'restart_weights': [1],
        'eta_min': 1e-4
    }
    opt['train']['total_iter'] = total_iter
    return opt


def validate(model, dataset) -> dict:
    model.opt['val']['save_img'] = False
    loader = torch.utils.data.DataLoader(dataset, batch_size=1)
    model.nondist_validation(loader, 0, None, False)
    return dict(model.metric_results)


def test_recipe_yamls_are_the_published_configuration(tmp_path):
    for name in ('blur_kernel_space_gopro.yml', 'blur_kernel_space_synthetic.yml'):
        opt = load_project_option(name)
        train = opt['train']
        assert train['pixel_opt'] == {'type': 'CharbonnierLoss', 'loss_weight': 1.0, 'reduction': 'sum', 'eps': 1e-6}
        assert train['optim_g'] == {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]}
        assert train['scheduler']['periods'] == [50000, 100000, 150000, 150000, 150000]
        assert train['total_iter'] == sum(train['scheduler']['periods']) == 600000
        assert opt['datasets']['train']['batch_size_per_gpu'] == 16 and opt['datasets']['train']['gt_size'] == 256
    opt = load_project_option('blur_kernel_space_gopro.yml')
    opt.update(num_gpu=0, is_train=False, dist=False, rank=0, world_size=1)
    model = build_model(opt)
    assert model.net_f.features is model.net_g.features
    assert sum(p.numel() for p in model.net.parameters()) == 49205187


def fixed_batch_loss(model, batch) -> float:
    """The training loss (Charbonnier sum) of one fixed batch, without updating the networks."""
    model.feed_data(batch)
    model.test()
    return float(model.cri_pix(model.output, model.lq))


def test_short_cpu_run_from_the_synthetic_yaml_lowers_the_loss_and_trains_both_networks(tmp_path):
    """A few seconds of training: the loss of a fixed batch falls and the reblur PSNR rises, G and F both change.

    An untrained F of ours is the identity operator, and beating that baseline takes minutes (see
    ``benchmarks/bench_blur_kernel_space_training.py``), so this test starts F's last conv at random (a wrong
    operator) and checks that training corrects it through both networks."""
    torch.manual_seed(0)
    total_iter = 40
    opt = tiny_option(tmp_path, total_iter)
    train_set, val_set = build_dataset(opt['datasets']['train']), build_dataset(opt['datasets']['val'])
    model = build_model(opt)
    torch.nn.init.normal_(model.net_f.recon.conv_last.weight, std=0.2)
    extractor_before = copy.deepcopy(model.net_g.state_dict())
    before = validate(model, val_set)
    fixed = next(iter(torch.utils.data.DataLoader(val_set, batch_size=4)))
    fixed_before = fixed_batch_loss(model, fixed)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    step = 0
    while step < total_iter:
        for batch in loader:
            step += 1
            model.feed_data(batch)
            model.optimize_parameters(step)
            model.update_learning_rate(step)
            if step == total_iter:
                break
    after = validate(model, val_set)
    fixed_after = fixed_batch_loss(model, fixed)
    print(f'fixed-batch l_pix: before {fixed_before:.2f}, after {fixed_after:.2f}; validation before {before}, '
          f'after {after}')
    assert fixed_after < 0.5 * fixed_before
    assert after['reblur_psnr'] > before['reblur_psnr'] + 3
    assert after['identity_psnr'] == pytest.approx(before['identity_psnr'])
    changed = [key for key, value in extractor_before.items() if not torch.equal(value, model.net_g.state_dict()[key])]
    assert 'conv_first.weight' in changed and 'body.0.conv2.weight' in changed  # G learns through the code


def test_yaml_trains_validates_and_saves_through_the_basicsr_pipeline(tmp_path):
    opt = tiny_option(tmp_path, total_iter=2)
    opt['path'] = {'pretrain_network_g': None, 'pretrain_network_f': None, 'resume_state': None}
    opt['datasets']['val']['num_samples'] = 2
    opt['val'].update(save_img=True)
    experiment = train_through_basicsr(tmp_path, opt, 'tiny-bks')
    assert (experiment / 'models' / 'net_g_2.pth').is_file() and (experiment / 'models' / 'net_f_2.pth').is_file()
    log = open(glob.glob(str(experiment / 'train_*.log'))[0]).read()
    for figure in ('l_pix', '# reblur_psnr', '# identity_psnr', '# transfer_psnr'):
        assert figure in log, figure
    strips = sorted(glob.glob(str(experiment / 'visualization' / '*' / '*_transfer.png')))
    assert len(strips) == 2 and not glob.glob(str(experiment / 'visualization' / '*' / '.*tmp*'))


def test_vae_variant_adds_the_kl_term_and_kl_needs_a_vae(tmp_path):
    opt = tiny_option(tmp_path)
    opt['train']['kl_opt'] = {'type': 'GaussianKLLoss', 'loss_weight': 10.0, 'reduction': 'sum'}
    with pytest.raises(ValueError, match='VAE extractor'):
        build_model(opt)
    opt['network_g']['vae'] = True
    model = build_model(opt)
    batch = next(iter(torch.utils.data.DataLoader(build_dataset(opt['datasets']['train']), batch_size=2)))
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix', 'l_kl'} and model.log_dict['l_kl'] > 0


def test_checkpoints_load_back_through_the_path_options(tmp_path):
    opt = tiny_option(tmp_path)
    model = build_model(opt)
    model.save(0, 7)
    again = tiny_option(tmp_path)
    again['path'].update(
        pretrain_network_g=str(tmp_path / 'models' / 'net_g_7.pth'),
        pretrain_network_f=str(tmp_path / 'models' / 'net_f_7.pth'))
    torch.manual_seed(123)
    loaded = build_model(again)
    for ours, theirs in ((model.net_g, loaded.net_g), (model.net_f, loaded.net_f)):
        for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), key
    again['path']['pretrain_network_f'] = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='pretrain_network_f'):
        build_model(again)


def test_mismatched_networks_and_unknown_metrics_are_rejected(tmp_path):
    opt = tiny_option(tmp_path)
    opt['network_f']['num_feat'] = 4
    with pytest.raises(ValueError, match='share_features'):
        build_model(opt)
    opt = tiny_option(tmp_path)
    opt['network_f']['code_channels'] = 8
    with pytest.raises(ValueError, match='code_channels'):
        build_model(opt)
    opt = tiny_option(tmp_path)
    opt['val']['metrics']['psnr'] = {'type': 'calculate_psnr'}
    with pytest.raises(ValueError, match='unknown'):
        build_model(opt)
