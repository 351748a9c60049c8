"""Leaderboard-exact evaluation of saved results: GoPro, HIDE, RealBlur-J, RealBlur-R; and model complexity.

Usage::

    python -m basicsr_blurfield.evaluate --protocol {gopro,hide,realblur_j,realblur_r} --pred DIR --gt DIR \\
        [--json OUT] [--csv OUT] [--workers N] [--name METHOD] [--suffix SUFFIX]
    python -m basicsr_blurfield.evaluate --complexity OPTION.yml [--network network_g] [--size 256] [--json OUT]

Files are paired by their path relative to ``--pred`` and ``--gt`` without the extension. A BasicSR test run saves
``results/<name>/visualization/<dataset>/<image>_<suffix>.png``; the common ``_<suffix>`` is found and removed
automatically (or given with ``--suffix``), so such a folder can be passed directly. Sets that do not match are
refused with the list of what is missing. The protocols are defined in ``PROTOCOLS`` and ``docs/evaluation.md``.

The JSON holds the protocol, its definition, the library versions, the per-image rows and the means; the CSV holds
the per-image rows and a final ``mean`` row. Both are written atomically (temporary file + ``os.replace``).
"""
import argparse
import csv
import datetime
import io
import json
import multiprocessing
import os
import platform
import sys
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from tqdm import tqdm

from basicsr_blurfield.atomic import write_text
from basicsr_blurfield.data.paired_blur_dataset import IMAGE_EXTENSIONS
from basicsr_blurfield.metrics.leaderboard_metrics import psnr_uint8
from basicsr_blurfield.metrics.realblur import ECC_GAUSS_FILT_SIZE, ECC_ITERATIONS, realblur_scores
from basicsr_blurfield.metrics.ssim import ssim_per_channel, ssim_volumetric

RESULT_FORMAT = 'basicsr_blurfield.evaluate/1'

_UINT8_DEFINITION = ('PSNR = 10 log10(255^2 / MSE) over all pixels and the 3 channels of the saved uint8 RGB images, '
                     'no crop, no Y channel. SSIM = MATLAB ssim on the H x W x 3 volume: 11 x 11 x 11 Gaussian '
                     'window (sigma 1.5), replicate padding, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, mean of the '
                     'full map (the published default). ssim_per_channel = 2-D SSIM per channel, 11 x 11 Gaussian '
                     '(sigma 1.5) over valid windows, averaged over channels (BasicSR calculate_ssim; lower).')
_REALBLUR_DEFINITION = (f'RealBlur official protocol on float RGB in [0, 1]: gain g = sum(gt * pred) / sum(pred^2); '
                        f'ECC homography on grey images (gt = template, {ECC_ITERATIONS} iterations, epsilon 0, '
                        f'gaussFiltSize {ECC_GAUSS_FILT_SIZE}, identity start; identity warp when ECC fails); warp '
                        'g * pred with bicubic + WARP_INVERSE_MAP + reflect border; mask = all-ones warped with '
                        'nearest + zero border; both images masked. PSNR = 10 log10(sum(mask) / sum(squared error)). '
                        'SSIM = per-channel 2-D SSIM map (11 x 11 Gaussian, sigma 1.5, reflect padding, population '
                        'covariance, data range 1) times mask, 5 px border cropped, divided by the cropped mask sum '
                        'per channel, averaged over channels.')


@dataclass(frozen=True)
class Protocol:
    """One leaderboard protocol.

    Attributes:
        name (str): CLI name.
        dataset (str): the dataset column of the leaderboard.
        kind (str): 'uint8' (GoPro/HIDE) or 'realblur'.
        metrics (tuple): per-image columns; the first two are the leaderboard's PSNR and SSIM.
        definition (str): what exactly is computed.
        test_size (int): images of the official test set; a document scored on another number of images is not that
            dataset's result (``dataset`` says ``custom``), and the leaderboard refuses it.
    """
    name: str
    dataset: str
    kind: str
    metrics: tuple
    definition: str
    test_size: int


_UINT8_METRICS = ('psnr', 'ssim', 'ssim_per_channel')
_REALBLUR_METRICS = ('psnr', 'ssim', 'gain', 'ecc', 'ecc_converged', 'mask_fraction', 'ecc_message')
PROTOCOLS = {
    'gopro': Protocol('gopro', 'GoPro', 'uint8', _UINT8_METRICS, _UINT8_DEFINITION, 1111),
    'hide': Protocol('hide', 'HIDE', 'uint8', _UINT8_METRICS, _UINT8_DEFINITION, 2025),
    'realblur_j': Protocol('realblur_j', 'RealBlur-J', 'realblur', _REALBLUR_METRICS, _REALBLUR_DEFINITION, 980),
    'realblur_r': Protocol('realblur_r', 'RealBlur-R', 'realblur', _REALBLUR_METRICS, _REALBLUR_DEFINITION, 980),
}


