"""NAFNet, MPRNet, MIMO-UNet(+) and the basis network compute the released networks (issue 10).

Each ``tests/fixtures/golden/<name>_official_golden.{json,npz}`` holds the authors' code's outputs on CPU in eval mode,
on weights rebuilt from the recipe in its JSON over the official key names, on a crop of ``skimage.data.astronaut()``.
Those weights, given to our arch in the published layout through :func:`load_published_weights` (unwrap, the arch's
``remap_official_keys``, strict load), must give the same outputs: max abs difference below 1e-4 in float32 (the
fixtures' float64 rechecks put the float32 rounding noise at about 1e-6).
"""
import json
import os

import pytest
import torch

from basicsr.archs import build_network
from basicsr_blurfield.archs.checkpoints import load_published_weights
from tests.conftest import FIXTURES
from tests.golden import fan_in_scaled, load_golden, recipe_weights

TOLERANCE = 1e-4


def _layout(name: str) -> dict:
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)['state_dict']


def _load(net: torch.nn.Module, official: dict, num_params: int) -> torch.nn.Module:
    load_published_weights(net, official, strict=True)
    assert sum(p.numel() for p in net.parameters()) == num_params
    return net.eval()


def _max_diff(ours: torch.Tensor, golden) -> float:
    reference = torch.from_numpy(golden)
    assert ours.shape == reference.shape
    return (ours - reference).abs().max().item()


def nafnet_rule(key: str, shape, n: torch.Tensor) -> torch.Tensor:
    """Weights recipe of ``nafnet_official_golden.json``."""
    if key.endswith(('norm1.weight', 'norm2.weight', 'sca.1.bias')):
        return 1 + 0.1 * n
    if key.endswith(('.beta', '.gamma')):
        return 0.2 * n
    if key.endswith('sca.1.weight'):
        return fan_in_scaled(n, 2.0)
    if len(shape) >= 2:
        return fan_in_scaled(n, 0.75 if key.startswith(('encoders.', 'decoders.', 'middle_blks.')) else 0.5)
    return 0.02 * n


def conv_rule(scale: float):
    """``scale / sqrt(fan_in) * n`` for weights of 2 or more dims, ``0.02 * n`` for the rest (MPRNet, MIMO-UNet and
    the basis network's recipes; MPRNet's PReLU slope is set separately)."""
    return lambda key, shape, n: fan_in_scaled(n, scale) if len(shape) >= 2 else 0.02 * n


NAFNET_CASES = {  # output -> (config, arch options, image)
    'small': ('small', {}, 'image'),
    'small_tlc': ('small', dict(type='NAFNetLocal', train_size=(1, 3, 256, 256), fast_imp=False), 'image_wide'),
    'small_global_wide': ('small', {}, 'image_wide'),
    'width64': ('width64', {}, 'image'),
}


@pytest.mark.parametrize('output',
                         ['small', 'small_tlc', 'small_global_wide',
                          pytest.param('width64', marks=pytest.mark.slow)])
def test_nafnet_recipe_weights_give_the_released_restored_image(output):
    meta, golden = load_golden('nafnet')
    config, extra, image_key = NAFNET_CASES[output]
    options = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in meta['configs'][config].items()
        if key in ('img_channel', 'width', 'middle_blk_num', 'enc_blk_nums', 'dec_blk_nums')
    }
    net = build_network({'type': 'NAFNet', **options, **extra})
    shapes = meta['small_state_dict'] if config == 'small' else _layout('nafnet_width64_state_dict.json')
    _load(net, {'params': recipe_weights(shapes, nafnet_rule)}, meta['configs'][config]['num_params'])
    with torch.no_grad():
        restored = net(torch.from_numpy(golden[image_key]))
    assert _max_diff(restored, golden[f'{output}:restored']) < TOLERANCE


def test_nafnet_local_statistics_matter_on_the_wide_image():
    """The TLC output is not the global-pooling one, so the TLC case above tests the local means."""
    _, golden = load_golden('nafnet')
    assert abs(golden['small_tlc:restored'] - golden['small_global_wide:restored']).max() > 100 * TOLERANCE


def test_mprnet_recipe_weights_give_the_released_three_stage_images():
    meta, golden = load_golden('mprnet')
    shapes = _layout('mprnet_deblur_state_dict.json')
    official = recipe_weights(shapes, conv_rule(0.6))
    slope = recipe_weights({'shallow_feat1.1.body.1.weight': (1, )}, lambda key, shape, n: 0.25 + 0.1 * n)
    for key in official:
        if key.endswith('body.1.weight') and len(shapes[key]) == 1:  # the 55 aliases of the one shared PReLU
            official[key] = slope['shallow_feat1.1.body.1.weight']
    options = {key: value for key, value in meta['configs']['published'].items() if key not in ('num_params', 'note')}
    net = _load(
        build_network({
            'type': 'MPRNet',
            **options
        }), {'state_dict': official}, meta['configs']['published']['num_params'])
    with torch.no_grad():
        outputs = net(torch.from_numpy(golden['image']))
    for ours, name in zip(outputs, ('stage3', 'stage2', 'stage1')):
        assert _max_diff(ours, golden[name]) < TOLERANCE, name


@pytest.mark.parametrize('config,arch,layout', [('mimounet', 'MIMOUNet', 'mimounet_state_dict.json'),
                                                ('mimounetplus', 'MIMOUNetPlus', 'mimounetplus_state_dict.json')])
def test_mimounet_recipe_weights_give_the_released_three_scale_images(config, arch, layout):
    meta, golden = load_golden('mimounet')
    settings = meta['configs'][config]
    net = build_network({'type': arch, 'num_res': settings['num_res'], 'base_channel': settings['base_channel']})
    _load(net, {'model': recipe_weights(_layout(layout), conv_rule(0.6))}, settings['num_params'])
    with torch.no_grad():
        outputs = net(torch.from_numpy(golden['image']))
    for ours, name in zip(outputs, ('out_quarter', 'out_half', 'out_full')):
        assert _max_diff(ours, golden[f'{config}:{name}']) < TOLERANCE, name


@pytest.fixture(scope='module')
def carbajal_official_weights():
    return {'params': recipe_weights(_layout('carbajal_twoheads_k25_state_dict.json'), conv_rule(1.6))}


def test_basis_network_recipe_weights_give_the_released_kernels_and_masks_at_a_size_not_a_multiple_of_32(
        carbajal_official_weights):
    meta, golden = load_golden('carbajal')
    image = torch.from_numpy(golden['image'])
    assert image.shape[-2] % 32 and image.shape[-1] % 32
    assert torch.allclose(image**2.2 - 0.5, torch.from_numpy(golden['net_input']), atol=1e-6)  # our linearisation
    net = _load(
        build_network({'type': 'BasisKernelNet'}), carbajal_official_weights, meta['configs']['k25']['num_params'])
    assert net.size_handling == 'official'
    with torch.no_grad():
        field = net(image)
    assert _max_diff(field.basis, golden['kernels']) < TOLERANCE
    assert _max_diff(field.mixing, golden['masks']) < TOLERANCE


def test_basis_network_pad_crop_is_not_the_released_function_there(carbajal_official_weights):
    _, golden = load_golden('carbajal')
    net = _load(
        build_network({
            'type': 'BasisKernelNet',
            'size_handling': 'pad_crop'
        }), carbajal_official_weights, 79829298)
    with torch.no_grad():
        field = net(torch.from_numpy(golden['image']))
    assert _max_diff(field.mixing, golden['masks']) > 100 * TOLERANCE
