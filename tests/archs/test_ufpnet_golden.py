"""UFPNet computes the released network: golden outputs of the authors' code on recipe weights (issue 10).

``tests/fixtures/golden/ufpnet_official_golden.{json,npz}``: the released ``UFPNet_code_uncertainty`` run on CPU in
eval mode with its test-time noise replaced by zeros, on weights rebuilt from the JSON's recipe over the official
key names, on a 60x90 crop of ``skimage.data.astronaut()``. Our network, loaded through the published-layout loader,
must give the same restored image and the same decoded kernels (max abs below 1e-4 in float32).
"""
import json
import os

import pytest
import torch

from basicsr.archs import build_network
from basicsr_blurfield.archs.arch_util import pad_to_multiple
from basicsr_blurfield.archs.checkpoints import load_published_weights
from tests.conftest import FIXTURES
from tests.golden import load_golden, recipe_weights

TOLERANCE = 1e-4


def _official_shapes(config: str, meta: dict) -> dict:
    if config == 'small':
        return meta['small_state_dict']
    with open(os.path.join(FIXTURES, 'ufpnet_gopro_state_dict.json')) as handle:
        return json.load(handle)['state_dict']


def _network_with_recipe_weights(arch: str, config: str, meta: dict, **extra) -> torch.nn.Module:
    options = {key: tuple(value) if isinstance(value, list) else value
               for key, value in meta['configs'][config].items() if key != 'num_params'}
    net = build_network({'type': arch, **options, **extra})
    shapes = _official_shapes(config, meta)
    official = recipe_weights(shapes)
    own = net.state_dict()
    for key in set(shapes) - set(official):  # buffers kept at their constructor value (flow masks, alpha, ...)
        official[key] = own[key]
    load_published_weights(net, {'params': official}, strict=True)
    assert sum(p.numel() for p in net.parameters()) == meta['configs'][config]['num_params']
    return net.eval()


def _golden_kernels(net: torch.nn.Module, image: torch.Tensor, pixels, normalize: bool = False) -> torch.Tensor:
    """The decoded kernels the network feeds to its attention modules, at row-major pixels of the padded image."""
    padded, _ = pad_to_multiple(image, net.kernel_guidance_multiple, mode='reflect')
    kernels, _ = net.estimate_kernels(padded, normalize=normalize)
    size = net.flow.size
    return kernels.flatten(2)[0, :, torch.as_tensor(pixels)].T.reshape(-1, size, size)


@pytest.mark.parametrize('config', ['small', 'published'])
@pytest.mark.parametrize('arch', ['UFPNet', 'UFPNetLocal'])
def test_recipe_weights_give_the_released_networks_restored_image_and_kernels(arch, config):
    meta, golden = load_golden('ufpnet')
    net = _network_with_recipe_weights(arch, config, meta)
    image = torch.from_numpy(golden['image'])
    with torch.no_grad():
        restored = net(image)
        kernels = _golden_kernels(net, image, golden['kernel_pixels'])
    assert restored.shape == image.shape
    assert (restored - torch.from_numpy(golden[f'{config}:restored'])).abs().max() < TOLERANCE
    assert (kernels - torch.from_numpy(golden[f'{config}:kernels'])).abs().max() < TOLERANCE


def test_the_returned_field_is_the_released_kernels_projected_to_sum_one():
    meta, golden = load_golden('ufpnet')
    net = _network_with_recipe_weights('UFPNet', 'small', meta)
    image = torch.from_numpy(golden['image'])
    with torch.no_grad():
        _, field = net(image, return_field=True)
    reference = torch.from_numpy(golden['small:kernels'])
    reference = reference / reference.sum(dim=(1, 2), keepdim=True)
    pixels = torch.as_tensor(golden['kernel_pixels'])
    rows, cols = pixels // 96, pixels % 96  # row-major in the padded 64x96 image
    inside = (rows < image.shape[-2]) & (cols < image.shape[-1])
    ours = field.kernels[0, :, rows[inside], cols[inside]].T.reshape(-1, 19, 19)
    assert torch.allclose(field.kernels.sum(dim=1), torch.ones(()), atol=1e-5)
    assert (ours - reference[inside]).abs().max() < 1e-6


def test_the_attention_modules_get_the_released_raw_kernels_unless_renormalize_kernels():
    meta, golden = load_golden('ufpnet')
    image = torch.from_numpy(golden['image'])
    reference = torch.from_numpy(golden['small:kernels'])
    for renormalize in (False, True):
        net = _network_with_recipe_weights('UFPNet', 'small', meta, renormalize_kernels=renormalize)
        seen = []
        net.encoders[0][0].kernel_attention.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
        with torch.no_grad():
            net(image)
        kernels = seen[0].flatten(2)[0, :, torch.as_tensor(golden['kernel_pixels'])].T.reshape(-1, 19, 19)
        expected = reference / reference.sum(dim=(1, 2), keepdim=True) if renormalize else reference
        assert (kernels - expected).abs().max() < TOLERANCE * (1e-2 if renormalize else 1)


def test_without_the_published_clamp_the_output_leaves_the_unit_range():
    meta, golden = load_golden('ufpnet')
    image = torch.from_numpy(golden['image'])
    net = _network_with_recipe_weights('UFPNet', 'small', meta, clamp_output=False)
    with torch.no_grad():
        restored = net(image)
    assert restored.min() < 0 or restored.max() > 1
    assert torch.allclose(restored.clamp(0, 1), torch.from_numpy(golden['small:restored']), atol=TOLERANCE)