class PairingError(ValueError):
    """The prediction and ground-truth folders do not hold the same set of images."""


def _list_images(folder: str) -> dict:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'expected a folder of images, got {folder!r} (not a directory)')
    found = {}
    for root, _, files in os.walk(folder):
        for file_name in files:
            stem, ext = os.path.splitext(file_name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            key = os.path.relpath(os.path.join(root, stem), folder).replace(os.sep, '/')
            if key in found:
                raise PairingError(f'{folder}: two images share the name {key!r} with different extensions')
            found[key] = os.path.join(root, file_name)
    return found


def _ground_truths(gt_dir: str) -> dict:
    """Ground-truth images of ``gt_dir``; in the GoPro benchmark layout (``<scene>/blur[_gamma]/`` beside
    ``<scene>/sharp/``) only the sharp ones, so the split folder itself can be passed as ``--gt``."""
    images = _list_images(gt_dir)
    folders = {key.split('/')[-2] if '/' in key else '' for key in images}
    if 'sharp' in folders and folders <= {'sharp', 'blur', 'blur_gamma'}:
        images = {key: path for key, path in images.items() if key.split('/')[-2] == 'sharp'}
    return images


def _strip(key: str, suffix: str) -> Optional[str]:
    tail = f'_{suffix}'
    return key[:-len(tail)] if key.endswith(tail) and len(key) > len(tail) else None


def _detect_suffix(pred_keys: list, gt_keys: set) -> Optional[str]:
    """The ``<suffix>`` BasicSR appended to every saved name (``<image>_<suffix>``): the common ending whose removal
    pairs the most results with a ground truth (more than exact names do), else None."""
    if not pred_keys:
        return None
    best, best_overlap = None, len(gt_keys.intersection(pred_keys))
    parts = os.path.basename(pred_keys[0]).split('_')
    for start in range(1, len(parts)):
        suffix = '_'.join(parts[start:])
        stripped = [_strip(key, suffix) for key in pred_keys]
        if None in stripped:
            continue
        overlap = len(gt_keys.intersection(stripped))
        if overlap > best_overlap:
            best, best_overlap = suffix, overlap
    return best


def _listing(title: str, keys: list, limit: int = 20) -> str:
    shown = ', '.join(keys[:limit]) + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')
    return f'{title} ({len(keys)}): {shown}'


def pair_files(pred_dir: str, gt_dir: str, suffix: Optional[str] = None) -> tuple:
    """Pairs result and ground-truth images by relative path without extension.

    Args:
        pred_dir (str): folder of results (searched recursively).
        gt_dir (str): folder of ground truths (searched recursively); a GoPro split folder (``<scene>/blur/``,
            ``<scene>/sharp/``) contributes its sharp images only, matching ``DeblurModel``'s saved results.
        suffix (str | None): remove ``_<suffix>`` from every result name (BasicSR's ``val.suffix`` or the run
            name). None: use exact names, else detect a common suffix that makes the sets equal. Default: None.

    Returns:
        tuple[list, str | None]: sorted ``(key, pred_path, gt_path)`` triples, and the suffix that was removed.

    Raises:
        PairingError: when the sets differ; the message lists the ground truths without a result and the results
            without a ground truth.
    """
    preds, gts = _list_images(pred_dir), _ground_truths(gt_dir)
    if not gts:
        raise PairingError(f'{gt_dir}: no images found (extensions {", ".join(IMAGE_EXTENSIONS)})')
    if suffix is None and set(preds) != set(gts):
        suffix = _detect_suffix(sorted(preds), set(gts))
    if suffix:
        renamed = {}
        for key, path in preds.items():
            stripped = _strip(key, suffix)
            renamed[stripped if stripped is not None else key] = path
        preds = renamed
    missing, extra = sorted(set(gts) - set(preds)), sorted(set(preds) - set(gts))
    if missing or extra:
        lines = [f'--pred {pred_dir} and --gt {gt_dir} hold different image sets (paired by relative path without '
                 'extension' + (f', result suffix _{suffix} removed' if suffix else '') + ')']
        if missing:
            lines.append(_listing('missing results', missing))
        if extra:
            lines.append(_listing('results without ground truth', extra))
        raise PairingError('\n'.join(lines))
    return [(key, preds[key], gts[key]) for key in sorted(gts)], suffix


def read_rgb_uint8(path: str) -> np.ndarray:
    """Reads an 8-bit colour image as (H, W, 3) uint8 RGB.

    Raises:
        ValueError: when the file cannot be read or is not 8-bit with 3 channels.
    """
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f'{path}: cannot read the image')
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'{path}: expected an 8-bit 3-channel image, got dtype {image.dtype} and shape {image.shape}')
    return image[..., ::-1]


