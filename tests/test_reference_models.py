"""Reference models: names resolve to shipped files carrying their network options; export -> load round trips for
every estimator family; clear errors for unknown names; the detect_blur script loads a basis reference by path."""
import os

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr_blurfield import reference_models as refs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    'ufpnet': {'type': 'FlowKernelEstimator', 'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2,
               'flow_hidden_size': 8},
    'basis': {'type': 'BasisKernelNet', 'num_basis': 4, 'kernel_size': 9, 'num_feat': 8, 'enc_channels': [8, 8, 8],
              'kernel_channels': [8, 8, 8]},
    'offsets': {'type': 'MotionOffsetNet', 'num_feat': 4},
}


@pytest.mark.parametrize('kind', sorted(TINY))
def test_export_then_load_gives_the_same_network_and_field(kind, tmp_path):
    torch.manual_seed(0)
    net = build_network(dict(TINY[kind])).eval()
    checkpoint, options = str(tmp_path / 'net_g_5.pth'), str(tmp_path / 'train.yml')
    torch.save({'params': net.state_dict()}, checkpoint)
    with open(options, 'w') as handle:
        yaml.safe_dump({'network_g': TINY[kind]}, handle)
    destination = str(tmp_path / 'reference.pth')
    refs.export_reference(checkpoint, options, destination, kind, {'iterations': 5})
    stored = torch.load(destination, weights_only=True)
    assert stored['kind'] == kind and stored['network_g'] == TINY[kind] and stored['meta'] == {'iterations': 5}
    loaded, loaded_kind = refs.load_estimator(destination)
    assert loaded_kind == kind and not loaded.training
    lq = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected, got = net(lq), loaded(lq)
    for name, tensor in expected.tensors().items():
        assert torch.equal(tensor, got.tensors()[name])


def test_kind_and_sizes_are_read_off_a_plain_ufpnet_checkpoint(tmp_path):
    net = build_network(dict(TINY['ufpnet']))
    path = str(tmp_path / 'plain.pth')
    torch.save({'params': net.state_dict()}, path)
    loaded, kind = refs.load_estimator(path)
    assert kind == 'ufpnet' and loaded.flow.size == 5
    assert loaded.kernel_extra.Encoding_Block1.Conv_head.out_channels == 4
    assert 'network_g' not in torch.load(path, weights_only=True)  # the sizes came off the weights


def test_unknown_names_and_kinds_are_refused_with_the_choices():
    with pytest.raises(FileNotFoundError, match='ufpnet-ke-reference'):
        refs.resolve_checkpoint('no-such-model')
    with pytest.raises(KeyError, match='expected one of'):
        refs.reference_model_path('no-such-model')
    with pytest.raises(ValueError, match='kind'):
        refs.load_estimator('ufpnet-ke-reference', kind='kernels')
    with pytest.raises(ValueError, match='holds a FlowKernelEstimator; expected BasisKernelNet'):
        refs.load_estimator('ufpnet-ke-reference', kind='basis')


@pytest.mark.parametrize('name', sorted(refs.REFERENCE_MODELS))
def test_every_reference_model_is_shipped_small_and_carries_its_card(name):
    path = refs.reference_model_path(name)
    assert os.path.getsize(path) < 10 * 2**20
    stored = torch.load(path, weights_only=True)
    assert stored['kind'] in refs.KINDS and {'options', 'iterations', 'train_seconds', 'machine'} <= set(stored['meta'])
    assert os.path.isfile(os.path.join(ROOT, stored['meta']['options']))
    net, kind = refs.load_estimator(name)
    field = net(torch.rand(1, 3, 64, 64))
    assert field.height == 64 and kind == stored['kind']
