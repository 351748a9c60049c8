"""scripts/estimate_trajectories.py: our and the authors' checkpoints, colour = time, saved fields, clear errors."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.fields import OffsetField, load_field
from tests.conftest import FIXTURES, load_script, refused


@pytest.fixture(scope='module')
def script():
    return load_script('estimate_trajectories')


@pytest.fixture
def photo(tmp_path):
    path = str(tmp_path / 'photo.png')
    cv2.imwrite(path, cv2.cvtColor(skimage_data.astronaut()[100:148, 180:244], cv2.COLOR_RGB2BGR))
    return path


def _horizontal_net(constraint: str = 'quadratic') -> MotionOffsetNet:
    """Every pixel moves from x - 6 (first instant) to x + 6 (last instant), whatever the image."""
    net = MotionOffsetNet(num_feat=4, constraint=constraint)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([-6.0, 0.0, 6.0, 0.0][:net.head.out_channels]))
    return net




def test_draws_time_in_colour_and_saves_the_field(script, photo, tmp_path):
    torch.save({'params': _horizontal_net().state_dict()}, tmp_path / 'net_g.pth')
    out, saved = str(tmp_path / 'out.png'), str(tmp_path / 'field.npz')
    field = script.main([
        photo, '--checkpoint',
        str(tmp_path / 'net_g.pth'), '-o', out, '--num-steps', '9', '--save-field', saved, '--step', '16'
    ])
    assert field.offsets.shape == (1, 9, 2, 48, 64)
    loaded = load_field(saved)
    assert isinstance(loaded, OffsetField) and torch.equal(loaded.offsets, field.offsets)
    drawing = cv2.cvtColor(cv2.imread(out), cv2.COLOR_BGR2RGB).astype(int)
    y, x = 8, 24  # a grid pixel (step // 2 + k * step)
    start, end = drawing[y, x - 5], drawing[y, x + 5]
    assert start[2] > 150 and start[0] < 100, start  # blue at the first instant
    assert end[0] > 150 and end[2] < 100, end  # red at the last instant
    assert (drawing[y, x] > 200).all()  # white dot at the pixel (middle instant)


def test_loads_the_authors_offsetnet_quad_file(script, photo, tmp_path):
    with open(os.path.join(FIXTURES, 'motion_etr_offsetnet_state_dict.json')) as handle:
        layout = json.load(handle)
    generator = torch.Generator().manual_seed(0)
    state = {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in layout['state_dict'].items()}
    for first, alias in layout['aliased_keys']:
        state[alias] = state[first]
    state['conv_out_0.weight'].zero_()
    state['conv_out_0.bias'].copy_(torch.tensor([0.0, -6.0, 0.0, 6.0]))  # theirs (dy, dx): S = (-6, 0), E = (6, 0)
    torch.save(state, tmp_path / 'latest_net_offset.pth')
    field = script.main([photo, '--checkpoint', str(tmp_path / 'latest_net_offset.pth'), '-o', str(tmp_path / 'a.png')])
    assert field.num_steps == 15
    assert field.offsets[0, 0, :, 10, 10].tolist() == [-6.0, 0.0] and field.offsets[0, -1, :, 10, 10].tolist() == [6, 0]


def test_free_offsets_are_drawn_at_their_trained_number_of_steps(script, photo, tmp_path, capsys):
    torch.save({'params': MotionOffsetNet(num_feat=4, constraint='zero', num_steps=7).state_dict()},
               tmp_path / 'zero.pth')
    field = script.main([photo, '--checkpoint', str(tmp_path / 'zero.pth'), '-o', str(tmp_path / 'z.png')])
    assert field.num_steps == 7
    refused(script, capsys, 'built with',
            [photo, '--checkpoint', str(tmp_path / 'zero.pth'), '-o', str(tmp_path / 'z.png'), '--num-steps', '9'])


def test_wrong_checkpoint_even_steps_and_unknown_constraint_say_what_was_expected(script, photo, tmp_path, capsys):
    torch.save({'params': {'intro.weight': torch.zeros(8, 3, 3, 3)}}, tmp_path / 'nafnet.pth')
    refused(script, capsys, "expected a MotionOffsetNet checkpoint .* or the authors' OffsetNet_quad",
            [photo, '--checkpoint', str(tmp_path / 'nafnet.pth'), '-o', str(tmp_path / 'x.png')])
    torch.save({'params': _horizontal_net().state_dict()}, tmp_path / 'net_g.pth')
    common = [photo, '--checkpoint', str(tmp_path / 'net_g.pth'), '-o', str(tmp_path / 'x.png')]
    refused(script, capsys, 'odd int >= 3', common + ['--num-steps', '8'])
    refused(script, capsys, r"expected one of \('zero', 'linear', 'bilinear', 'quadratic'\)",
            common + ['--constraint', 'cubic'])
    refused(script, capsys, 'predicts 4 channels, which fits quadratic or bilinear',
            common + ['--constraint', 'linear'])
    assert not os.path.exists(tmp_path / 'x.png')
    refused(script, capsys, 'cannot read image', [str(tmp_path / 'missing.png')] + common[1:])
    assert np.isfinite(script.main(common + ['--constraint', 'bilinear']).offsets.numpy()).all()
