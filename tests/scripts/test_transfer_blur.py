"""scripts/transfer_blur.py: blur transfer between images of different sizes, random synthesis, clear errors."""
import cv2
import numpy as np
import pytest
import torch
import yaml

from basicsr_blurfield.archs.blur_kernel_space_arch import BlurKernelExtractor, BlurOperatorFamily
from tests.conftest import load_script, refused

TINY_G = dict(
    type='BlurKernelExtractor', num_feat=8, num_front_block=1, enc_feat=8, num_down=3, code_channels=8, num_block=1)
TINY_F = dict(
    type='BlurOperatorFamily',
    num_feat=8,
    num_front_block=1,
    num_back_block=1,
    unet_feat=4,
    num_levels=3,
    code_channels=8)


@pytest.fixture(scope='module')
def script():
    return load_script('transfer_blur')


@pytest.fixture
def setup(tmp_path):
    """Tiny G and F checkpoints (BasicSR layout), their option file and three images of different sizes."""
    torch.manual_seed(0)
    extractor = BlurKernelExtractor(**{k: v for k, v in TINY_G.items() if k != 'type'})
    operator = BlurOperatorFamily(**{k: v for k, v in TINY_F.items() if k != 'type'})
    torch.nn.init.normal_(operator.recon.conv_last.weight, std=0.1)  # not the identity operator of a fresh F
    torch.save({'params': extractor.state_dict()}, tmp_path / 'net_g.pth')
    torch.save({'params': operator.state_dict()}, tmp_path / 'net_f.pth')
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump({'network_g': TINY_G, 'network_f': TINY_F}))
    rng = np.random.default_rng(0)
    for name, shape in (('x', (40, 56, 3)), ('y', (40, 56, 3)), ('z', (70, 33, 3))):
        cv2.imwrite(str(tmp_path / f'{name}.png'), rng.integers(0, 256, shape, dtype=np.uint8))
    cv2.imwrite(str(tmp_path / 'grey.png'), rng.integers(0, 256, (30, 31), dtype=np.uint8))
    return tmp_path, extractor.eval(), operator.eval()


def test_transfer_writes_f_of_the_target_and_the_pairs_code_at_the_targets_size(script, setup):
    root, extractor, operator = setup
    out = root / 'out.png'
    script.main([
        '--sharp',
        str(root / 'x.png'), '--blurry',
        str(root / 'y.png'), '--target',
        str(root / 'z.png'), '-o',
        str(out), '--extractor',
        str(root / 'net_g.pth'), '--operator',
        str(root / 'net_f.pth'), '--opt',
        str(root / 'opt.yml'), '--code-mode', 'global'
    ])
    x, y, z = (script.read_rgb(str(root / f'{name}.png'), name) for name in 'xyz')
    operator.code_mode = 'global'
    with torch.no_grad():
        expected = operator(z, extractor(x, y)).clamp(0, 1)
    written = script.read_rgb(str(out), 'out')
    assert written.shape == z.shape
    assert (written - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_random_code_synthesis_is_reproducible_from_its_seed(script, setup):
    root, _, _ = setup
    common = [
        '--target',
        str(root / 'grey.png'), '--operator',
        str(root / 'net_f.pth'), '--opt',
        str(root / 'opt.yml'), '--random-code'
    ]
    script.main(common + ['-o', str(root / 'a.png'), '--seed', '1'])
    script.main(common + ['-o', str(root / 'b.png'), '--seed', '1'])
    script.main(common + ['-o', str(root / 'c.png'), '--seed', '2'])
    a, b, c = (cv2.imread(str(root / f'{name}.png')) for name in 'abc')
    assert a.shape == (30, 31, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_wrong_arguments_are_reported(script, setup, capsys):
    root, _, _ = setup
    base = [
        '--target',
        str(root / 'z.png'), '-o',
        str(root / 'o.png'), '--operator',
        str(root / 'net_f.pth'), '--opt',
        str(root / 'opt.yml'), '--extractor',
        str(root / 'net_g.pth')
    ]
    refused(script, capsys, 'same size', base + ['--sharp', str(root / 'x.png'), '--blurry', str(root / 'z.png')])
    refused(script, capsys, 'missing.png',
            base + ['--sharp', str(root / 'missing.png'), '--blurry', str(root / 'y.png')])
    with pytest.raises(SystemExit):
        script.main(base)  # neither a pair nor --random-code
    assert 'give either --sharp and --blurry' in capsys.readouterr().err
    refused(script, capsys, 'nope.pth',
            ['--target', str(root / 'z.png'), '-o', 'o.png', '--operator', 'nope.pth', '--random-code'])
