"""The command-line scripts answer bad inputs with one ``error: ...`` line and exit status 2, check their arguments and
files before loading a network, and answer ``--help`` without importing torch."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from basicsr_blurfield.archs.basis_kernel_arch import BasisKernelNet
from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
from tests.conftest import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = ('detect_blur', 'estimate_field', 'visualize_field', 'make_synthetic_blur', 'create_lmdb', 'prepare_dataset',
           'estimate_trajectories', 'transfer_blur', 'extract_video')


@pytest.mark.parametrize('name', SCRIPTS)
def test_help_answers_without_importing_torch(name):
    code = ('import runpy, sys\n'
            f'sys.argv = [{name!r}, "--help"]\n'
            'try:\n'
            f'    runpy.run_path({os.path.join(ROOT, "scripts", name + ".py")!r}, run_name="__main__")\n'
            'except SystemExit as exit:\n'
            '    assert exit.code in (0, None), exit.code\n'
            'print("torch" in sys.modules)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr
    assert 'usage:' in result.stdout and result.stdout.split()[-1] == 'False', result.stdout[-500:]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('inputs')
    photo = np.random.default_rng(0).integers(0, 255, (36, 44, 3), dtype=np.uint8)
    paths = {name: str(folder / f'{name}.png') for name in ('photo', 'small9', 'small10', 'corrupt', 'empty')}
    cv2.imwrite(paths['photo'], photo)
    cv2.imwrite(paths['small9'], photo[:9, :9])
    cv2.imwrite(paths['small10'], photo[:10, :10])
    with open(paths['corrupt'], 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + bytes(range(200)))
    open(paths['empty'], 'wb').close()
    torch.manual_seed(0)
    paths['ufpnet'] = str(folder / 'quickstart_like.pth')
    torch.save({'params': FlowKernelEstimator(kernel_size=5, num_feat=8, flow_num_block=2,
                                              flow_hidden_size=8).state_dict()}, paths['ufpnet'])
    paths['basis'] = str(folder / 'basis.pth')
    torch.save({'params': BasisKernelNet(num_basis=4, kernel_size=9, num_feat=8, enc_channels=(8, 12, 16),
                                         kernel_channels=(12, 8, 8)).state_dict()}, paths['basis'])
    with open(paths['ufpnet'], 'rb') as f:
        data = f.read()
    paths['truncated'] = str(folder / 'truncated.pth')
    with open(paths['truncated'], 'wb') as f:
        f.write(data[:len(data) // 2])
    paths['empty_pth'] = str(folder / 'empty.pth')
    open(paths['empty_pth'], 'wb').close()
    paths['out'] = str(folder / 'out.png')
    return paths


def run_main(name, argv, capsys):
    script = load_script(name)
    try:
        status = script.main(argv)
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize('image, message', [
    ('corrupt', 'cannot be decoded: not an image format OpenCV reads, or a truncated / corrupt file'),
    ('empty', 'is empty (0 bytes)'),
    ('nowhere', 'no such file'),
])
def test_a_bad_image_is_reported_before_any_checkpoint_is_read(files, capsys, image, message):
    path = files.get(image, '/nowhere/photo.png')
    for name in ('estimate_field', 'detect_blur'):
        status, _, err = run_main(name, [path, '--checkpoint', '/nowhere/net.pth', '-o', files['out']], capsys)
        assert status == 2 and err.startswith('error: image') and message in err and 'Traceback' not in err, err


@pytest.mark.parametrize('checkpoint, message', [
    ('/nowhere/net.pth', "no such file, and not a reference-model name"),
    ('truncated', 'cannot be read: truncated or not a PyTorch checkpoint'),
    ('empty_pth', 'is empty (0 bytes)'),
])
def test_a_missing_or_broken_checkpoint_gives_one_line(files, capsys, checkpoint, message):
    status, _, err = run_main('estimate_field', [files['photo'], '--checkpoint', files.get(checkpoint, checkpoint),
                                                 '-o', files['out']], capsys)
    assert status == 2 and err.startswith('error: ') and message in err and len(err.splitlines()) == 1, err


def test_a_checkpoint_of_the_wrong_kind_of_model_names_the_script_that_takes_it(files, capsys):
    status, _, err = run_main('detect_blur', [files['photo'], '--checkpoint', files['ufpnet'], '-o', files['out']],
                              capsys)
    assert status == 2 and 'holds a UFPNet-family kernel estimator' in err and 'scripts/estimate_field.py' in err, err
    assert len(err) < 500
    status, _, err = run_main('estimate_field', [files['photo'], '--checkpoint', files['basis'], '-o', files['out']],
                              capsys)
    assert status == 2 and 'holds a basis-kernel estimator' in err and 'scripts/detect_blur.py' in err, err


@pytest.mark.parametrize('image', ['small9', 'small10'])
def test_tiny_images_are_drawn_with_a_smaller_grid(files, capsys, image):
    status, out, err = run_main('estimate_field', [files[image], '--checkpoint', files['ufpnet'], '-o', files['out']],
                                capsys)
    assert status == 0, err
    side = 9 if image == 'small9' else 10
    assert f'on a {side}x{side} image' in out and cv2.imread(files['out']).shape == (side, side, 3)


def test_an_image_passed_as_the_field_is_refused_clearly(files, capsys):
    status, _, err = run_main('visualize_field', [files['photo'], files['photo'], '-o', files['out']], capsys)
    assert status == 2 and 'is not a blur-field archive: expected an .npz written by save_field' in err, err
    assert 'pickle' not in err


def test_sizes_are_printed_width_by_height(files, capsys, tmp_path):
    from basicsr_blurfield.fields import KernelField, save_field
    kernels = torch.zeros(1, 9, 18, 22)
    kernels[:, 4] = 1
    save_field(str(tmp_path / 'f.npz'), KernelField(kernels))
    status, out, _ = run_main('visualize_field', [files['photo'], str(tmp_path / 'f.npz'), '-o', files['out']], capsys)
    assert status == 0 and 'resizing the 44x36 photo to the field size 22x18' in out