def score_pair(protocol: str, pred_path: str, gt_path: str) -> dict:
    """Scores one result against its ground truth under a protocol.

    Args:
        protocol (str): a key of ``PROTOCOLS``.
        pred_path (str): result image file (8-bit, 3 channels).
        gt_path (str): ground-truth image file, same size.

    Returns:
        dict: the protocol's per-image metrics (``Protocol.metrics``).
    """
    spec = PROTOCOLS[protocol]
    pred, gt = read_rgb_uint8(pred_path), read_rgb_uint8(gt_path)
    if pred.shape != gt.shape:
        raise ValueError(f'{pred_path}: size {pred.shape[:2]} differs from its ground truth {gt_path} '
                         f'{gt.shape[:2]}')
    if spec.kind == 'uint8':
        return {
            'psnr': psnr_uint8(pred, gt),
            'ssim': ssim_volumetric(pred, gt, data_range=255.0),
            'ssim_per_channel': ssim_per_channel(pred, gt, data_range=255.0)
        }
    return realblur_scores(pred, gt)


def _score_job(job: tuple) -> dict:
    protocol, key, pred_path, gt_path = job
    return dict(name=key, **score_pair(protocol, pred_path, gt_path))


def _package_version(name: str) -> Optional[str]:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict:
    """Versions of everything that can change a number: Python, NumPy, SciPy, OpenCV, scikit-image and ours."""
    import scipy

    import basicsr_blurfield
    return {
        'python': platform.python_version(),
        'numpy': np.__version__,
        'scipy': scipy.__version__,
        'opencv': cv2.__version__,
        'scikit-image': _package_version('scikit-image'),
        'basicsr': _package_version('basicsr'),
        'torch': _package_version('torch'),
        'mmengine': _package_version('mmengine'),
        'basicsr_blurfield': basicsr_blurfield.__version__,
    }


def _default_method_name(pred_dir: str) -> str:
    """BasicSR runs save to ``results/<name>/visualization/<dataset>``: use ``<name>``, else the folder's name."""
    parts = os.path.normpath(os.path.abspath(pred_dir)).split(os.sep)
    if len(parts) >= 3 and parts[-2] == 'visualization':
        return parts[-3]
    return parts[-1]


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float('nan')


