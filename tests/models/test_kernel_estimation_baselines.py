"""KernelEstimationModel's validation reference rows: the one-kernel baselines, the no-blur field among them."""
import pytest
import torch

from basicsr_blurfield.losses.kernel_loss import constant_field
from basicsr_blurfield.models.kernel_estimation_model import KernelEstimationModel


def test_the_no_blur_baseline_is_the_l1_distance_to_the_centred_delta_kernel():
    box = torch.full((3, 3), 1 / 9)
    delta = torch.zeros(3, 3)
    delta[1, 1] = 1
    errors = KernelEstimationModel.baseline_kernel_errors([constant_field(box, 5, 6), constant_field(delta, 5, 6)])
    # box vs delta: |1 - 1/9| + 8 * 1/9 = 16/9, delta vs itself 0; the dataset mean (box + delta) / 2 is 8/9 from both
    assert errors['no_blur_kernel'] == pytest.approx(8 / 9, abs=1e-6)
    assert errors['image_mean_kernel_oracle'] == pytest.approx(0, abs=1e-7)
    assert errors['dataset_mean_kernel'] == pytest.approx(8 / 9, abs=1e-6)
