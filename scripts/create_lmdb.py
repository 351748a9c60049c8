"""Pack deblurring datasets into lmdb the way BasicSR reads them (``io_backend: {type: lmdb}``).

Built on ``basicsr.utils.lmdb_util.make_lmdb_from_imgs``: every image is stored PNG-encoded under a key (its path
relative to the split without extension), and ``meta_info.txt`` lists ``KEY.png (h,w,c) compress_level`` per line.
Paired layouts write ``OUTPUT/blur.lmdb`` (lq) and ``OUTPUT/sharp.lmdb`` (gt) with the same keys, so
``dataroot_lq: OUTPUT/blur.lmdb`` and ``dataroot_gt: OUTPUT/sharp.lmdb`` work with BasicSR's ``PairedImageDataset``
(``filename_tmpl: '{}'``) and with ``PairedBlurDataset`` / ``SyntheticBlurDataset``.

Layouts (``--layout``):
  gopro      INPUT is a split folder (``GOPRO_Large/train``): ``<scene>/blur/*.png`` + ``<scene>/sharp/*.png``;
             keys ``<scene>/<frame>`` (``--lq-subfolder blur_gamma`` for the gamma-blurred set).
  hide       INPUT is the HIDE root: blurry images under ``INPUT/<split>/`` (``--split test`` also finds the
             ``test-close-ups`` / ``test-long-shot`` subfolders), sharp ones of the same file name in ``INPUT/GT``;
             keys: blurry path relative to the split, without extension.
  realblur   INPUT is the RealBlur root and ``--list`` a ``RealBlur_J_train_list.txt``-style file of ``gt lq``
             relative paths; keys: lq path without extension.
  synthetic  INPUT is a folder written by ``scripts/make_synthetic_blur.py`` (``sharp/``, ``blur/``); keys: names.
  folder     INPUT is any folder of images (e.g. sharp photos for SyntheticBlurDataset); OUTPUT is the ``.lmdb``
             path itself; keys: paths relative to INPUT without extension.

Example:
    python scripts/create_lmdb.py --layout gopro --input datasets/GoPro/train --output datasets/GoPro/train_lmdb
"""
import argparse
import os
import shutil
import sys
from typing import List, Tuple

LAYOUTS = ('gopro', 'hide', 'realblur', 'synthetic', 'folder')


def key_of(path: str) -> str:
    """lmdb key of a relative path: no extension, '/' separators, no '.' (BasicSR splits meta lines at '.')."""
    key = os.path.splitext(path)[0].replace(os.sep, '/')
    if '.' in key or ' ' in key:
        raise ValueError(f'cannot make an lmdb key of {path!r}: BasicSR keys may not contain "." or " "')
    return key


def _unique(keys: List[str], what: str) -> None:
    if len(set(keys)) != len(keys):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f'{what}: expected unique keys, got duplicates {duplicated[:5]}')


