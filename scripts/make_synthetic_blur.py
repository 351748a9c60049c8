"""Write a fixed synthetic non-uniform blur dataset with ground-truth fields (Carbajal et al. §3.3 style).

Output (``--out DIR``):
  DIR/sharp/NAME.png   8-bit sharp crop (RGB saved as PNG)
  DIR/blur/NAME.png    8-bit blurry crop: the stored field blurring the 8-bit sharp crop, then optional noise
  DIR/field/NAME.npz   the field (``basicsr_blurfield.fields.load_field``): BasisField or OffsetField, batch 1
  DIR/manifest.json    seed, every generator parameter, package versions, and per item its source and field type
  DIR/plot/NAME.png    with --plots: sharp | blurry | the field's kernels drawn over the blurry image

Item ``i`` is drawn from ``numpy.random.default_rng([seed, i])``: a source photo, a crop, a field type (ratios of
``--field-types``), the field, then the noise. The whole crop is blurred with the field's own ``blur`` and its
boundary mode (``replicate``), so for noise-free items (and ``--gamma 1``) ``load_field(npz).blur(sharp.png)``
reproduces ``blur.png`` to 8-bit rounding. Files are written atomically (temporary name, then rename) and NPZ
archives with fixed time stamps, so the same seed and options give the same bytes; an interrupted run resumes,
skipping items whose three files exist (it refuses to resume into a folder made with other options).

Example:
    python scripts/make_synthetic_blur.py --out datasets/synthetic_val --count 100 --seed 0 --lmdb
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import zipfile

import cv2
import numpy as np
from tqdm import tqdm

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# basicsr_blurfield.data.synthetic_blur_dataset's FIELD_TYPES and REPRESENTATIONS, spelled out so that --help and
# argument errors answer without importing torch (tests/scripts/test_make_synthetic_blur.py checks they agree)
FIELD_TYPES = ('region', 'smooth', 'linear')
REPRESENTATIONS = ('basis', 'offset')


def parse_field_types(text: str) -> dict:
    """``'region=0.6,smooth=0.2,linear=0.2'`` -> dict of ratios."""
    ratios = {}
    for part in text.split(','):
        name, _, value = part.partition('=')
        if name.strip() not in FIELD_TYPES or not value:
            raise argparse.ArgumentTypeError(f'--field-types: expected NAME=RATIO items with NAME in {FIELD_TYPES}, '
                                             f'got {part!r}')
        ratios[name.strip()] = float(value)
    return ratios


def write_png(path: str, image_rgb: np.ndarray) -> None:
    """Writes (H, W, 3) uint8 RGB as PNG, atomically."""
    from basicsr_blurfield.atomic import imwrite

    imwrite(path, np.ascontiguousarray(image_rgb[..., ::-1]))


def write_field(path: str, field) -> None:
    """``save_field``, re-zipped with fixed time stamps (the same bytes on every run), written atomically."""
    from basicsr_blurfield.atomic import atomic_path
    from basicsr_blurfield.fields import save_field

    with atomic_path(path) as temporary:
        save_field(temporary, field)
        with zipfile.ZipFile(temporary) as source:
            entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
        with zipfile.ZipFile(temporary, 'w', zipfile.ZIP_DEFLATED) as target:
            for name, payload in entries:
                entry = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
                entry.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(entry, payload)


def package_versions() -> dict:
    """Versions of the packages that determine the output bytes."""
    import basicsr
    import skimage
    import torch

    import basicsr_blurfield
    return {
        'python': sys.version.split()[0],
        'numpy': np.__version__,
        'torch': torch.__version__,
        'opencv': cv2.__version__,
        'scikit-image': skimage.__version__,
        'basicsr': basicsr.__version__,
        'basicsr_blurfield': basicsr_blurfield.__version__
    }


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] (grey images repeated, alpha dropped)."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot read image {path!r}')
    return np.ascontiguousarray(image[..., ::-1]).astype(np.float32) / 255.0


def make_item(index: int, sources: list, params: dict, cache: dict) -> dict:
    """Draws and blurs item ``index``; returns the uint8 sharp / blurry images, the field and its metadata."""
    from basicsr_blurfield.data.synthetic_blur_dataset import (blur_with_field, degrade, parse_field_ratios,
                                                               random_crop, synthesize_field)

    rng = np.random.default_rng([params['seed'], index])
    source = sources[int(rng.integers(0, len(sources)))]
    if source not in cache:
        cache.clear()
        cache[source] = read_rgb(source)
    image = cache[source]
    size = params['size']
    crop, (top, left) = random_crop(image, size, rng)
    sharp8 = np.round(crop * 255).astype(np.uint8)
    names, probs = parse_field_ratios(params['field_types'], params['representation'])
    field_type = str(rng.choice(names, p=probs))
    arrays = synthesize_field(field_type, size, size, rng, params['kernel_size'], params['representation'],
                              params['max_regions'], params['min_region_area'], params['basis_grid'],
                              params['num_steps'])
    sharp = sharp8.astype(np.float32) / 255.0
    gamma = params['gamma']
    blurry, field = blur_with_field(sharp**gamma if gamma != 1 else sharp, arrays, margin=0)
    blurry = degrade(blurry, rng, params['noise_std'] or None, params['poisson_peak'])
    if gamma != 1:
        blurry = blurry**(1.0 / gamma)
    blurry8 = np.round(np.clip(blurry, 0, 1) * 255).astype(np.uint8)
    record = {'name': f'{index:06d}', 'source': os.path.basename(source), 'crop': [top, left], 'field_type': field_type}
    return {'sharp': sharp8, 'blurry': blurry8, 'field': field, 'record': record}


def plot_item(item: dict, kernel_size: int) -> np.ndarray:
    """Sharp | blurry | kernels drawn over the blurry image (``draw_kernel_grid``), (H, 3 W + 8, 3) uint8 RGB."""
    from basicsr_blurfield.fields import draw_kernel_grid

    step = max(kernel_size + 3, item['sharp'].shape[0] // 6)
    grid = draw_kernel_grid(item['blurry'], item['field'], step=step)
    gap = np.full((item['sharp'].shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([item['sharp'], gap, item['blurry'], gap, grid], axis=1)


def _manifest_params(args, sources) -> dict:
    return {
        'seed': args.seed,
        'count': args.count,
        'sharp': os.path.abspath(args.sharp) if args.sharp else 'scikit-image bundled photos',
        'sources': [os.path.relpath(p, args.sharp) if args.sharp else os.path.basename(p) for p in sources],
        'size': args.size,
        'kernel_size': args.kernel_size,
        'field_types': args.field_types,
        'representation': args.representation,
        'max_regions': args.max_regions,
        'min_region_area': args.min_region_area,
        'basis_grid': args.basis_grid,
        'num_steps': args.num_steps,
        'gamma': args.gamma,
        'noise_std': args.noise,
        'poisson_peak': args.poisson_peak,
        'padding': 'replicate',
        'generators': {
            'shake_kernel': 'random_shake_kernel(length_range=(0.2, 3.0), exposure_range=(0.5, 1.0), '
            'num_steps=256)',
            'region_field': 'region_field(min_regions=1, area_range=(0.05, 0.35))',
            'camera_motion': 'random_camera_motion(max_displacement=kernel_size // 2)'
        },
    }


def run(args) -> dict:
    """Generates (or resumes) the dataset described by parsed arguments; returns the manifest."""
    from basicsr_blurfield.atomic import write_text
    from basicsr_blurfield.data.synthetic_blur_dataset import list_sharp_images

    sources = list_sharp_images(args.sharp)
    params = _manifest_params(args, sources)
    params['versions'] = package_versions()
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, 'manifest.json')
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            previous = json.load(f)
        old = {k: v for k, v in previous.items() if k not in ('items', 'count', 'versions')}
        new = {k: v for k, v in params.items() if k not in ('count', 'versions')}
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f'{args.out} holds a dataset made with other options ({", ".join(changed)}); '
                             'expected the same options to resume, or a new --out')
    for sub in ('sharp', 'blur', 'field') + (('plot', ) if args.plots else ()):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    write_text(manifest_path, json.dumps(dict(params, items=[]), indent=1))
    gen_params = dict(params, field_types=args.field_types)
    cache, records = {}, []
    for index in tqdm(range(args.count), desc='synthetic blur', unit='item', disable=args.quiet):
        name = f'{index:06d}'
        paths = [
            os.path.join(args.out, 'sharp', f'{name}.png'),
            os.path.join(args.out, 'field', f'{name}.npz'),
            os.path.join(args.out, 'blur', f'{name}.png')
        ]
        if all(os.path.isfile(p) for p in paths):
            records.append(None)
            continue
        item = make_item(index, sources, gen_params, cache)
        write_png(paths[0], item['sharp'])
        write_field(paths[1], item['field'])
        write_png(paths[2], item['blurry'])
        records.append(item['record'])
        if args.plots:
            write_png(os.path.join(args.out, 'plot', f'{name}.png'), plot_item(item, args.kernel_size))
    # items skipped on resume: their metadata is replayed cheaply (same rng draws up to the field type)
    for index, record in enumerate(records):
        if record is None:
            records[index] = replay_record(index, sources, gen_params)
    manifest = dict(params, items=records)
    write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest


def replay_record(index: int, sources: list, params: dict) -> dict:
    """Metadata of item ``index`` without synthesising it (the first draws of its generator)."""
    from basicsr_blurfield.data.synthetic_blur_dataset import parse_field_ratios

    rng = np.random.default_rng([params['seed'], index])
    source = sources[int(rng.integers(0, len(sources)))]
    height, width = cv2.imread(source, cv2.IMREAD_UNCHANGED).shape[:2]
    height, width = max(height, params['size']), max(width, params['size'])
    top = int(rng.integers(0, height - params['size'] + 1))
    left = int(rng.integers(0, width - params['size'] + 1))
    names, probs = parse_field_ratios(params['field_types'], params['representation'])
    field_type = str(rng.choice(names, p=probs))
    return {'name': f'{index:06d}', 'source': os.path.basename(source), 'crop': [top, left], 'field_type': field_type}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sharp', help='folder of sharp images (default: the scikit-image bundled photos)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--count', type=int, required=True, help='number of items')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256, help='crop size')
    parser.add_argument('--kernel-size', type=int, default=33, help='K, odd')
    parser.add_argument(
        '--field-types',
        type=parse_field_types,
        default={
            'region': 0.6,
            'smooth': 0.2,
            'linear': 0.2
        },
        help='ratios, e.g. region=0.6,smooth=0.2,linear=0.2')
    parser.add_argument('--representation', choices=REPRESENTATIONS, default='basis')
    parser.add_argument('--max-regions', type=int, default=3)
    parser.add_argument('--min-region-area', type=int, default=400)
    parser.add_argument('--basis-grid', type=int, default=3, help='anchors per side for smooth / linear basis fields')
    parser.add_argument('--num-steps', type=int, default=15, help='T for the offset representation')
    parser.add_argument('--gamma', type=float, default=1.0, help='blur in linear light x**gamma (1: off)')
    parser.add_argument('--noise', type=float, default=0.0, help='Gaussian noise std on [0, 1] images')
    parser.add_argument('--poisson-peak', type=float, default=None, help='Poisson noise: photons at white')
    parser.add_argument('--lmdb', action='store_true', help='also (re)build OUT/lmdb/blur.lmdb and OUT/lmdb/sharp.lmdb')
    parser.add_argument('--plots', action='store_true', help='also write OUT/plot/NAME.png: sharp | blurry | kernels')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.count < 1 or args.kernel_size % 2 == 0 or args.kernel_size > args.size:
        print(
            f'error: expected --count >= 1 and an odd --kernel-size <= --size, got {args.count}, '
            f'{args.kernel_size}, {args.size}',
            file=sys.stderr)
        return 2
    try:
        run(args)
        if args.lmdb:
            spec = importlib.util.spec_from_file_location(
                'create_lmdb', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'create_lmdb.py'))
            create_lmdb = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(create_lmdb)
            lmdb_dir = os.path.join(args.out, 'lmdb')
            if os.path.isdir(lmdb_dir):
                shutil.rmtree(lmdb_dir)
            create_lmdb.create('synthetic', args.out, lmdb_dir)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
