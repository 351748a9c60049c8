"""PairedBlurDataset: every layout pairs the right files, lmdb works, mismatches and bad files are named."""
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from tests.conftest import make_paired_folders


def option(**extra):
    return dict({'name': 'pairs', 'type': 'PairedBlurDataset', 'phase': 'val', 'io_backend': {'type': 'disk'}}, **extra)


def check_pairs(dataset, expected_count):
    assert len(dataset) == expected_count
    for index in range(len(dataset)):
        item = dataset[index]
        lq = cv2.imread(item['lq_path'])[:, :, ::-1].astype(np.float32) / 255
        gt = cv2.imread(item['gt_path'])[:, :, ::-1].astype(np.float32) / 255
        assert torch.allclose(item['lq'], torch.from_numpy(lq.transpose(2, 0, 1).copy()))
        assert torch.allclose(item['gt'], torch.from_numpy(gt.transpose(2, 0, 1).copy()))
        assert os.path.basename(item['lq_path']) == os.path.basename(item['gt_path'])


def test_folders_layout_pairs_by_relative_path(paired_folders):
    gt_dir, lq_dir = paired_folders
    check_pairs(build_dataset(option(dataroot_gt=gt_dir, dataroot_lq=lq_dir)), 3)


def test_gopro_layout_pairs_blur_and_sharp_in_each_scene(tmp_path):
    for scene in ('GOPR0001_11_00', 'GOPR0002_11_01'):
        gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'src' / scene), count=2)
        shutil.copytree(gt_dir, tmp_path / 'test' / scene / 'sharp')
        shutil.copytree(lq_dir, tmp_path / 'test' / scene / 'blur')
    dataset = build_dataset(option(layout='gopro', dataroot=str(tmp_path / 'test')))
    check_pairs(dataset, 4)
    assert all('/blur/' in lq and '/sharp/' in gt for gt, lq in dataset.pairs)


def test_hide_layout_matches_file_names_across_subfolders(tmp_path):
    gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'src'), count=3)
    os.makedirs(tmp_path / 'HIDE' / 'test' / 'test-close-ups')
    os.makedirs(tmp_path / 'HIDE' / 'test' / 'test-long-shot')
    shutil.copytree(gt_dir, tmp_path / 'HIDE' / 'GT')
    for index, name in enumerate(sorted(os.listdir(lq_dir))):
        sub = 'test-close-ups' if index < 2 else 'test-long-shot'
        shutil.copy(os.path.join(lq_dir, name), tmp_path / 'HIDE' / 'test' / sub / name)
    dataset = build_dataset(option(layout='hide', dataroot_lq=str(tmp_path / 'HIDE' / 'test'),
                                   dataroot_gt=str(tmp_path / 'HIDE' / 'GT')))
    check_pairs(dataset, 3)


def test_realblur_layout_reads_the_list_file(tmp_path, paired_folders):
    gt_dir, lq_dir = paired_folders
    root = os.path.dirname(gt_dir)
    names = sorted(os.listdir(gt_dir))
    list_file = tmp_path / 'RealBlur_J_test_list.txt'
    list_file.write_text(''.join(f'sharp/{name} blur/{name}\n' for name in names))
    check_pairs(build_dataset(option(layout='realblur', dataroot=root, meta_info_file=str(list_file))), 3)


def test_lmdb_backend_reads_what_basicsr_lmdb_tools_write(tmp_path, paired_folders):
    gt_dir, lq_dir = paired_folders
    names = sorted(os.listdir(gt_dir))
    keys = [os.path.splitext(name)[0] for name in names]
    for folder, target in ((gt_dir, 'gt.lmdb'), (lq_dir, 'lq.lmdb')):
        make_lmdb_from_imgs(folder, str(tmp_path / target), names, keys)
    dataset = build_dataset(option(dataroot_gt=str(tmp_path / 'gt.lmdb'), dataroot_lq=str(tmp_path / 'lq.lmdb'),
                                   io_backend={'type': 'lmdb'}))
    item = dataset[1]
    expected = cv2.imread(os.path.join(lq_dir, names[1]))[:, :, ::-1].astype(np.float32) / 255
    assert torch.allclose(item['lq'], torch.from_numpy(expected.transpose(2, 0, 1).copy()))


def test_training_items_are_random_crops_of_the_same_place(paired_folders):
    gt_dir, lq_dir = paired_folders
    dataset = build_dataset(option(phase='train', dataroot_gt=gt_dir, dataroot_lq=lq_dir, gt_size=16,
                                   use_hflip=True, use_rot=True))
    item = dataset[0]
    assert item['lq'].shape == item['gt'].shape == (3, 16, 16)


def test_mismatched_pairs_are_named(paired_folders):
    gt_dir, lq_dir = paired_folders
    os.remove(os.path.join(gt_dir, '001.png'))
    with pytest.raises(ValueError, match=r"1 blurry without a sharp image: \['001.png'\]"):
        build_dataset(option(dataroot_gt=gt_dir, dataroot_lq=lq_dir))


def test_missing_options_folders_and_corrupt_images_are_reported(tmp_path, paired_folders):
    gt_dir, lq_dir = paired_folders
    with pytest.raises(KeyError, match="option 'dataroot_lq' is missing"):
        build_dataset(option(dataroot_gt=gt_dir))
    with pytest.raises(FileNotFoundError, match='image folder not found'):
        build_dataset(option(dataroot_gt=gt_dir, dataroot_lq=str(tmp_path / 'nowhere')))
    with pytest.raises(ValueError, match="Invalid layout 'gopr'"):
        build_dataset(option(layout='gopr', dataroot=gt_dir))
    with pytest.raises(KeyError, match='gt_size'):
        build_dataset(option(phase='train', dataroot_gt=gt_dir, dataroot_lq=lq_dir))
    with open(os.path.join(lq_dir, '002.png'), 'wb') as f:
        f.write(b'not a png')
    dataset = build_dataset(option(dataroot_gt=gt_dir, dataroot_lq=lq_dir))
    with pytest.raises(ValueError, match=r"cannot (decode|read) image .*002.png"):
        dataset[2]
    with pytest.raises(ValueError, match='smaller than gt_size=64'):
        build_dataset(option(phase='train', dataroot_gt=gt_dir, dataroot_lq=lq_dir, gt_size=64))[0]
