"""Every option file in options/ parses; the NAFNet options build the published network and load its layout."""
import glob
import json
import os

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from tests.conftest import FIXTURES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAFNET_FIXTURE = os.path.join(FIXTURES, 'nafnet_width64_state_dict.json')


def load_option(name: str) -> dict:
    with open(os.path.join(ROOT, 'options', name)) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def registered_types(option, found=None):
    """Every (key, type) in an option tree whose key names a registry ('type' under network_*, *_opt, datasets...)."""
    found = [] if found is None else found
    if isinstance(option, dict):
        if 'type' in option and isinstance(option['type'], str):
            found.append(option['type'])
        for value in option.values():
            registered_types(value, found)
    return found


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'options', '*.yml'))), ids=os.path.basename)
def test_every_option_file_names_only_registered_types(path):
    with open(path) as f:
        option = yaml.load(f, Loader=ordered_yaml()[0])
    assert option['model_type'] in MODEL_REGISTRY
    known = set(ARCH_REGISTRY.keys()) | set(DATASET_REGISTRY.keys()) | set(LOSS_REGISTRY.keys()) | set(
        METRIC_REGISTRY.keys()) | {'disk', 'lmdb', 'TrueCosineAnnealingLR', 'CosineAnnealingLR', 'MultiStepLR',
                                   'CosineAnnealingRestartLR', 'LinearLR', 'Adam', 'AdamW', 'SGD', 'nccl', 'gloo'}
    unknown = [name for name in registered_types(option) if name not in known]
    assert not unknown, f'{os.path.basename(path)} names unregistered types {unknown}'


def test_nafnet_from_the_gopro_option_has_the_published_parameter_count_and_layout():
    fixture = json.load(open(NAFNET_FIXTURE))
    net = build_network(load_option('nafnet_gopro.yml')['network_g'])
    assert sum(p.numel() for p in net.parameters()) == fixture['num_params'] == 67888835
    ours = {key: list(value.shape) for key, value in net.state_dict().items()}
    assert ours == {key: list(shape) for key, shape in fixture['state_dict'].items()}


def test_a_checkpoint_in_the_published_layout_loads_through_basicsr(tmp_path):
    fixture = json.load(open(NAFNET_FIXTURE))
    generator = torch.Generator().manual_seed(0)
    published = {key: torch.randn(shape, generator=generator) for key, shape in fixture['state_dict'].items()}
    torch.save({'params': {f'module.{key}': value for key, value in published.items()}}, tmp_path / 'nafnet.pth')
    test_option = load_option('test_nafnet_gopro.yml')
    net = build_network(test_option['network_g'])
    model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False})
    model.load_network(net, str(tmp_path / 'nafnet.pth'), strict=True, param_key='params')
    assert torch.equal(net.state_dict()['encoders.3.27.conv2.weight'], published['encoders.3.27.conv2.weight'])
    assert type(net).__name__ == 'NAFNetLocal'
