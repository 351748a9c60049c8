"""One results table in the layout of Table 1 of the UFPNet paper (Fang et al., CVPR 2023), from our result JSONs.

Usage::

    python -m basicsr_blurfield.leaderboard RESULTS.json [RESULTS.json ...] [--markdown OUT] [--no-published]
        [--published-setting gopro_trained|realblur_trained|motion_etr_gopro ...]

Each RESULTS.json is a document written by ``python -m basicsr_blurfield.evaluate`` (one method on one protocol,
or ``--complexity`` for the Params/MACs columns). Documents with the same ``method`` form one row. Columns: PSNR /
SSIM on GoPro, HIDE, RealBlur-R, RealBlur-J, Params (M) and MACs (G) at 256 x 256 (Table 2 of the paper).

The published rows (Tables 1 and 2, ``published_results.json``) are added by default, marked ``published`` in the
Source column: they are the authors' numbers, not ours. ``--published-setting`` picks which published tables join the
rows (one or more of the settings in ``published_results.json``: the UFPNet paper's GoPro-trained Tables 1-2, its
RealBlur-trained Table 3, Motion-ETR's Tables 5-6 with DMPHN and MA-DMPHN); default: ``gopro_trained``. Our rows say in the Source column which test sets (and how
many images) they were computed on. A document enters a dataset's column only when it was scored on that dataset's
official test set (``evaluate`` records ``dataset: custom`` otherwise, e.g. for 8 synthetic images under the GoPro
protocol); other documents are refused with a message.
"""
import argparse
import json
import math
import os
from typing import Optional

from basicsr_blurfield.atomic import write_text
from basicsr_blurfield.evaluate import PROTOCOLS, RESULT_FORMAT

PUBLISHED_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'published_results.json')
DATASET_ORDER = ('gopro', 'hide', 'realblur_r', 'realblur_j')  # Table 1's column order
PUBLISHED_SOURCE = 'published (UFPNet paper, Tables 1-2)'
OURS_SOURCE = 'ours (basicsr_blurfield.evaluate)'


def load_published(path: str = PUBLISHED_RESULTS, setting: str = 'gopro_trained') -> list:
    """The published rows of one setting, each ``{'method', 'source', <dataset>: {'psnr', 'ssim'} | None, 'params_m',
    'macs_g'}``.

    Args:
        path (str): the published-results JSON. Default: the one shipped with the package.
        setting (str): 'gopro_trained' (UFPNet Tables 1-2), 'realblur_trained' (UFPNet Table 3) or
            'motion_etr_gopro' (Motion-ETR Tables 5-6). Default: 'gopro_trained'.

    Returns:
        list[dict]: rows in the paper's order.
    """
    with open(path, encoding='utf-8') as f:
        document = json.load(f)
    if document.get('published') is not True:
        raise ValueError(f'{path}: expected a published-results file ("published": true)')
    settings = document['settings']
    if setting not in settings:
        raise ValueError(f'setting: expected one of {sorted(settings)}, got {setting!r}')
    rows = []
    for entry in settings[setting]['rows']:
        row = {'method': entry['method'], 'source': settings[setting].get('source_label', PUBLISHED_SOURCE)}
        row.update({dataset: entry.get(dataset) for dataset in DATASET_ORDER})
        row.update(params_m=entry.get('params_m'), macs_g=entry.get('macs_g'))
        rows.append(row)
    return rows


def load_results(paths: list) -> list:
    """Merges our result documents into one row per method.

    Args:
        paths (list[str]): JSON files written by ``basicsr_blurfield.evaluate`` (``--protocol`` or
            ``--complexity``).

    Returns:
        list[dict]: rows (same keys as :func:`load_published`, source ``ours``), in order of first appearance.

    Raises:
        ValueError: a file that is not an evaluate document, or two files giving the same method the same column.
    """
    rows, origin = {}, {}
    for path in paths:
        with open(path, encoding='utf-8') as f:
            document = json.load(f)
        found = document.get('format') if isinstance(document, dict) else type(document).__name__
        if found != RESULT_FORMAT:
            raise ValueError(f'{path}: expected a result document of basicsr_blurfield.evaluate (format '
                             f'{RESULT_FORMAT!r}), got {found!r}')
        method, protocol = document['method'], document['protocol']
        if protocol not in PROTOCOLS and protocol != 'complexity':
            raise ValueError(f'{path}: protocol: expected one of {sorted(PROTOCOLS) + ["complexity"]}, got '
                             f'{protocol!r}')
        if (method, protocol) in origin:
            raise ValueError(f'method {method!r} has two {protocol!r} results: {origin[(method, protocol)]} and '
                             f'{path}; pass one, or rename with evaluate --name')
        if protocol != 'complexity':
            _check_test_set(path, document)
        origin[(method, protocol)] = path
        row = rows.setdefault(method, dict({'method': method, 'source': OURS_SOURCE, 'params_m': None,
                                            'macs_g': None}, **{d: None for d in DATASET_ORDER}))
        if protocol == 'complexity':
            row.update(params_m=document['params_m'], macs_g=document['macs_g'], not_counted=document['not_counted'],
                       input_shape=document['input_shape'])
        else:
            row[protocol] = {'psnr': document['mean']['psnr'], 'ssim': document['mean']['ssim'],
                             'num_images': document['num_images']}
    for row in rows.values():
        computed = [f'{PROTOCOLS[d].dataset} {row[d]["num_images"]} images' for d in DATASET_ORDER if row[d]]
        row['source'] = f'{OURS_SOURCE}: {", ".join(computed)}' if computed else OURS_SOURCE
    return list(rows.values())


