"""End to end on CPU: the motion-aware DMPHN trains a few iterations from options/ma_dmphn_gopro.yml (sizes
overridden) through ``python -m basicsr_blurfield.train`` with its offset net loaded and fine-tuned, and is evaluated
from options/test_ma_dmphn_gopro.yml through ``python -m basicsr_blurfield.test``; DMPHN's option files build the
published network and its test option loads the authors' checkpoint folder."""
import glob
import os
import sys

import cv2
import torch
import yaml

from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from tests.conftest import make_paired_folders
from tests.platform.test_train_cli import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_NET = {'num_feat': 4, 'offset_feat': 4, 'num_steps': 9}


def option(name: str) -> dict:
    with open(os.path.join(ROOT, 'options', name)) as handle:
        return yaml.safe_load(handle)


def write(folder, opt: dict) -> str:
    path = os.path.join(folder, f'{opt["name"]}.yml')
    with open(path, 'w') as handle:
        yaml.safe_dump(opt, handle)
    return path


def test_ma_dmphn_trains_from_its_option_and_is_evaluated_by_the_test_entry_point(tmp_path):
    gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'data'), count=3, size=(36, 44))
    torch.manual_seed(0)
    offset_net = MotionOffsetNet(num_feat=4, num_steps=9)
    torch.save({'params': offset_net.state_dict()}, tmp_path / 'offsets.pth')

    train = option('ma_dmphn_gopro.yml')
    assert train['network_g']['ma_layout'] == 'paper' and train['network_g']['freeze_offset_net'] is False
    train.update(name='tiny_ma_dmphn', num_gpu=0, manual_seed=0)
    train['network_g'].update(TINY_NET, offset_net_path=str(tmp_path / 'offsets.pth'))
    folders = {'layout': 'folders', 'dataroot_gt': gt_dir, 'dataroot_lq': lq_dir, 'io_backend': {'type': 'disk'}}
    train['datasets']['train'].update(folders, gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0)
    train['datasets']['val'].update(folders)
    train['train'].update(total_iter=3)
    train['train']['scheduler']['total_iters'] = 3
    train['val']['val_freq'] = 3
    train['logger'].update(print_freq=1, save_checkpoint_freq=3, use_tb_logger=False)
    run([sys.executable, '-m', 'basicsr_blurfield.train', '-opt', write(tmp_path, train)], cwd=tmp_path)
    checkpoint = tmp_path / 'experiments' / 'tiny_ma_dmphn' / 'models' / 'net_g_latest.pth'
    trained = torch.load(checkpoint, map_location='cpu')['params']
    start = offset_net.state_dict()
    assert any(not torch.equal(trained[f'offset_net.{key}'], value) for key, value in start.items())  # fine-tuned

    test = option('test_ma_dmphn_gopro.yml')
    test.update(name='tiny_ma_dmphn_test', num_gpu=0)
    test['network_g'].update(TINY_NET, ma_layout='paper', alpha=0.1)
    test['datasets']['test'] = dict(folders, name='tiny-test', type='PairedBlurDataset')
    test['path'].update(pretrain_network_g=str(checkpoint), param_key_g='params')
    run([sys.executable, '-m', 'basicsr_blurfield.test', '-opt', write(tmp_path, test)], cwd=tmp_path)
    saved = sorted(glob.glob(str(tmp_path / 'results' / 'tiny_ma_dmphn_test' / 'visualization' / 'tiny-test' /
                                 '*.png')))
    assert len(saved) == 3 and cv2.imread(saved[0]).shape == (36, 44, 3)
    logs = glob.glob(str(tmp_path / 'results' / 'tiny_ma_dmphn_test' / '*.log'))
    assert any('# psnr:' in open(log).read() for log in logs)


def test_dmphn_test_option_loads_the_authors_checkpoint_folder(tmp_path):
    net = build_network(option('dmphn_gopro.yml')['network_g'])
    assert sum(p.numel() for p in net.parameters()) == 5424393
    tiny = build_network({'type': 'DMPHN', 'num_feat': 4})
    for module in ('encoder_lv1', 'encoder_lv2', 'encoder_lv3', 'decoder_lv1', 'decoder_lv2', 'decoder_lv3'):
        torch.save(getattr(tiny, module).state_dict(), tmp_path / f'{module}.pkl')  # the authors' six bare files
    test = option('test_dmphn_gopro.yml')
    test['network_g'].update(num_feat=4)
    test.update(num_gpu=0, is_train=False, dist=False)
    test['path'].update(pretrain_network_g=str(tmp_path))
    model = build_model(test)
    assert all(torch.equal(value, model.net_g.state_dict()[key]) for key, value in tiny.state_dict().items())
    os.remove(tmp_path / 'decoder_lv3.pkl')
    try:
        build_model(test)
    except FileNotFoundError as error:
        assert "missing DMPHN files ['decoder_lv3.pkl']" in str(error)
    else:
        raise AssertionError('a folder without decoder_lv3.pkl must be refused')


def test_published_rows_of_motion_etr_tables_5_and_6_are_marked_as_published():
    from basicsr_blurfield.leaderboard import load_published

    rows = {row['method']: row for row in load_published(setting='motion_etr_gopro')}
    assert rows['DMPHN(1-2-4)']['gopro'] == {'psnr': 30.21, 'ssim': 0.9345}
    assert rows['MA-DMPHN (quadratic)']['gopro'] == {'psnr': 31.05, 'ssim': 0.9485}
    assert rows['Stack(4)-DMPHN']['gopro'] == {'psnr': 31.20, 'ssim': 0.9453}
    assert all(row['source'] == 'published (Motion-ETR paper, Tables 5-6)' for row in rows.values())
