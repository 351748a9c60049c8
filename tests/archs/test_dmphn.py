"""DMPHN(1-2-4): published layout and count, the authors' outputs on recipe weights, the per-module folder loader."""
import json
import os

import numpy as np
import pytest
import torch

from basicsr.archs import build_network
from basicsr_blurfield.archs.dmphn_arch import DMPHN, load_dmphn_folder, remap_official_keys
from tests.conftest import FIXTURES
from tests.golden import fan_in_scaled, load_golden, recipe_weights

TINY = dict(num_feat=4)


def dmphn_layout() -> dict:
    with open(os.path.join(FIXTURES, 'dmphn_1_2_4_state_dict.json')) as handle:
        return json.load(handle)


def dmphn_rule(key, shape, n):
    """The golden fixture's recipe: 0.8 / sqrt(fan_in) * n for tensors of 2 or more dims, 0.02 * n otherwise."""
    return fan_in_scaled(n, 0.8) if len(shape) >= 2 else 0.02 * n


def recipe_files() -> dict:
    """The six per-module state dicts of the golden fixture's recipe, seeded by 'encoder_lv1/layer1.weight' etc."""
    files = {}
    for file_name, shapes in dmphn_layout()['state_dict'].items():
        module = file_name[:-len('.pkl')]
        files[module] = recipe_weights(shapes, dmphn_rule, seed_key=lambda key, module=module: f'{module}/{key}')
    return files


def test_published_config_has_the_published_parameter_count_and_per_file_layout():
    layout = dmphn_layout()
    with torch.device('meta'):
        net = DMPHN()
    assert sum(p.numel() for p in net.parameters()) == layout['num_params'] == 5424393
    state = net.state_dict()
    for file_name, shapes in layout['state_dict'].items():
        module = file_name[:-len('.pkl')]
        ours = {key[len(module) + 1:]: value for key, value in state.items() if key.startswith(module + '.')}
        assert list(ours) == list(shapes), module  # same keys in the same order as the released file
        assert all(list(ours[key].shape) == shape for key, shape in shapes.items()), module
        assert sum(v.numel() for v in ours.values()) == layout['num_params_by_file'][file_name]


def test_recipe_weights_give_the_authors_restored_image():
    meta, arrays = load_golden('dmphn_1_2_4')
    net = DMPHN().eval()
    net.load_state_dict(remap_official_keys(recipe_files()))
    with torch.no_grad():
        restored = net(torch.from_numpy(arrays['image']))
    assert np.abs(restored.numpy() - arrays['restored']).max() < 1e-4


def test_checkpoint_folder_loads_the_six_files_and_names_the_missing_ones(tmp_path):
    files = recipe_files()
    for module, state in files.items():
        torch.save(state, tmp_path / f'{module}.pkl')
    net = DMPHN()
    net.load_checkpoint_folder(str(tmp_path))
    for module, state in files.items():
        for key, value in state.items():
            assert torch.equal(net.state_dict()[f'{module}.{key}'], value)
    assert set(load_dmphn_folder(str(tmp_path))) == set(net.state_dict())
    os.remove(tmp_path / 'decoder_lv2.pkl')
    with pytest.raises(FileNotFoundError, match=r"missing DMPHN files \['decoder_lv2.pkl'\]"):
        net.load_checkpoint_folder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='folder not found'):
        load_dmphn_folder(str(tmp_path / 'nowhere'))


def test_a_folder_of_another_width_is_refused_by_a_strict_load(tmp_path):
    for module, state in recipe_files().items():
        torch.save(state, tmp_path / f'{module}.pkl')
    with pytest.raises(RuntimeError, match='size mismatch'):
        DMPHN(**TINY).load_checkpoint_folder(str(tmp_path))


@pytest.mark.parametrize('size', [(16, 24), (21, 13), (5, 6)])
def test_any_input_size_is_padded_and_cropped_back(size):
    net = build_network(dict(TINY, type='DMPHN')).eval()
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x)
        single = net(x[1:])
    assert out.shape == x.shape
    assert torch.allclose(out[1:], single, atol=1e-6)  # the batched patches stay per sample


def test_zero_weights_return_half_grey_as_the_output_is_shifted_back_by_half():
    net = DMPHN(**TINY)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
    assert torch.equal(net(torch.rand(1, 3, 16, 16)), torch.full((1, 3, 16, 16), 0.5))


def test_non_image_input_is_rejected():
    with pytest.raises(ValueError, match=r'expected \(N, C, H, W\)'):
        DMPHN(**TINY)(torch.rand(3, 16, 16))