def _check_test_set(path: str, document: dict) -> None:
    """Refuses a document that was not scored on its protocol's official test set.

    Raises:
        ValueError: ``dataset`` is ``custom`` (or, for documents without it, the image count is not the test set's).
    """
    spec = PROTOCOLS[document['protocol']]
    count = document['num_images']
    dataset = document.get('dataset', spec.dataset if count == spec.test_size else 'custom')
    if dataset != spec.dataset or count != spec.test_size:
        raise ValueError(f'{path}: {document["method"]!r} was scored with the {spec.name} protocol on {count} images, '
                         f'not on the {spec.dataset} test set ({spec.test_size} images); a leaderboard column holds '
                         f'only results on its test set (the evaluate JSON itself keeps the scores)')


def _cell(value: Optional[float], digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'N/A'
    return f'{value:.{digits}f}'


def _size_cell(value: Optional[float]) -> str:
    """Millions / billions with one decimal as in the paper, three below 1 (small test models)."""
    return _cell(value, 1 if value is None or value >= 1 else 3)


def table_markdown(rows: list) -> str:
    """The rows as a Markdown table in Table 1's layout, followed by notes on what the numbers are.

    Args:
        rows (list[dict]): from :func:`load_published` and :func:`load_results`.

    Returns:
        str: Markdown text.
    """
    titles = [PROTOCOLS[d].dataset for d in DATASET_ORDER]
    header = ['Method'] + [f'{t} {m}' for t in titles for m in ('PSNR', 'SSIM')] + ['Params (M)', 'MACs (G)', 'Source']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(header) - 2) + ['---']) + '|']
    for row in rows:
        cells = [row['method']]
        for dataset in DATASET_ORDER:
            scores = row.get(dataset) or {}
            cells += [_cell(scores.get('psnr'), 2), _cell(scores.get('ssim'), 3)]
        cells += [_size_cell(row.get('params_m')), _size_cell(row.get('macs_g')), row['source']]
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = ['']
    if any(row['source'] == PUBLISHED_SOURCE for row in rows):
        notes.append(f'Rows marked "{PUBLISHED_SOURCE}" are numbers printed in Fang et al., CVPR 2023 (trained on '
                     'GoPro only), computed by their authors; they are not ours.')
    notes += [
        'Our GoPro/HIDE SSIM is the MATLAB-style volumetric SSIM (the published default); RealBlur numbers follow the '
        'official alignment protocol (gain, ECC homography, mask). See docs/evaluation.md.',
        'MACs at 1 x 3 x 256 x 256 counted by mmengine FlopAnalyzer (element-wise ops not counted).',
    ]
    for row in rows:
        if row.get('input_shape', [1, 3, 256, 256]) != [1, 3, 256, 256]:
            notes.append(f'{row["method"]}: MACs at input shape {row["input_shape"]}, not 256 x 256.')
    uncounted = sorted({op for row in rows for op in row.get('not_counted', {}) if op.startswith('prim::PythonOp')})
    if uncounted:
        notes.append(f'Custom ops not counted in MACs: {", ".join(uncounted)}.')
    return '\n'.join(lines + notes) + '\n'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m basicsr_blurfield.leaderboard',
        description='Results table in the layout of UFPNet Table 1 from basicsr_blurfield.evaluate JSON files.')
    parser.add_argument('results', nargs='+', metavar='RESULTS.json', help='evaluate --json outputs')
    parser.add_argument('--markdown', metavar='OUT', help='write the Markdown table here')
    parser.add_argument('--no-published', action='store_true', help='leave out the published reference rows')
    parser.add_argument('--published-file', default=PUBLISHED_RESULTS, help='published-results JSON')
    parser.add_argument('--published-setting', nargs='+', default=['gopro_trained'], metavar='SETTING',
                        help='published tables to add: gopro_trained (UFPNet Tables 1-2), realblur_trained (UFPNet '
                        'Table 3), motion_etr_gopro (Motion-ETR Tables 5-6: DMPHN, MA-DMPHN); default: gopro_trained')
    return parser


def main(argv: Optional[list] = None) -> str:
    """Command-line entry point (see the module docstring); returns the Markdown text."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rows = [] if args.no_published else [
            row for setting in args.published_setting for row in load_published(args.published_file, setting)]
        rows += load_results(args.results)
    except (ValueError, KeyError, OSError) as error:
        parser.exit(2, f'error: {error}\n')
    text = table_markdown(rows)
    if args.markdown:
        write_text(args.markdown, text)
    print(text, end='')
    return text


if __name__ == '__main__':
    main()
