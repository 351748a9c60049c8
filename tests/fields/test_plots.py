"""Plots: kernel grids and trajectories come out as uint8 RGB images with the kernels / curves where expected."""
import numpy as np
import pytest
import torch

from basicsr_blurfield.fields import KernelField, OffsetField, draw_kernel_grid, draw_trajectories


def test_draw_kernel_grid_draws_each_kernel_enlarged_at_its_grid_pixel():
    kernels = torch.zeros(1, 9, 32, 32)
    kernels[:, 5] = 1  # every kernel: a single tap right of the centre
    image = torch.zeros(1, 3, 32, 32)
    out = draw_kernel_grid(image, KernelField(kernels), step=16, color=(255, 0, 0))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # the cell around (8, 8) is 14 px wide: the kernel's right-middle third is red, the rest stays black
    assert out[8, 12, 0] == 255 and out[8, 12, 1] == 0
    assert out[8, 8].max() == 0 and out[3, 12].max() == 0


def test_draw_trajectories_draws_coloured_curves_from_blue_to_red():
    offsets = torch.zeros(1, 5, 2, 40, 40)
    offsets[:, :, 0] = torch.linspace(-8, 8, 5).view(1, 5, 1, 1)  # horizontal trajectories
    photo = np.full((40, 40, 3), 128, np.uint8)
    out = draw_trajectories(photo, OffsetField(offsets), step=20)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    row = out[10].astype(int)
    assert row[3, 2] > row[3, 0]  # left end (start) is blue
    assert row[17, 0] > row[17, 2]  # right end is red
    assert (out[0] == 128).all()  # rows away from the curves are untouched


def test_plot_errors():
    field = KernelField(torch.full((1, 9, 8, 8), 1 / 9))
    with pytest.raises(ValueError, match='image: expected 8x8 like the field, got 9x8'):
        draw_kernel_grid(np.zeros((9, 8, 3), np.uint8), field)
    with pytest.raises(ValueError, match='step: expected an int >= 2'):
        draw_kernel_grid(np.zeros((8, 8), np.uint8), field, step=1)
    with pytest.raises(TypeError, match='offset_field: expected an OffsetField, got KernelField'):
        draw_trajectories(np.zeros((8, 8, 3), np.uint8), field)
