"""Published-checkpoint loading: synthetic checkpoints built from the layout fixtures, wrapped as published, load
key by key into the published configurations; wrappers, prefixes and errors."""
import json
import os

import pytest
import torch
from torch import nn

from basicsr.archs import build_network
from basicsr_blurfield.archs.checkpoints import find_remap, load_published_weights, unwrap_state_dict
from basicsr_blurfield.archs.mimounet_arch import MIMOUNet
from basicsr_blurfield.archs.mprnet_arch import MPRNet
from basicsr_blurfield.archs.nafnet_arch import NAFNet
from tests.conftest import FIXTURES



def load_fixture(name: str) -> dict:
    path = os.path.join(FIXTURES, name)
    with open(path) as handle:
        return json.load(handle)


def synthetic_state(fixture: dict, seed: int = 0) -> dict:
    """Random tensors of the fixture's shapes; aliased keys share one tensor, as in a saved checkpoint."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) for key, shape in fixture['state_dict'].items()}
    for group in fixture.get('aliased_keys', []):
        for key in group[1:]:
            state[key] = state[group[0]]
    return state


def wrap_nafnet(state):  # BasicSR: {'params': state_dict}
    return {'params': state}


def wrap_mprnet(state):  # {'epoch', 'state_dict', 'optimizer'}, saved from nn.DataParallel
    return {'epoch': 3000, 'state_dict': {f'module.{k}': v for k, v in state.items()}, 'optimizer': {'state': {}}}


def wrap_mimounet(state):  # {'model': state_dict, 'optimizer', 'scheduler', 'epoch'}
    return {'model': state, 'optimizer': {'state': {}}, 'scheduler': {'last_epoch': 3000}, 'epoch': 3000}


CASES = [
    ('nafnet_width64_state_dict.json', lambda c: {
        k: v
        for k, v in c.items()
    }, wrap_nafnet),
    ('mprnet_deblur_state_dict.json', lambda c: {
        'type': 'MPRNet',
        **c
    }, wrap_mprnet),
    ('mimounet_state_dict.json', lambda c: {
        'type': 'MIMOUNet',
        'num_res': c['num_res']
    }, wrap_mimounet),
    ('mimounetplus_state_dict.json', lambda c: {
        'type': 'MIMOUNetPlus',
        'num_res': c['num_res']
    }, wrap_mimounet),
]


@pytest.mark.parametrize('fixture_name,make_opt,wrap', CASES, ids=[case[0].split('_')[0] for case in CASES])
def test_synthetic_published_checkpoint_loads_key_by_key(fixture_name, make_opt, wrap):
    fixture = load_fixture(fixture_name)
    with torch.device('meta'):
        net = build_network(make_opt(fixture['config']))
    net = net.to_empty(device='cpu')
    state = synthetic_state(fixture)
    load_published_weights(net, wrap(state), arch=make_opt(fixture['config'])['type'])
    loaded = net.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_checkpoint_file_loads_with_the_arch_taken_from_the_network(tmp_path):
    source = MPRNet(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1)
    path = os.path.join(tmp_path, 'model_deblurring.pth')
    torch.save(wrap_mprnet(source.state_dict()), path)
    target = MPRNet(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1)
    assert not torch.equal(target.tail.weight, source.tail.weight)
    load_published_weights(nn.DataParallel(target), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_nafnet_checkpoint_loads_into_nafnet_local():
    source = NAFNet(width=8, enc_blk_nums=(1, ), dec_blk_nums=(1, ))
    target = build_network({
        'type': 'NAFNetLocal',
        'width': 8,
        'enc_blk_nums': [1],
        'dec_blk_nums': [1],
        'train_size': [1, 3, 16, 16]
    })
    load_published_weights(target, {'params': source.state_dict()}, arch='NAFNet')
    assert torch.equal(target.intro.weight, source.intro.weight)


def test_unwrap_prefers_params_strips_module_and_takes_an_explicit_key():
    a, b = torch.zeros(1), torch.ones(1)
    checkpoint = {'params': {'module.w': a}, 'params_ema': {'module.w': b}}
    assert unwrap_state_dict(checkpoint)['w'] is a
    assert unwrap_state_dict(checkpoint, param_key='params_ema')['w'] is b
    assert unwrap_state_dict({'w': a}) == {'w': a}
    assert unwrap_state_dict({'outer': 1, 'model': {'state_dict': {'module.w': a}}})['w'] is a


def test_unwrap_errors_name_what_was_expected():
    with pytest.raises(TypeError, match='expected a dict'):
        unwrap_state_dict([torch.zeros(1)])
    with pytest.raises(KeyError, match="'params_ema' not in checkpoint.*params"):
        unwrap_state_dict({'params': {'w': torch.zeros(1)}}, param_key='params_ema')


def test_find_remap_lists_registered_archs_for_unknown_names():
    assert callable(find_remap('MIMOUNet'))
    with pytest.raises(KeyError, match='registered archs are .*NAFNet'):
        find_remap('NotANet')


def test_strict_loading_reports_missing_keys():
    net = MIMOUNet(num_res=1, base_channel=8)
    state = net.state_dict()
    state.pop('FAM1.merge.main.0.weight')
    with pytest.raises(RuntimeError, match='FAM1.merge.main.0.weight'):
        load_published_weights(net, {'model': state})
    load_published_weights(net, {'model': state}, strict=False)