def paired_entries(layout: str,
                   root: str,
                   split: str = 'train',
                   list_file: str = None,
                   lq_subfolder: str = 'blur',
                   gt_subfolder: str = 'sharp') -> Tuple[List[str], List[str], List[str]]:
    """Finds the pairs of a layout.

    Args:
        layout (str): ``'gopro'``, ``'hide'``, ``'realblur'`` or ``'synthetic'``.
        root (str): INPUT (see the module docstring).
        split (str): HIDE split folder.
        list_file (str): RealBlur list file.
        lq_subfolder (str): GoPro blurry subfolder name.
        gt_subfolder (str): GoPro sharp subfolder name.

    Returns:
        tuple: keys, lq paths and gt paths (relative to ``root``), in the same order.
    """
    from basicsr_blurfield.data.paired_blur_dataset import list_images, read_pair_list

    if layout == 'gopro':
        lq = [p for p in list_images(root) if p.split(os.sep)[-2:-1] == [lq_subfolder]]
        pairs = [(p, os.path.join(os.path.dirname(os.path.dirname(p)), gt_subfolder, os.path.basename(p))) for p in lq]
        keys = [key_of(os.path.join(os.path.dirname(os.path.dirname(p)), os.path.basename(p))) for p in lq]
    elif layout == 'hide':
        gt = {os.path.basename(p): os.path.join('GT', p) for p in list_images(os.path.join(root, 'GT'))}
        lq = list_images(os.path.join(root, split))
        missing = [p for p in lq if os.path.basename(p) not in gt]
        if missing:
            raise FileNotFoundError(f'HIDE: {len(missing)} blurry images have no GT of the same name, '
                                    f'e.g. {missing[:5]}')
        pairs = [(os.path.join(split, p), gt[os.path.basename(p)]) for p in lq]
        keys = [key_of(p) for p in lq]
    elif layout == 'realblur':
        if not list_file or not os.path.isfile(list_file):
            raise FileNotFoundError(f'realblur: expected --list FILE of "gt lq" lines, got {list_file!r}')
        pairs = [(lq, gt) for gt, lq in read_pair_list(list_file)]
        keys = [key_of(lq) for lq, _ in pairs]
    elif layout == 'synthetic':
        names = list_images(os.path.join(root, 'blur'))
        pairs = [(os.path.join('blur', p), os.path.join('sharp', p)) for p in names]
        keys = [key_of(p) for p in names]
    else:
        raise ValueError(f"layout: expected one of ('gopro', 'hide', 'realblur', 'synthetic'), got {layout!r}")
    if not pairs:
        raise ValueError(f'{layout}: found no image pairs under {root!r}')
    missing = [p for pair in pairs for p in pair if not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise FileNotFoundError(f'{layout}: {len(missing)} listed images do not exist, e.g. {missing[:5]}')
    _unique(keys, layout)
    return keys, [lq for lq, _ in pairs], [gt for _, gt in pairs]


def write_lmdb(root: str, lmdb_path: str, paths: List[str], keys: List[str], compress_level: int = 1) -> None:
    """``make_lmdb_from_imgs`` with a clear error when the output exists (BasicSR would exit the process).

    The lmdb is built under a temporary ``.<name>.partial.lmdb`` beside the target and renamed when complete, so an
    interrupted run never leaves a half-written ``.lmdb`` that a dataset would read.

    The lmdb map size is a generous bound from the input file sizes (64 MiB + 30x the files, enough for JPEG inputs
    re-encoded as PNG); BasicSR's default (10x the first image) overflows when images differ in size.
    """
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    map_size = (64 << 20) + 30 * sum(os.path.getsize(os.path.join(root, p)) for p in paths)
    with _partial_lmdb(lmdb_path) as partial:
        make_lmdb_from_imgs(root, partial, paths, keys, compress_level=compress_level, map_size=map_size)


class _partial_lmdb:
    """Context manager: yields ``.<name>.partial.lmdb`` beside ``lmdb_path``, renamed to it when the block succeeds."""

    def __init__(self, lmdb_path: str):
        if not lmdb_path.endswith('.lmdb'):
            raise ValueError(f'output: expected a path ending with .lmdb, got {lmdb_path!r}')
        if os.path.exists(lmdb_path):
            raise FileExistsError(f'{lmdb_path} already exists; remove it or choose another --output')
        folder, name = os.path.split(os.path.abspath(lmdb_path))
        os.makedirs(folder, exist_ok=True)
        self.path, self.partial = lmdb_path, os.path.join(folder, f'.{name[:-len(".lmdb")]}.partial.lmdb')

    def __enter__(self) -> str:
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.partial

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            os.rename(self.partial, self.path)
        else:
            shutil.rmtree(self.partial, ignore_errors=True)


def subimage_positions(length: int, crop_size: int, step: int, thresh_size: int) -> List[int]:
    """Top (or left) offsets of BasicSR's ``extract_subimages``: every ``step`` pixels, plus a last crop flush with
    the border when more than ``thresh_size`` pixels would be left over.

    Raises:
        ValueError: when the image side is smaller than ``crop_size``.
    """
    if length < crop_size:
        raise ValueError(f'an image side of {length} px is smaller than the crop size {crop_size}')
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def write_crops_lmdb(root: str, outputs: Tuple[str, str], pairs: List[Tuple[str, str]], keys: List[str],
                     crop_size: int, step: int, thresh_size: int = 0, compress_level: int = 1) -> int:
    """Writes the sub-images of paired images into two lmdbs with the same keys (``<key>_s001``, ``_s002``, ...).

    The crops are those of BasicSR's ``scripts/data_preparation/extract_subimages.py`` (row-major, numbered from 1),
    taken at the same positions in the blurry and the sharp image, PNG-encoded as ``make_lmdb_from_imgs`` stores
    them. Returns the number of crops per lmdb.
    """
    import cv2
    from basicsr.utils.lmdb_util import LmdbMaker
    from tqdm import tqdm

    if not (0 < step and 0 < crop_size and 0 <= thresh_size < crop_size):
        raise ValueError(f'expected crop_size > 0, step > 0 and 0 <= thresh_size < crop_size, got {crop_size}, '
                         f'{step}, {thresh_size}')
    map_size = (64 << 20) + 60 * sum(os.path.getsize(os.path.join(root, p)) for pair in pairs for p in pair)
    count = 0
    with _partial_lmdb(outputs[0]) as lq_path, _partial_lmdb(outputs[1]) as gt_path:
        makers = [LmdbMaker(path, map_size=map_size, compress_level=compress_level) for path in (lq_path, gt_path)]
        try:
            for (lq, gt), key in tqdm(list(zip(pairs, keys)), unit='pair', desc='crops'):
                images = [cv2.imread(os.path.join(root, p), cv2.IMREAD_UNCHANGED) for p in (lq, gt)]
                for path, image in zip((lq, gt), images):
                    if image is None:
                        raise ValueError(f'cannot decode image {os.path.join(root, path)!r}')
                if images[0].shape != images[1].shape:
                    raise ValueError(f'pair sizes differ: {lq} {images[0].shape[:2]} vs {gt} {images[1].shape[:2]}')
                height, width = images[0].shape[:2]
                index = 0
                for top in subimage_positions(height, crop_size, step, thresh_size):
                    for left in subimage_positions(width, crop_size, step, thresh_size):
                        index += 1
                        for maker, image in zip(makers, images):
                            crop = image[top:top + crop_size, left:left + crop_size]
                            encoded = cv2.imencode('.png', crop, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])[1]
                            shape = crop.shape if crop.ndim == 3 else (*crop.shape, 1)
                            maker.put(encoded.tobytes(), f'{key}_s{index:03d}', shape)
                        count += 1
        finally:
            for maker in makers:
                maker.close()
    return count


