"""python -m basicsr_blurfield.evaluate: pairing, per-image rows against direct formulas, workers, JSON/CSV output."""
import csv
import json
import os

import cv2
import numpy as np
import pytest
import yaml

from basicsr_blurfield import evaluate
from basicsr_blurfield.atomic import write_text
from basicsr_blurfield.evaluate import main, pair_files

NAMES = ('astronaut', 'coffee', 'sub/chelsea')


def _write_pairs(photo, root, pred_name=lambda key: key, blur=1.0, size=48):
    """Saves ground truths and Gaussian-blurred results (BGR files, as BasicSR writes them) under root/gt, root/pred."""
    for key in NAMES:
        gt = photo(os.path.basename(key), size)[..., ::-1]
        for folder, image, name in (('gt', gt, key), ('pred', cv2.GaussianBlur(gt, (0, 0), blur), pred_name(key))):
            path = os.path.join(root, folder, name + '.png')
            os.makedirs(os.path.dirname(path), exist_ok=True)
            cv2.imwrite(path, image)
    return os.path.join(root, 'pred'), os.path.join(root, 'gt')


def test_gopro_rows_and_means_equal_direct_psnr_and_json_csv_are_complete(photo, tmp_path):
    pred_dir, gt_dir = _write_pairs(photo, str(tmp_path))
    out_json, out_csv = tmp_path / 'out' / 'r.json', tmp_path / 'out' / 'r.csv'
    main(['--protocol', 'gopro', '--pred', pred_dir, '--gt', gt_dir, '--json', str(out_json), '--csv', str(out_csv),
          '--quiet', '--name', 'Blur'])
    document = json.loads(out_json.read_text())
    assert document['protocol'] == 'gopro' and document['method'] == 'Blur'
    # a few images are not the GoPro test set (1111 images): the document says so
    assert document['dataset'] == 'custom' and document['test_set_size'] == 1111
    assert 'MATLAB' in document['definition']
    assert {'numpy', 'scipy', 'opencv', 'scikit-image', 'python'} <= set(document['versions'])
    rows = {row['name']: row for row in document['per_image']}
    assert sorted(rows) == sorted(NAMES)
    for key in NAMES:
        a = cv2.imread(os.path.join(pred_dir, key + '.png')).astype(np.float64)
        b = cv2.imread(os.path.join(gt_dir, key + '.png')).astype(np.float64)
        assert rows[key]['psnr'] == pytest.approx(10 * np.log10(255**2 / np.mean((a - b)**2)), abs=1e-10)
        assert rows[key]['ssim'] > rows[key]['ssim_per_channel']
    for metric in ('psnr', 'ssim', 'ssim_per_channel'):
        assert document['mean'][metric] == pytest.approx(np.mean([r[metric] for r in rows.values()]), abs=1e-12)
    with open(out_csv, newline='') as f:
        table = list(csv.DictReader(f))
    assert [r['name'] for r in table] == sorted(NAMES) + ['mean']
    assert float(table[-1]['psnr']) == pytest.approx(document['mean']['psnr'])
    assert sorted(os.listdir(tmp_path / 'out')) == ['r.csv', 'r.json']  # no temporary files left


def test_two_workers_give_the_same_realblur_rows_as_one(photo, tmp_path):
    pred_dir, gt_dir = _write_pairs(photo, str(tmp_path), blur=0.7, size=64)
    # Start OpenCV's thread pool in this process first: forked workers must still run (no deadlock).
    cv2.warpPerspective(np.zeros((720, 1280, 3), np.float32), np.eye(3), (1280, 720), flags=cv2.INTER_CUBIC)
    one = evaluate.evaluate_folders('realblur_j', pred_dir, gt_dir, workers=1, progress=False)
    two = evaluate.evaluate_folders('realblur_j', pred_dir, gt_dir, workers=2, progress=False)
    assert one['per_image'] == two['per_image']
    assert one['ecc_failures'] == [] and all(row['ecc_converged'] for row in one['per_image'])
    assert one['definition'].startswith('RealBlur official protocol')


