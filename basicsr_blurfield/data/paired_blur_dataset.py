"""Paired blurry/sharp datasets in the layouts of the deblurring benchmarks (GoPro, HIDE, RealBlur-J/R).

Pairs are found once, from the folder layout (disk) or the lmdb ``meta_info.txt`` keys, and every pair is checked:
files missing on either side are reported by name. Reading goes through BasicSR's file client (``io_backend``
``disk`` or ``lmdb``), cropping and augmentation through BasicSR's transforms.

Layouts (option ``layout``):

* ``gopro``: ``dataroot`` is a split folder (``GOPRO_Large/train``) of ``<scene>/blur/*.png`` and
  ``<scene>/sharp/*.png`` (``lq_subfolder``/``gt_subfolder`` rename them, e.g. ``blur_gamma``).
* ``hide``: blurry images anywhere under ``dataroot_lq`` (``HIDE/test`` with its ``test-close-ups`` /
  ``test-long-shot`` subfolders, or ``HIDE/train``); the sharp image of the same file name in ``dataroot_gt``
  (``HIDE/GT``).
* ``realblur``: ``meta_info_file`` lists ``gt lq`` relative paths per line (``RealBlur_J_train_list.txt``),
  relative to ``dataroot``.
* ``folders`` (default): the same relative paths under ``dataroot_gt`` and ``dataroot_lq`` (also the layout of our
  synthetic sets and of BasicSR's ``PairedImageDataset``).

With ``io_backend: {type: lmdb}``, ``dataroot_gt`` / ``dataroot_lq`` are ``.lmdb`` folders (``scripts/create_lmdb.py``)
whose ``meta_info.txt`` must hold the same keys.
"""
import os
from typing import List, Tuple

import numpy as np
from torch.utils import data

from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

