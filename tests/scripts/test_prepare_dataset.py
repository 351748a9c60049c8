"""scripts/prepare_dataset.py makes exactly what the option files read: BasicSR-style sub-image crops in lmdb, and the
README's walk (downloaded GoPro tree -> prepare -> train one iteration -> test) runs on a tiny fake GoPro tree with the
unmodified option files (sizes and paths overridden only by --force_yml)."""
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from basicsr.utils import FileClient, imfrombytes
from tests.conftest import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the README's walk, with tiny sizes appended (what a user with the real archive runs without the extras)
PREPARE = ['scripts/prepare_dataset.py', 'gopro', '--input', 'datasets/GOPRO_Large', '--output', 'datasets/GoPro']
TRAIN = ['-m', 'basicsr_blurfield.train', '-opt', 'options/nafnet_gopro.yml', '--force_yml', 'num_gpu=0']
TEST = ['-m', 'basicsr_blurfield.test', '-opt', 'options/test_nafnet_gopro.yml', '--force_yml', 'num_gpu=0',
        'path:pretrain_network_g=experiments/NAFNet-GoPro-width64/models/net_g_latest.pth']
TINY_NET = ['network_g:width=8', 'network_g:enc_blk_nums=[1,1,1,1]']


def fake_gopro(root, scenes, frames, size, seed):
    rng = np.random.default_rng(seed)
    for scene in scenes:
        for frame in range(1, frames + 1):
            sharp = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            blur = cv2.blur(sharp, (5, 1))
            for kind, image in (('sharp', sharp), ('blur', blur)):
                os.makedirs(os.path.join(root, scene, kind), exist_ok=True)
                cv2.imwrite(os.path.join(root, scene, kind, f'{frame:06d}.png'), image)


def lmdb_keys(path):
    with open(os.path.join(path, 'meta_info.txt')) as f:
        return [line.split('.png')[0] for line in f]


def test_subimage_positions_are_those_of_basicsrs_extract_subimages():
    script = load_script('create_lmdb')
    assert script.subimage_positions(720, 512, 256, 0) == [0, 208]
    assert script.subimage_positions(1280, 512, 256, 0) == [0, 256, 512, 768]
    assert script.subimage_positions(520, 512, 256, 8) == [0]
    assert script.subimage_positions(521, 512, 256, 8) == [0, 9]
    with pytest.raises(ValueError, match='smaller than the crop size 512'):
        script.subimage_positions(500, 512, 256, 0)


def test_gopro_crops_and_test_images_land_where_the_options_read_them(tmp_path):
    fake_gopro(tmp_path / 'GOPRO_Large' / 'train', ['GOPR0001_11_00'], 1, (40, 56), 0)
    fake_gopro(tmp_path / 'GOPRO_Large' / 'test', ['GOPR0002_11_00'], 2, (36, 44), 1)
    script = load_script('prepare_dataset')
    assert script.main(['gopro', '--input', str(tmp_path / 'GOPRO_Large'), '--output', str(tmp_path / 'GoPro'),
                        '--crop-size', '32', '--step', '16']) == 0
    train = tmp_path / 'GoPro' / 'train'
    keys = lmdb_keys(train / 'sharp_crops.lmdb')
    # rows at 0, 8 (flush with the border) x columns at 0, 16, 24
    assert keys == [f'GOPR0001_11_00/000001_s{i:03d}' for i in range(1, 7)] == lmdb_keys(train / 'blur_crops.lmdb')
    client = FileClient('lmdb', db_paths=[str(train / 'sharp_crops.lmdb')], client_keys=['gt'])
    crop = imfrombytes(client.get(keys[4], 'gt'), float32=False)
    source = cv2.imread(str(tmp_path / 'GOPRO_Large' / 'train' / 'GOPR0001_11_00' / 'sharp' / '000001.png'))
    assert np.array_equal(crop, source[8:40, 16:48])
    assert lmdb_keys(tmp_path / 'GoPro' / 'test' / 'target.lmdb') == ['GOPR0002_11_00/000001', 'GOPR0002_11_00/000002']
    assert script.main(['gopro', '--input', str(tmp_path / 'GOPRO_Large'), '--output', str(tmp_path / 'GoPro')]) == 2


def run(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result


def test_the_readme_walk_from_the_gopro_archive_to_training_and_testing(tmp_path):
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    section = readme[readme.index('## Train and test'):]
    section = section[:section.index('\n## ', 4)]
    for command in (['python', *PREPARE], ['python', *TRAIN], ['python', *TEST]):
        assert ' '.join(command) in re.sub(r' +', ' ', section), f'README "Train and test" lacks {" ".join(command)}'

    fake_gopro(tmp_path / 'datasets' / 'GOPRO_Large' / 'train', ['GOPR0001_11_00', 'GOPR0003_11_00'], 1, (40, 40), 0)
    fake_gopro(tmp_path / 'datasets' / 'GOPRO_Large' / 'test', ['GOPR0002_11_00'], 1, (36, 44), 1)
    os.symlink(os.path.join(ROOT, 'options'), tmp_path / 'options')
    os.symlink(os.path.join(ROOT, 'scripts'), tmp_path / 'scripts')
    run([*PREPARE, '--crop-size', '32', '--step', '8'], tmp_path)
    run([*TRAIN, *TINY_NET, 'train:total_iter=1', 'datasets:train:gt_size=32', 'datasets:train:batch_size_per_gpu=2',
         'datasets:train:num_worker_per_gpu=0', 'val:val_freq=1', 'logger:print_freq=1', 'logger:use_tb_logger=false'],
        tmp_path)
    experiment = tmp_path / 'experiments' / 'NAFNet-GoPro-width64'
    assert (experiment / 'models' / 'net_g_1.pth').is_file()
    log = open(next(experiment.glob('train_*.log'))).read()
    assert 'Number of train images: 8' in log and 'Validation gopro-test, iter 1' in log
    tested = run([*TEST, *TINY_NET], tmp_path)
    saved = tmp_path / 'results' / 'NAFNet-GoPro-width64-test' / 'visualization' / 'gopro-test' / 'GOPR0002_11_00'
    assert cv2.imread(str(saved / 'sharp' / '000001.png')).shape == (36, 44, 3), tested.stderr[-2000:]