def test_mismatched_sets_are_refused_listing_what_is_missing(photo, tmp_path, capsys):
    pred_dir, gt_dir = _write_pairs(photo, str(tmp_path))
    os.remove(os.path.join(pred_dir, 'coffee.png'))
    cv2.imwrite(os.path.join(pred_dir, 'stray.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        main(['--protocol', 'hide', '--pred', pred_dir, '--gt', gt_dir, '--quiet'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'missing results (1): coffee' in err and 'results without ground truth (1): stray' in err


def test_basicsr_visualization_folder_is_paired_by_removing_the_run_suffix(photo, tmp_path):
    run = tmp_path / 'results' / 'My_Run' / 'visualization' / 'GoPro'
    _write_pairs(photo, str(tmp_path), pred_name=lambda key: key + '_My_Run')
    os.makedirs(run.parent)
    os.rename(tmp_path / 'pred', run)
    pairs, suffix = pair_files(str(run), str(tmp_path / 'gt'))
    assert suffix == 'My_Run' and [key for key, _, _ in pairs] == sorted(NAMES)
    document = evaluate.evaluate_folders('gopro', str(run), str(tmp_path / 'gt'), progress=False)
    assert document['method'] == 'My_Run' and document['pred_suffix_removed'] == 'My_Run'


def test_ecc_failure_is_reported_in_the_per_image_rows(tmp_path):
    os.makedirs(tmp_path / 'gt')
    os.makedirs(tmp_path / 'pred')
    gt = np.zeros((48, 48, 3), np.uint8)
    gt[:, :24] = 255
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), gt)
    cv2.imwrite(str(tmp_path / 'pred' / 'a.png'), np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8))
    document = evaluate.evaluate_folders('realblur_r', str(tmp_path / 'pred'), str(tmp_path / 'gt'), progress=False)
    assert document['ecc_failures'] == ['a']
    row = document['per_image'][0]
    assert row['ecc_converged'] is False and row['ecc_message'] and row['warp'] == np.eye(3).tolist()


def test_sixteen_bit_and_different_size_images_are_refused(tmp_path):
    os.makedirs(tmp_path / 'gt')
    os.makedirs(tmp_path / 'pred')
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), np.zeros((16, 16, 3), np.uint16))
    cv2.imwrite(str(tmp_path / 'pred' / 'a.png'), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match='expected an 8-bit 3-channel image, got dtype uint16'):
        evaluate.evaluate_folders('gopro', str(tmp_path / 'pred'), str(tmp_path / 'gt'), progress=False)
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), np.zeros((16, 17, 3), np.uint8))
    with pytest.raises(ValueError, match='differs from its ground truth'):
        evaluate.evaluate_folders('gopro', str(tmp_path / 'pred'), str(tmp_path / 'gt'), progress=False)


def test_unknown_protocol_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="expected one of \\['gopro', 'hide', 'realblur_j', 'realblur_r'\\]"):
        evaluate.evaluate_folders('realblur', '.', '.')


def test_complexity_document_from_a_yaml_option(tmp_path):
    option = tmp_path / 'net.yml'
    option.write_text(yaml.safe_dump({'name': 'tiny', 'network_g': {'type': 'NAFNet', 'width': 4, 'enc_blk_nums': [1],
                                                                    'dec_blk_nums': [1]}}))
    out = tmp_path / 'c.json'
    document = main(['--complexity', str(option), '--size', '32', '--json', str(out)])
    saved = json.loads(out.read_text())
    assert saved['protocol'] == 'complexity' and saved['method'] == 'tiny' and saved['arch'] == 'NAFNet'
    assert saved['params'] == document['params'] > 0 and saved['input_shape'] == [1, 3, 32, 32]


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'x.json'
    write_text(str(target), 'old')
    write_text(str(target), 'new')
    assert target.read_text() == 'new' and os.listdir(tmp_path) == ['x.json']


def test_a_gopro_split_folder_contributes_only_its_sharp_images(tmp_path):
    image = np.full((8, 8, 3), 128, np.uint8)
    for scene in ('GOPR0001_11_00', 'GOPR0002_11_01'):
        for folder in ('blur', 'blur_gamma', 'sharp'):
            os.makedirs(tmp_path / 'gt' / scene / folder)
            cv2.imwrite(str(tmp_path / 'gt' / scene / folder / '000001.png'), image)
        os.makedirs(tmp_path / 'pred' / scene / 'sharp')
        cv2.imwrite(str(tmp_path / 'pred' / scene / 'sharp' / '000001.png'), image)
    pairs, _ = pair_files(str(tmp_path / 'pred'), str(tmp_path / 'gt'))
    assert [key for key, _, _ in pairs] == ['GOPR0001_11_00/sharp/000001', 'GOPR0002_11_01/sharp/000001']
