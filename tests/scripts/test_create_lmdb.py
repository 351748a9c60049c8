"""scripts/create_lmdb.py: GoPro / HIDE / RealBlur / synthetic / folder layouts read back through BasicSR."""
import os

import cv2
import numpy as np
import pytest

from basicsr.data.data_util import paths_from_lmdb
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils import FileClient, imfrombytes
from tests.conftest import load_script

@pytest.fixture(scope='module')
def script():
    return load_script('create_lmdb')


def _write(path, seed, shape=(6, 7, 3)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return image


def _paired(out):
    return PairedImageDataset({
        'phase': 'val',
        'io_backend': {
            'type': 'lmdb'
        },
        'dataroot_gt': str(out / 'sharp.lmdb'),
        'dataroot_lq': str(out / 'blur.lmdb'),
        'filename_tmpl': '{}',
        'scale': 1
    })


def _as_tensor_image(image):
    return image[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255


def test_gopro_layout_pairs_scene_frames(script, tmp_path):
    root = tmp_path / 'train'
    expected = {}
    for scene in ('GOPR0372_07_00', 'GOPR0374_11_01'):
        for frame in ('000047', '000048'):
            lq = _write(root / scene / 'blur' / f'{frame}.png', hash((scene, frame, 0)) % 1000)
            gt = _write(root / scene / 'sharp' / f'{frame}.png', hash((scene, frame, 1)) % 1000)
            expected[f'{scene}/{frame}'] = (lq, gt)
    _write(root / 'GOPR0372_07_00' / 'blur_gamma' / '000047.png', 5)
    assert script.main(['--layout', 'gopro', '--input', str(root), '--output', str(tmp_path / 'lmdb')]) == 0
    assert sorted(paths_from_lmdb(str(tmp_path / 'lmdb' / 'blur.lmdb'))) == sorted(expected)
    meta = (tmp_path / 'lmdb' / 'sharp.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert 'GOPR0372_07_00/000047.png (6,7,3) 1' in meta
    dataset = _paired(tmp_path / 'lmdb')
    assert len(dataset) == 4
    for index in range(4):
        item = dataset[index]
        lq, gt = expected[item['lq_path']]
        assert np.array_equal(item['lq'].numpy(), _as_tensor_image(lq))
        assert np.array_equal(item['gt'].numpy(), _as_tensor_image(gt))


def test_hide_layout_finds_test_subfolders_and_gt_by_name(script, tmp_path):
    root = tmp_path / 'HIDE'
    lq_close = _write(root / 'test' / 'test-close-ups' / '1fromGOPR0950.png', 1)
    _write(root / 'test' / 'test-long-shot' / '2fromGOPR1096.png', 2)
    gt_close = _write(root / 'GT' / '1fromGOPR0950.png', 3)
    _write(root / 'GT' / '2fromGOPR1096.png', 4)
    _write(root / 'GT' / '9fromGOPR0001.png', 5)
    out = tmp_path / 'out'
    assert script.main(['--layout', 'hide', '--split', 'test', '--input', str(root), '--output', str(out)]) == 0
    dataset = _paired(out)
    items = {dataset[i]['lq_path']: dataset[i] for i in range(len(dataset))}
    assert sorted(items) == ['test-close-ups/1fromGOPR0950', 'test-long-shot/2fromGOPR1096']
    item = items['test-close-ups/1fromGOPR0950']
    assert np.array_equal(item['lq'].numpy(), _as_tensor_image(lq_close))
    assert np.array_equal(item['gt'].numpy(), _as_tensor_image(gt_close))


def test_realblur_layout_reads_the_gt_lq_list(script, tmp_path):
    root = tmp_path / 'RealBlur'
    gt = _write(root / 'RealBlur-J_ECC_IMCORR_centroid_itensity_ref' / 'scene001' / 'gt' / 'gt_1.png', 1)
    lq = _write(root / 'RealBlur-J_ECC_IMCORR_centroid_itensity_ref' / 'scene001' / 'blur' / 'blur_1.png', 2)
    listing = tmp_path / 'RealBlur_J_train_list.txt'
    listing.write_text('RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene001/gt/gt_1.png '
                       'RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene001/blur/blur_1.png\n\n')
    out = tmp_path / 'out'
    assert script.main(['--layout', 'realblur', '--input',
                        str(root), '--list',
                        str(listing), '--output',
                        str(out)]) == 0
    item = _paired(out)[0]
    assert item['lq_path'] == 'RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene001/blur/blur_1'
    assert np.array_equal(item['lq'].numpy(), _as_tensor_image(lq))
    assert np.array_equal(item['gt'].numpy(), _as_tensor_image(gt))


def test_synthetic_and_folder_layouts(script, tmp_path):
    root = tmp_path / 'synthetic'
    lq = _write(root / 'blur' / '000000.png', 1)
    _write(root / 'sharp' / '000000.png', 2)
    assert script.main(['--layout', 'synthetic', '--input', str(root), '--output', str(tmp_path / 'out')]) == 0
    assert np.array_equal(_paired(tmp_path / 'out')[0]['lq'].numpy(), _as_tensor_image(lq))
    grey = _write(tmp_path / 'photos' / 'sub' / 'a.png', 3, shape=(5, 4))
    lmdb_path = str(tmp_path / 'photos.lmdb')
    assert script.main(['--layout', 'folder', '--input', str(tmp_path / 'photos'), '--output', lmdb_path]) == 0
    assert paths_from_lmdb(lmdb_path) == ['sub/a']
    client = FileClient('lmdb', db_paths=[lmdb_path], client_keys=['gt'])
    image = imfrombytes(client.get('sub/a', 'gt'), flag='grayscale', float32=False)
    assert np.array_equal(image, grey)


def test_synthetic_blur_dataset_reads_sharp_images_from_lmdb(script, tmp_path):
    from basicsr_blurfield.data.synthetic_blur_dataset import SyntheticBlurDataset

    for index in range(2):
        _write(tmp_path / 'photos' / f'{index}.png', index, shape=(24, 30, 3))
    lmdb_path = str(tmp_path / 'photos.lmdb')
    assert script.main(['--layout', 'folder', '--input', str(tmp_path / 'photos'), '--output', lmdb_path]) == 0
    dataset = SyntheticBlurDataset({
        'phase': 'val',
        'io_backend': {
            'type': 'lmdb'
        },
        'dataroot_gt': lmdb_path,
        'gt_size': 16,
        'kernel_size': 5,
        'min_region_area': 10,
        'num_samples': 4
    })
    item = dataset[1]
    assert item['gt'].shape == (3, 16, 16) and item['gt_path'] == '1_000001'


def test_errors_are_reported_not_exited(script, tmp_path, capsys):
    root = tmp_path / 'HIDE'
    _write(root / 'train' / 'a.png', 1)
    (root / 'GT').mkdir()
    assert script.main(['--layout', 'hide', '--input', str(root), '--output', str(tmp_path / 'o')]) == 2
    assert 'have no GT of the same name' in capsys.readouterr().err
    _write(tmp_path / 'p' / 'a.png', 1)
    assert script.main(['--layout', 'folder', '--input', str(tmp_path / 'p'), '--output', str(tmp_path / 'x')]) == 2
    assert 'ending with .lmdb' in capsys.readouterr().err
    args = ['--layout', 'folder', '--input', str(tmp_path / 'p'), '--output', str(tmp_path / 'x.lmdb')]
    assert script.main(args) == 0
    assert script.main(args) == 2
    assert 'already exists' in capsys.readouterr().err