def create(layout: str,
           root: str,
           output: str,
           split: str = 'train',
           list_file: str = None,
           lq_subfolder: str = 'blur',
           gt_subfolder: str = 'sharp',
           compress_level: int = 1) -> List[str]:
    """Writes the lmdb(s) of a layout; returns the written ``.lmdb`` paths."""
    if layout not in LAYOUTS:
        raise ValueError(f'layout: expected one of {LAYOUTS}, got {layout!r}')
    if layout == 'folder':
        from basicsr_blurfield.data.paired_blur_dataset import list_images
        paths = list_images(root)
        if not paths:
            raise ValueError(f'folder: found no images under {root!r}')
        keys = [key_of(p) for p in paths]
        _unique(keys, layout)
        write_lmdb(root, output, paths, keys, compress_level)
        return [output]
    keys, lq, gt = paired_entries(layout, root, split, list_file, lq_subfolder, gt_subfolder)
    outputs = [os.path.join(output, 'blur.lmdb'), os.path.join(output, 'sharp.lmdb')]
    for path in outputs:
        if os.path.exists(path):
            raise FileExistsError(f'{path} already exists; remove it or choose another --output')
    os.makedirs(output, exist_ok=True)
    write_lmdb(root, outputs[0], lq, keys, compress_level)
    write_lmdb(root, outputs[1], gt, keys, compress_level)
    return outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layout', required=True, choices=LAYOUTS)
    parser.add_argument('--input', required=True, help='dataset folder (see the layouts above)')
    parser.add_argument('--output', required=True, help='folder for blur.lmdb + sharp.lmdb, or the .lmdb (folder)')
    parser.add_argument('--split', default='train', help='HIDE split folder (train or test)')
    parser.add_argument('--list', dest='list_file', help='RealBlur list file of "gt lq" lines')
    parser.add_argument('--lq-subfolder', default='blur', help='GoPro blurry subfolder (blur or blur_gamma)')
    parser.add_argument('--gt-subfolder', default='sharp', help='GoPro sharp subfolder')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level 0-9')
    args = parser.parse_args(argv)
    try:
        written = create(args.layout, args.input, args.output, args.split, args.list_file, args.lq_subfolder,
                         args.gt_subfolder, args.compress_level)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print('wrote ' + ', '.join(written))
    return 0


if __name__ == '__main__':
    sys.exit(main())
