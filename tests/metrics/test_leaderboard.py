"""python -m basicsr_blurfield.leaderboard: Table 1 layout, our rows merged per method, published rows marked."""
import json

import pytest

from basicsr_blurfield.evaluate import PROTOCOLS, RESULT_FORMAT
from basicsr_blurfield.leaderboard import PUBLISHED_SOURCE, load_published, main


def _result(tmp_path, name, method, protocol, psnr, ssim, num_images=None, dataset=None):
    spec = PROTOCOLS[protocol]
    path = tmp_path / name
    path.write_text(json.dumps({'format': RESULT_FORMAT, 'method': method, 'protocol': protocol,
                                'num_images': num_images or spec.test_size, 'dataset': dataset or spec.dataset,
                                'mean': {'psnr': psnr, 'ssim': ssim}}))
    return str(path)


def _complexity(tmp_path, method, params, macs):
    path = tmp_path / f'{method}_complexity.json'
    path.write_text(json.dumps({'format': RESULT_FORMAT, 'method': method, 'protocol': 'complexity',
                                'params_m': params, 'macs_g': macs, 'input_shape': [1, 3, 256, 256],
                                'not_counted': {'aten::mul': 3, 'prim::PythonOp.Foo': 1}}))
    return str(path)


def test_published_rows_are_table_1_of_the_paper_and_marked_published():
    rows = {row['method']: row for row in load_published()}
    assert list(rows)[-2:] == ['NAFNet', 'UFPNet'] and len(rows) == 16
    assert rows['UFPNet']['gopro'] == {'psnr': 34.06, 'ssim': 0.968}
    assert rows['UFPNet']['realblur_j'] == {'psnr': 29.87, 'ssim': 0.884}
    assert rows['NAFNet']['params_m'] == 67.8 and rows['NAFNet']['macs_g'] == 65.0
    assert rows['DeepDeblur']['hide'] is None
    assert all(row['source'] == PUBLISHED_SOURCE for row in rows.values())


def test_our_results_form_one_row_per_method_in_table_1_column_order(tmp_path, capsys):
    files = [_result(tmp_path, 'a.json', 'Ours', 'gopro', 33.123, 0.96543),
             _result(tmp_path, 'b.json', 'Ours', 'realblur_j', 29.5, 0.88),
             _result(tmp_path, 'c.json', 'Other', 'hide', 30.0, 0.9),
             _complexity(tmp_path, 'Ours', 67.89, 63.21)]
    out = tmp_path / 'table.md'
    text = main(files + ['--markdown', str(out)])
    assert out.read_text() == text == capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == ('| Method | GoPro PSNR | GoPro SSIM | HIDE PSNR | HIDE SSIM | RealBlur-R PSNR '
                        '| RealBlur-R SSIM | RealBlur-J PSNR | RealBlur-J SSIM | Params (M) | MACs (G) | Source |')
    ours = next(line for line in lines if line.startswith('| Ours |'))
    assert ours == ('| Ours | 33.12 | 0.965 | N/A | N/A | N/A | N/A | 29.50 | 0.880 | 67.9 | 63.2 | '
                    'ours (basicsr_blurfield.evaluate): GoPro 1111 images, RealBlur-J 980 images |')
    assert any(line.startswith('| Other | N/A | N/A | 30.00 | 0.900 |') for line in lines)
    assert any(line.startswith('| UFPNet | 34.06 | 0.968 |') and PUBLISHED_SOURCE in line for line in lines)
    assert 'Custom ops not counted in MACs: prim::PythonOp.Foo.' in text


def test_no_published_leaves_only_our_rows(tmp_path):
    text = main([_result(tmp_path, 'a.json', 'Ours', 'gopro', 33.0, 0.96), '--no-published'])
    table_rows = [line for line in text.splitlines() if line.startswith('| ') and 'Method' not in line]
    assert table_rows == ['| Ours | 33.00 | 0.960 | N/A | N/A | N/A | N/A | N/A | N/A | N/A | N/A | '
                          'ours (basicsr_blurfield.evaluate): GoPro 1111 images |']
    assert PUBLISHED_SOURCE not in text


def test_duplicate_and_foreign_documents_are_refused(tmp_path, capsys):
    first = _result(tmp_path, 'a.json', 'Ours', 'gopro', 33.0, 0.96)
    second = _result(tmp_path, 'b.json', 'Ours', 'gopro', 32.0, 0.95)
    with pytest.raises(SystemExit):
        main([first, second])
    assert "method 'Ours' has two 'gopro' results" in capsys.readouterr().err
    foreign = tmp_path / 'f.json'
    foreign.write_text(json.dumps({'psnr': 30}))
    with pytest.raises(SystemExit):
        main([str(foreign)])
    assert 'expected a result document of basicsr_blurfield.evaluate' in capsys.readouterr().err


def test_a_result_on_other_images_is_refused_from_the_dataset_columns(tmp_path, capsys):
    synthetic = _result(tmp_path, 's.json', 'Quick', 'gopro', 40.0, 0.99, num_images=8, dataset='custom')
    with pytest.raises(SystemExit) as exit:
        main([synthetic])
    assert exit.value.code == 2
    assert ("'Quick' was scored with the gopro protocol on 8 images, not on the GoPro test set (1111 images)"
            in capsys.readouterr().err)
    legacy = tmp_path / 'legacy.json'  # written before evaluate recorded the test set: judged by its image count
    legacy.write_text(json.dumps({'format': RESULT_FORMAT, 'method': 'Old', 'protocol': 'hide', 'num_images': 10,
                                  'mean': {'psnr': 30.0, 'ssim': 0.9}}))
    with pytest.raises(SystemExit):
        main([str(legacy)])
    assert 'on 10 images, not on the HIDE test set (2025 images)' in capsys.readouterr().err


def test_the_motion_etr_published_rows_join_the_table_by_setting(tmp_path):
    ours = _result(tmp_path, 'a.json', 'Ours', 'gopro', 33.0, 0.96)
    default = main([ours])
    assert 'MA-DMPHN' not in default
    text = main([ours, '--published-setting', 'gopro_trained', 'motion_etr_gopro'])
    lines = text.splitlines()
    motion_etr = [line for line in lines if 'published (Motion-ETR paper, Tables 5-6)' in line]
    assert any(line.startswith('| DMPHN(1-2-4) | 30.21 | 0.934 |') for line in motion_etr), motion_etr
    assert any(line.startswith('| UFPNet | 34.06 | 0.968 |') for line in lines)
    with pytest.raises(SystemExit):
        main([ours, '--published-setting', 'no_such_table'])