_LAYOUTS = ('folders', 'gopro', 'hide', 'realblur')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def list_images(root: str) -> List[str]:
    """Relative paths of every image under ``root`` (recursive, sorted)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f'image folder not found: {root!r}')
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def read_lmdb_keys(root: str) -> List[str]:
    """Keys of a BasicSR lmdb: the first column of ``meta_info.txt`` (``KEY.png (h,w,c) level``) without extension."""
    meta = os.path.join(root, 'meta_info.txt')
    if not (root.endswith('.lmdb') and os.path.isfile(meta)):
        raise ValueError(f'lmdb backend: {root!r} must be a .lmdb folder with a meta_info.txt '
                         '(make one with scripts/create_lmdb.py)')
    with open(meta) as f:
        return [os.path.splitext(line.split(' ')[0])[0] for line in f.read().splitlines() if line.strip()]


def _check_pairs(lq_only: List[str], gt_only: List[str], where: str) -> None:
    """Raises a ValueError naming (up to 10 of) the unmatched files on each side."""
    if not lq_only and not gt_only:
        return
    lines = [f'mismatched pairs in {where}:']
    if lq_only:
        lines.append(f'  {len(lq_only)} blurry without a sharp image: {lq_only[:10]}')
    if gt_only:
        lines.append(f'  {len(gt_only)} sharp without a blurry image: {gt_only[:10]}')
    raise ValueError('\n'.join(lines))


def read_pair_list(list_file: str) -> List[Tuple[str, str]]:
    """Reads a RealBlur-style list file: one ``gt_path lq_path`` pair per line (relative paths; blank lines skipped).

    Returns:
        list[tuple[str, str]]: (gt_path, lq_path) as written. Raises ``ValueError`` naming a malformed line.
    """
    pairs = []
    with open(list_file) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f'{list_file}:{number}: expected "gt_path lq_path", got {line.strip()!r}')
            pairs.append((fields[0], fields[1]))
    return pairs


def find_pairs(opt: dict) -> List[Tuple[str, str]]:
    """Finds (gt_path, lq_path) pairs for a dataset option dict (see the module docstring for the layouts).

    For lmdb the paths are lmdb keys. Raises ``ValueError`` naming unmatched files, ``FileNotFoundError`` for
    missing folders, ``KeyError`` for missing options.
    """
    layout = opt.get('layout', 'folders')
    if layout not in _LAYOUTS:
        raise ValueError(f'Invalid layout {layout!r}. Supported ones are: {list(_LAYOUTS)}')
    backend = opt.get('io_backend', {'type': 'disk'})['type']

    def root(key):
        if opt.get(key) is None:
            raise KeyError(f'dataset {opt.get("name", "")!r}: option {key!r} is missing for layout {layout!r}')
        return opt[key]

    if backend == 'lmdb':
        gt_keys, lq_keys = read_lmdb_keys(root('dataroot_gt')), read_lmdb_keys(root('dataroot_lq'))
        _check_pairs(sorted(set(lq_keys) - set(gt_keys)), sorted(set(gt_keys) - set(lq_keys)), 'the lmdb meta_info')
        return [(key, key) for key in lq_keys]

    if layout == 'realblur':
        base, list_file = root('dataroot'), root('meta_info_file')
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f'meta_info_file not found: {list_file!r}')
        pairs = [(os.path.join(base, gt), os.path.join(base, lq)) for gt, lq in read_pair_list(list_file)]
        missing = [path for pair in pairs for path in pair if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f'{len(missing)} files listed in {list_file} do not exist, e.g. {missing[:5]}')
        return pairs

    if layout == 'gopro':
        base = root('dataroot')
        lq_name, gt_name = opt.get('lq_subfolder', 'blur'), opt.get('gt_subfolder', 'sharp')
        files = list_images(base)
        lq = {path.replace(f'{os.sep}{lq_name}{os.sep}', f'{os.sep}{gt_name}{os.sep}', 1): path
              for path in files if f'{os.sep}{lq_name}{os.sep}' in f'{os.sep}{path}'}
        gt = {path for path in files if f'{os.sep}{gt_name}{os.sep}' in f'{os.sep}{path}'}
        if not lq and not gt:
            raise ValueError(f'no <scene>/{lq_name}/ or <scene>/{gt_name}/ images under {base!r} (GoPro layout)')
        _check_pairs(sorted(lq[key] for key in set(lq) - gt), sorted(gt - set(lq)), base)
        return [(os.path.join(base, key), os.path.join(base, lq[key])) for key in sorted(lq)]

    gt_root, lq_root = root('dataroot_gt'), root('dataroot_lq')
    lq_files, gt_files = list_images(lq_root), list_images(gt_root)
    if layout == 'hide':
        gt_by_name = {os.path.basename(path): path for path in gt_files}
        unmatched = [path for path in lq_files if os.path.basename(path) not in gt_by_name]
        _check_pairs(unmatched, [], f'{lq_root} vs {gt_root}')
        return [(os.path.join(gt_root, gt_by_name[os.path.basename(path)]), os.path.join(lq_root, path))
                for path in lq_files]
    _check_pairs(sorted(set(lq_files) - set(gt_files)), sorted(set(gt_files) - set(lq_files)),
                 f'{lq_root} vs {gt_root}')
    if not lq_files:
        raise ValueError(f'no images found under {lq_root!r}')
    return [(os.path.join(gt_root, path), os.path.join(lq_root, path)) for path in lq_files]


@DATASET_REGISTRY.register()
class PairedBlurDataset(data.Dataset):
    """Blurry/sharp pairs of GoPro, HIDE, RealBlur or plain folders, from disk or lmdb.

    Options: ``layout`` ('folders' | 'gopro' | 'hide' | 'realblur'), ``dataroot`` / ``dataroot_gt`` /
    ``dataroot_lq`` / ``meta_info_file`` (per layout), ``io_backend``, ``phase``, and for training ``gt_size`` (random
    crop), ``use_hflip``, ``use_rot``. Validation/test items are whole images.

    Returns items ``{'lq', 'gt'}`` (C, H, W) float32 RGB in [0, 1], ``{'lq_path', 'gt_path'}`` and ``'key'``: the
    sharp image's path relative to its dataset root, without extension (``GOPR0384_11_00/sharp/000001``), under which
    ``DeblurModel`` saves results so that scenes reusing file names do not overwrite each other.
    """

    option_keys = ('layout', 'dataroot', 'gt_subfolder', 'lq_subfolder')

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.io_backend_opt = dict(opt.get('io_backend', {'type': 'disk'}))
        self.file_client = None
        self.pairs = find_pairs(opt)
        self.gt_root = opt.get('dataroot_gt') or opt.get('dataroot')
        if not self.pairs:
            raise ValueError(f'dataset {opt.get("name", "")!r} is empty')
        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt['db_paths'] = [opt['dataroot_lq'], opt['dataroot_gt']]
            self.io_backend_opt['client_keys'] = ['lq', 'gt']
        if opt.get('phase') == 'train' and opt.get('gt_size') is None:
            raise KeyError(f'dataset {opt.get("name", "")!r}: option gt_size (training crop size) is missing')

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, path: str, client_key: str) -> np.ndarray:
        try:
            image = imfrombytes(self.file_client.get(path, client_key), float32=True)
        except Exception as error:
            raise ValueError(f'cannot read image {path!r} ({client_key}): {error}') from error
        if image is None:
            raise ValueError(f'cannot decode image {path!r} ({client_key}): the file is corrupt or not an image')
        return image

    def __getitem__(self, index: int) -> dict:
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        gt_path, lq_path = self.pairs[index]
        img_gt, img_lq = self._read(gt_path, 'gt'), self._read(lq_path, 'lq')
        if img_gt.shape != img_lq.shape:
            raise ValueError(f'pair sizes differ: {lq_path} is {img_lq.shape}, {gt_path} is {img_gt.shape}')
        if self.opt.get('phase') == 'train':
            gt_size = int(self.opt['gt_size'])
            if min(img_gt.shape[:2]) < gt_size:
                raise ValueError(f'{gt_path} ({img_gt.shape[1]}x{img_gt.shape[0]}) is smaller than gt_size={gt_size}')
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, gt_size, 1, gt_path)
            img_gt, img_lq = augment([img_gt, img_lq], self.opt.get('use_hflip', False), self.opt.get('use_rot', False))
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        key = gt_path if self.io_backend_opt['type'] == 'lmdb' else os.path.relpath(gt_path, self.gt_root)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path, 'key': os.path.splitext(key)[0]}
