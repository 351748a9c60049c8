"""From a downloaded deblurring archive to exactly the lmdb files the option files in ``options/`` read.

    python scripts/prepare_dataset.py gopro --input datasets/GOPRO_Large --output datasets/GoPro
        datasets/GoPro/train/blur_crops.lmdb + sharp_crops.lmdb   512x512 sub-images of GOPRO_Large/train, step 256
        datasets/GoPro/test/input.lmdb + target.lmdb              whole GOPRO_Large/test images
    python scripts/prepare_dataset.py hide --input datasets/HIDE_dataset --output datasets/HIDE
        datasets/HIDE/test/input.lmdb + target.lmdb               whole HIDE test images (blurry under test/, sharp GT/)
    python scripts/prepare_dataset.py realblur_j --input datasets/RealBlur --output datasets/RealBlur_J
        datasets/RealBlur_J/{train,test}/input.lmdb + target.lmdb from RealBlur_J_{train,test}_list.txt
    (realblur_r: the same with the RealBlur_R lists)

``GOPRO_Large`` is the unzipped GoPro archive (``train/<scene>/{blur,sharp}/*.png``, ``test/...``); the test option
files (``options/test_*_gopro.yml``) read its ``test`` folder directly. Sub-images are those of BasicSR's
``extract_subimages`` (``--crop-size 512 --step 256 --thresh-size 0``, as NAFNet / UFPNet prepare GoPro), keyed
``<scene>/<frame>_s001``, ... in both lmdbs; whole-image keys are ``<scene>/<frame>``. Existing outputs are refused
(remove them to rebuild); each lmdb is written under a temporary name and renamed when complete.
"""
import argparse
import importlib.util
import os
import sys

DATASETS = ('gopro', 'hide', 'realblur_j', 'realblur_r')


def _create_lmdb_module():
    spec = importlib.util.spec_from_file_location(
        'create_lmdb', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'create_lmdb.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan(dataset: str, root: str, output: str) -> list:
    """What to write: a list of (split folder under INPUT or None, entry kwargs, (lq lmdb, gt lmdb), crop?)."""
    if dataset == 'gopro':
        return [(os.path.join(root, 'train'), {'layout': 'gopro'},
                 (os.path.join(output, 'train', 'blur_crops.lmdb'), os.path.join(output, 'train', 'sharp_crops.lmdb')),
                 True),
                (os.path.join(root, 'test'), {'layout': 'gopro'},
                 (os.path.join(output, 'test', 'input.lmdb'), os.path.join(output, 'test', 'target.lmdb')), False)]
    if dataset == 'hide':
        return [(root, {'layout': 'hide', 'split': 'test'},
                 (os.path.join(output, 'test', 'input.lmdb'), os.path.join(output, 'test', 'target.lmdb')), False)]
    letter = dataset[-1].upper()
    return [(root, {'layout': 'realblur', 'list_file': os.path.join(root, f'RealBlur_{letter}_{split}_list.txt')},
             (os.path.join(output, split, 'input.lmdb'), os.path.join(output, split, 'target.lmdb')), False)
            for split in ('train', 'test')]


def prepare(dataset: str, root: str, output: str, crop_size: int = 512, step: int = 256, thresh_size: int = 0,
            compress_level: int = 1) -> list:
    """Writes every lmdb of ``dataset`` (see the module docstring); returns their paths."""
    create_lmdb = _create_lmdb_module()
    steps = plan(dataset, root, output)
    for folder, _, outputs, _ in steps:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f'{dataset}: expected the folder {folder!r} of the unpacked archive')
        for path in outputs:
            if os.path.exists(path):
                raise FileExistsError(f'{path} already exists; remove it to rebuild it')
    written = []
    for folder, entry, outputs, crop in steps:
        keys, lq, gt = create_lmdb.paired_entries(root=folder, **entry)
        if crop:
            count = create_lmdb.write_crops_lmdb(folder, outputs, list(zip(lq, gt)), keys, crop_size, step,
                                                 thresh_size, compress_level)
            print(f'{outputs[0]}, {outputs[1]}: {count} sub-images of {len(keys)} pairs')
        else:
            for path, files in zip(outputs, (lq, gt)):
                create_lmdb.write_lmdb(folder, path, files, keys, compress_level)
            print(f'{outputs[0]}, {outputs[1]}: {len(keys)} pairs')
        written.extend(outputs)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('dataset', choices=DATASETS)
    parser.add_argument('--input', required=True, help='the unpacked archive (see above)')
    parser.add_argument('--output', required=True, help='the dataset folder the option files read')
    parser.add_argument('--crop-size', type=int, default=512, help='GoPro training sub-image side (default 512)')
    parser.add_argument('--step', type=int, default=256, help='GoPro sub-image stride (default 256)')
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='a border strip wider than this gets its own last crop (default 0)')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level 0-9')
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isdir(args.input):
        parser.exit(2, f'error: --input {args.input!r}: no such folder\n')
    if not (args.crop_size > 0 and args.step > 0 and 0 <= args.thresh_size < args.crop_size):
        parser.error(f'expected --crop-size > 0, --step > 0 and 0 <= --thresh-size < --crop-size, got '
                     f'{args.crop_size}, {args.step}, {args.thresh_size}')
    try:
        prepare(args.dataset, args.input, args.output, args.crop_size, args.step, args.thresh_size,
                args.compress_level)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
