"""Atomic writers: a failure part-way keeps the old file (or none) and leaves no temporary behind; files get the
mode a plain ``open`` would give."""
import os
import stat

import numpy as np
import pytest
import torch

from basicsr_blurfield.atomic import atomic_path, imwrite, torch_save, write_text


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'result.txt'
    write_text(str(target), 'old')
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(target)) as temporary:
            with open(temporary, 'w') as f:
                f.write('half')
            raise KeyboardInterrupt
    assert target.read_text() == 'old' and sorted(p.name for p in tmp_path.iterdir()) == ['result.txt']


def test_temporary_keeps_the_extension_so_format_picking_writers_work(tmp_path):
    with atomic_path(str(tmp_path / 'image.png')) as temporary:
        assert temporary.endswith('.png') and temporary != str(tmp_path / 'image.png')
        imwrite_ok = __import__('cv2').imwrite(temporary, np.zeros((2, 2), np.uint8))
    assert imwrite_ok and (tmp_path / 'image.png').is_file()


def test_imwrite_and_torch_save_round_trip_and_fail_cleanly(tmp_path):
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    imwrite(str(tmp_path / 'sub' / 'a.png'), image)
    assert np.array_equal(__import__('cv2').imread(str(tmp_path / 'sub' / 'a.png')), image)
    with pytest.raises(OSError, match="cannot write image"):
        imwrite(str(tmp_path / 'b.unknown'), image)
    torch_save({'params': {'w': torch.ones(2)}}, str(tmp_path / 'net.pth'))
    assert torch.equal(torch.load(tmp_path / 'net.pth')['params']['w'], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['net.pth', 'sub']


@pytest.mark.parametrize('umask', [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_a_plain_open_gives_under_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_text(str(tmp_path / 'a.txt'), 'x')
        imwrite(str(tmp_path / 'a.png'), np.zeros((2, 2), np.uint8))
        torch_save({'w': torch.ones(1)}, str(tmp_path / 'a.pth'))
        with open(tmp_path / 'plain.txt', 'w') as f:
            f.write('x')
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / 'plain.txt').st_mode) == expected
    for name in ('a.txt', 'a.png', 'a.pth'):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name


def test_overwriting_keeps_the_existing_files_mode(tmp_path):
    target = tmp_path / 'shared.txt'
    write_text(str(target), 'old')
    os.chmod(target, 0o640)
    write_text(str(target), 'new')
    assert target.read_text() == 'new' and stat.S_IMODE(os.stat(target).st_mode) == 0o640
