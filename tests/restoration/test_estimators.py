"""Networks rebuilt from bare checkpoints: the kind and sizes read off the weights give the same outputs."""
import json
import os

import pytest
import torch

import basicsr_blurfield  # noqa: F401
from basicsr_blurfield.archs.basis_kernel_arch import BasisKernelNet
from basicsr_blurfield.archs.blur_kernel_space_arch import BlurOperatorFamily
from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.restoration.estimators import identify_checkpoint, load_network
from tests.conftest import FIXTURES

TINY = {
    'flow':
    lambda: FlowKernelEstimator(kernel_size=5, num_feat=8, flow_num_block=3, flow_hidden_size=12),
    'basis':
    lambda: BasisKernelNet(
        num_basis=3, kernel_size=9, num_feat=8, enc_channels=(8, 16), kernel_channels=(8, 4), in_channels=(3, 1)),
    'offset_quadratic':
    lambda: MotionOffsetNet(num_feat=4),
    'offset_linear':
    lambda: MotionOffsetNet(num_feat=4, constraint='linear'),
    'offset_zero':
    lambda: MotionOffsetNet(num_feat=4, constraint='zero', num_steps=7),
    'operator':
    lambda: BlurOperatorFamily(
        num_feat=8, num_front_block=2, num_back_block=3, unet_feat=8, num_levels=2, code_channels=16),
}


@pytest.mark.parametrize('name', sorted(TINY))
def test_a_rebuilt_network_computes_what_the_saved_one_did(tmp_path, name):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = TINY[name]().eval()
    torch.save({'params': net.state_dict()}, tmp_path / 'net.pth')
    kind, rebuilt = load_network(str(tmp_path / 'net.pth'))
    assert kind == type(net).__name__ and not rebuilt.training
    image = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if name == 'operator':
            code = torch.randn(1, 16, 2, 3, generator=torch.Generator().manual_seed(2))
            pairs = [(net(image, code), rebuilt(image, code))]
        else:
            expected, got = net(image).tensors(), rebuilt(image).tensors()
            assert type(rebuilt(image)) is type(net(image))
            pairs = [(expected[key], got[key]) for key in expected]
    for expected, got in pairs:
        assert expected.shape == got.shape and torch.equal(expected, got)


@pytest.mark.parametrize('layout, kind', [
    ('ufpnet_gopro_state_dict.json', 'FlowKernelEstimator'),
    ('carbajal_twoheads_k25_state_dict.json', 'BasisKernelNet'),
    ('motion_etr_offsetnet_state_dict.json', 'MotionOffsetNet'),
    ('bks_kernelwizard_state_dict.json', 'BlurOperatorFamily'),
    ('nafnet_width64_state_dict.json', None),
    ('mprnet_deblur_state_dict.json', None),
    ('dmphn_1_2_4_state_dict.json', None),
])
def test_published_checkpoints_are_recognised_by_their_keys(layout, kind):
    with open(os.path.join(FIXTURES, layout), encoding='utf-8') as f:
        keys = dict.fromkeys(json.load(f)['state_dict'], torch.zeros(1))
    if kind is None:
        with pytest.raises(ValueError, match='not a checkpoint of a blur-field estimator or a blur operator family'):
            identify_checkpoint(keys)
    else:
        assert identify_checkpoint(keys) == kind


def test_the_published_offset_network_loads_with_its_sizes(tmp_path):
    with open(os.path.join(FIXTURES, 'motion_etr_offsetnet_state_dict.json'), encoding='utf-8') as f:
        layout = json.load(f)['state_dict']
    shapes = {key: (value['shape'] if isinstance(value, dict) else value) for key, value in layout.items()}
    torch.save({key: torch.zeros(shape) for key, shape in shapes.items()}, tmp_path / 'offsetnet.pth')
    kind, net = load_network(str(tmp_path / 'offsetnet.pth'))
    assert kind == 'MotionOffsetNet' and net.constraint == 'quadratic'
    assert sum(param.numel() for param in net.parameters()) == 1129604


def test_bad_checkpoints_are_rejected_clearly(tmp_path):
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(ValueError, match='text.pth.*cannot be read: truncated or not a PyTorch checkpoint'):
        load_network(str(tmp_path / 'text.pth'))
    with pytest.raises(FileNotFoundError, match='no such file, and not a reference-model name'):
        load_network(str(tmp_path / 'missing.pth'))
    state = TINY['flow']().state_dict()
    del state['kernel_extra.Conv_tail.mean.2.weight']
    torch.save(state, tmp_path / 'broken.pth')
    with pytest.raises(ValueError, match='looks like a FlowKernelEstimator checkpoint but its weights do not fit'):
        load_network(str(tmp_path / 'broken.pth'))
    torch.save(MotionOffsetNet(num_feat=4).state_dict(), tmp_path / 'offsets.pth')
    with pytest.raises(ValueError, match='quadratic or bilinear'):
        load_network(str(tmp_path / 'offsets.pth'), constraint='linear')
