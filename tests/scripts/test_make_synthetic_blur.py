"""scripts/make_synthetic_blur.py: exact re-blurring from stored files, byte reproducibility, resume, lmdb."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr_blurfield.fields import BasisField, OffsetField, load_field
from tests.conftest import load_script

@pytest.fixture(scope='module')
def script():
    return load_script('make_synthetic_blur')


def _args(out, *extra, count=5, seed=0):
    return [
        '--out',
        str(out), '--count',
        str(count), '--seed',
        str(seed), '--size', '40', '--kernel-size', '9', '--min-region-area', '40', '--field-types',
        'region=1,smooth=1,linear=1', '--quiet', *extra
    ]


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _rgb(path):
    return torch.from_numpy(cv2.imread(path)[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b)**2).mean()))


def test_stored_field_blurring_the_sharp_png_reproduces_the_blurry_png(script, tmp_path):
    assert script.main(_args(tmp_path, count=6)) == 0
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    assert [item['name'] for item in manifest['items']] == [f'{i:06d}' for i in range(6)]
    assert len({item['field_type'] for item in manifest['items']}) >= 2
    assert manifest['seed'] == 0 and manifest['kernel_size'] == 9 and 'torch' in manifest['versions']
    blurred = 0
    for item in manifest['items']:
        name = item['name']
        field = load_field(str(tmp_path / 'field' / f'{name}.npz'))
        assert isinstance(field, BasisField) and field.batch == 1 and field.kernel_size == 9
        sharp, blurry = _rgb(str(tmp_path / 'sharp' / f'{name}.png')), _rgb(str(tmp_path / 'blur' / f'{name}.png'))
        assert sharp.shape == (1, 3, 40, 40)
        assert _psnr(field.blur(sharp), blurry) > 50
        blurred += _psnr(sharp, blurry) < 40
    assert blurred >= 4  # a crop of a flat area may hardly change


def test_offset_representation_is_reproduced_too(script, tmp_path):
    args = _args(tmp_path, '--representation', 'offset', '--num-steps', '7', count=2)
    args[args.index('--field-types') + 1] = 'smooth=1,linear=1'
    assert script.main(args) == 0
    field = load_field(str(tmp_path / 'field' / '000001.npz'))
    assert isinstance(field, OffsetField) and field.offsets.shape == (1, 7, 2, 40, 40)
    sharp, blurry = _rgb(str(tmp_path / 'sharp' / '000001.png')), _rgb(str(tmp_path / 'blur' / '000001.png'))
    assert _psnr(field.blur(sharp), blurry) > 50


def test_same_seed_gives_the_same_bytes_and_another_seed_other_data(script, tmp_path):
    assert script.main(_args(tmp_path / 'a')) == 0
    assert script.main(_args(tmp_path / 'b')) == 0
    assert script.main(_args(tmp_path / 'c', seed=1)) == 0
    a, b, c = _files(tmp_path / 'a'), _files(tmp_path / 'b'), _files(tmp_path / 'c')
    assert len(a) == 16 and a == b
    for name in ('blur/000000.png', 'sharp/000001.png', 'field/000002.npz'):
        assert a[name] != c[name]


def test_interrupted_run_resumes_without_redoing_finished_items(script, tmp_path, monkeypatch):
    reference = tmp_path / 'reference'
    assert script.main(_args(reference)) == 0
    out = tmp_path / 'out'
    original, calls = script.write_png, []

    def failing_write_png(path, image):
        calls.append(path)
        if len(calls) == 6:  # sharp + blur of items 0 and 1, sharp of item 2, then the crash
            raise KeyboardInterrupt
        original(path, image)

    monkeypatch.setattr(script, 'write_png', failing_write_png)
    with pytest.raises(KeyboardInterrupt):
        script.main(_args(out))
    monkeypatch.setattr(script, 'write_png', original)
    assert not any(name.endswith(('.tmp', '.npz.tmp')) or '.tmp' in name for name in _files(out))
    finished = out / 'blur' / '000001.png'
    stamp = finished.stat().st_mtime_ns
    os.utime(finished, ns=(stamp - 10**9, stamp - 10**9))
    assert script.main(_args(out)) == 0
    assert finished.stat().st_mtime_ns == stamp - 10**9
    assert _files(out) == _files(reference)


def test_resuming_with_other_options_is_refused(script, tmp_path, capsys):
    assert script.main(_args(tmp_path, count=1)) == 0
    assert script.main(_args(tmp_path, '--noise', '0.01', count=1)) == 2
    assert 'other options (noise_std)' in capsys.readouterr().err


def test_noise_option_adds_noise(script, tmp_path):
    assert script.main(_args(tmp_path / 'clean', count=1)) == 0
    assert script.main(_args(tmp_path / 'noisy', '--noise', '0.03', count=1)) == 0
    clean, noisy = _rgb(str(tmp_path / 'clean/blur/000000.png')), _rgb(str(tmp_path / 'noisy/blur/000000.png'))
    assert (noisy - clean).std().item() == pytest.approx(0.03, rel=0.25)
    field = load_field(str(tmp_path / 'noisy/field/000000.npz'))
    assert _psnr(field.blur(_rgb(str(tmp_path / 'noisy/sharp/000000.png'))), noisy) < 40


def test_sharp_folder_and_lmdb_output_are_read_by_basicsr(script, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photos / 'x.png'), rng.integers(0, 256, (50, 60, 3), dtype=np.uint8))
    out = tmp_path / 'out'
    assert script.main(_args(out, '--sharp', str(photos), '--lmdb', count=3)) == 0
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['sources'] == ['x.png'] and {item['source'] for item in manifest['items']} == {'x.png'}
    dataset = PairedImageDataset({
        'phase': 'val',
        'io_backend': {
            'type': 'lmdb'
        },
        'dataroot_gt': str(out / 'lmdb' / 'sharp.lmdb'),
        'dataroot_lq': str(out / 'lmdb' / 'blur.lmdb'),
        'filename_tmpl': '{}',
        'scale': 1
    })
    assert len(dataset) == 3
    item = dataset[2]
    assert torch.equal(item['lq'][None], _rgb(str(out / 'blur' / '000002.png')))
    assert torch.equal(item['gt'][None], _rgb(str(out / 'sharp' / '000002.png')))


def test_the_scripts_spelled_out_choices_agree_with_the_dataset(script):
    from basicsr_blurfield.data.synthetic_blur_dataset import FIELD_TYPES, REPRESENTATIONS
    assert script.FIELD_TYPES == FIELD_TYPES and script.REPRESENTATIONS == REPRESENTATIONS