def evaluate_folders(protocol: str,
                     pred_dir: str,
                     gt_dir: str,
                     workers: int = 1,
                     name: Optional[str] = None,
                     suffix: Optional[str] = None,
                     progress: bool = True) -> dict:
    """Evaluates a folder of results against a folder of ground truths under one protocol.

    Args:
        protocol (str): one of ``PROTOCOLS`` ('gopro', 'hide', 'realblur_j', 'realblur_r').
        pred_dir (str): results folder (a BasicSR ``visualization/<dataset>`` folder works).
        gt_dir (str): ground-truth folder.
        workers (int): processes scoring images in parallel (1: in this process). Default: 1.
        name (str | None): method name for the leaderboard; None: the BasicSR run name or the folder name.
        suffix (str | None): see :func:`pair_files`. Default: None (detect).
        progress (bool): show a tqdm progress bar. Default: True.

    Returns:
        dict: the result document (format ``RESULT_FORMAT``): protocol, dataset (the protocol's dataset when the
        image count is that of its official test set, else ``'custom'``), definition, versions, means and per-image
        rows.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol: expected one of {sorted(PROTOCOLS)}, got {protocol!r}')
    if int(workers) < 1:
        raise ValueError(f'workers: expected a positive integer, got {workers}')
    spec = PROTOCOLS[protocol]
    pairs, used_suffix = pair_files(pred_dir, gt_dir, suffix)
    jobs = [(protocol, key, pred, gt) for key, pred, gt in pairs]
    bar = tqdm(total=len(jobs), desc=f'{spec.dataset}', unit='img', disable=not progress)
    rows = []
    if workers == 1:
        for job in jobs:
            rows.append(_score_job(job))
            bar.update()
    else:
        # fork skips re-importing the package in every worker. OpenCV's thread pool survives it as long as the
        # workers do not reconfigure it: cv2.setNumThreads in a forked child deadlocks once the parent has used it.
        method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn'
        with multiprocessing.get_context(method).Pool(int(workers)) as pool:
            for row in pool.imap(_score_job, jobs, chunksize=1):
                rows.append(row)
                bar.update()
    bar.close()
    numeric = [m for m in spec.metrics if m not in ('ecc_converged', 'ecc_message')]
    mean = {metric: _mean([row[metric] for row in rows]) for metric in numeric}
    document = {
        'format': RESULT_FORMAT,
        'method': name or _default_method_name(pred_dir),
        'protocol': protocol,
        'dataset': spec.dataset if len(rows) == spec.test_size else 'custom',
        'test_set_size': spec.test_size,
        'definition': spec.definition,
        'num_images': len(rows),
        'mean': mean,
        'pred_dir': os.path.abspath(pred_dir),
        'gt_dir': os.path.abspath(gt_dir),
        'pred_suffix_removed': used_suffix,
        'versions': library_versions(),
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    }
    if spec.kind == 'realblur':
        document['ecc_failures'] = [row['name'] for row in rows if not row['ecc_converged']]
    document['per_image'] = rows
    return document


def results_csv(document: dict) -> str:
    """The per-image rows and a final ``mean`` row as CSV text (the warp matrices stay in the JSON)."""
    columns = ['name'] + list(PROTOCOLS[document['protocol']].metrics)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for row in document['per_image']:
        writer.writerow(row)
    writer.writerow(dict(name='mean', **document['mean']))
    return buffer.getvalue()


def _summary(document: dict) -> str:
    if document.get('protocol') == 'complexity':
        return (f'{document["method"]} ({document["arch"]}): {document["params_m"]:.2f} M params, '
                f'{document["macs_g"]:.2f} GMACs at {document["input_shape"]}; not counted: '
                f'{", ".join(document["not_counted"]) or "nothing"}')
    mean = document['mean']
    where = document['dataset']
    if where == 'custom':
        spec = PROTOCOLS[document['protocol']]
        where = f'custom images with the {spec.name} protocol (not the {spec.dataset} test set of {spec.test_size})'

    text = (f'{document["method"]} on {where} ({document["num_images"]} images): '
            f'PSNR {mean["psnr"]:.4f} dB, SSIM {mean["ssim"]:.5f}')
    if 'ssim_per_channel' in mean:
        text += f' (per-channel SSIM {mean["ssim_per_channel"]:.5f})'
    if document.get('ecc_failures'):
        text += f'; ECC failed on {len(document["ecc_failures"])} image(s), identity warp used'
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m basicsr_blurfield.evaluate',
        description='Leaderboard-exact PSNR/SSIM (GoPro, HIDE, RealBlur-J/R) of saved results, or Params/MACs.')
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument('--protocol', choices=sorted(PROTOCOLS), help='evaluation protocol')
    task.add_argument('--complexity', metavar='OPTION_YML', help='Params and MACs of network_g of a BasicSR option')
    parser.add_argument('--pred', help='folder of results (e.g. results/<name>/visualization/<dataset>)')
    parser.add_argument('--gt', help='folder of ground truths')
    parser.add_argument('--json', help='write the result document (JSON) here')
    parser.add_argument('--csv', help='write the per-image rows (CSV) here')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes (default 1)')
    parser.add_argument('--name', help='method name in the leaderboard (default: BasicSR run name or folder name)')
    parser.add_argument('--suffix', help='remove _SUFFIX from result names (default: detected)')
    parser.add_argument('--network', default='network_g', help='with --complexity: which network (network_g)')
    parser.add_argument('--size', type=int, default=256, help='with --complexity: input H = W (default 256)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Optional[list] = None) -> dict:
    """Command-line entry point (see the module docstring); returns the result document."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.complexity:
        if args.csv:
            parser.error('--csv applies to --protocol evaluations, not to --complexity')
        from basicsr_blurfield.metrics.complexity import complexity_from_options
        document = dict(format=RESULT_FORMAT, protocol='complexity', method=args.name)
        result = complexity_from_options(args.complexity, network_key=args.network, input_size=args.size)
        document.update(result, method=args.name or result['name'], option=os.path.abspath(args.complexity),
                        versions=library_versions())
    else:
        if not args.pred or not args.gt:
            parser.error('--protocol needs --pred DIR and --gt DIR')
        try:
            document = evaluate_folders(args.protocol, args.pred, args.gt, args.workers, args.name, args.suffix,
                                        progress=not args.quiet)
        except (PairingError, FileNotFoundError) as error:
            parser.exit(2, f'error: {error}\n')
        if args.csv:
            write_text(args.csv, results_csv(document))
    if args.json:
        write_text(args.json, json.dumps(document, indent=2) + '\n')
    print(_summary(document), file=sys.stdout)
    return document


if __name__ == '__main__':
    main()
