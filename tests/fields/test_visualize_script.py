"""scripts/visualize_field.py draws a stored field over a photo and writes a PNG."""
import cv2
import numpy as np
import torch

from basicsr_blurfield.fields import KernelField, OffsetField, save_field
from tests.conftest import load_script


def test_script_draws_kernels_and_trajectories(tmp_path):
    script = load_script('visualize_field')
    cv2.imwrite(str(tmp_path / 'photo.png'), np.full((48, 40, 3), 100, np.uint8))
    kernels = torch.zeros(1, 9, 24, 20)
    kernels[:, 4] = 1
    save_field(tmp_path / 'kernels.npz', KernelField(kernels))
    offsets = torch.zeros(1, 3, 2, 24, 20)
    offsets[:, 0, 0], offsets[:, 2, 0] = -3.0, 3.0
    save_field(tmp_path / 'offsets.npz', OffsetField(offsets))
    out_k, out_t = str(tmp_path / 'k.png'), str(tmp_path / 't' / 't.png')
    assert script.main([str(tmp_path / 'photo.png'), str(tmp_path / 'kernels.npz'), '-o', out_k, '--step', '10']) == 0
    assert script.main([str(tmp_path / 'photo.png'), str(tmp_path / 'offsets.npz'), '-o', out_t, '--step', '10']) == 0
    drawn_k, drawn_t = cv2.imread(out_k), cv2.imread(out_t)
    assert drawn_k.shape == (24, 20, 3) and drawn_t.shape == (24, 20, 3)
    assert drawn_k.max() > 200 and drawn_k.min() < 100  # yellow kernel taps on a darkened photo
    assert drawn_t.std() > 5 and (drawn_t[:, :, 0].astype(int) - drawn_t[:, :, 2]).max() > 100  # coloured curves
    assert script.main(
        [str(tmp_path / 'photo.png'),
         str(tmp_path / 'kernels.npz'), '-o', out_k, '--mode', 'trajectories']) == 2
