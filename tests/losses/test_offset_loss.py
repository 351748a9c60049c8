"""OffsetTVLoss and OffsetMagnitudeLoss (eq. 9-10 of Zhang et al.) against explicit sums, built from YAML."""
import pytest
import torch
import yaml

from basicsr.losses import build_loss
from basicsr_blurfield.fields import OffsetField


def _field(seed: int = 0) -> OffsetField:
    generator = torch.Generator().manual_seed(seed)
    return OffsetField(3 * torch.randn(2, 5, 2, 6, 7, generator=generator, dtype=torch.float64))


def test_tv_loss_is_eq_10_written_as_loops():
    field = _field()
    loss = build_loss(yaml.safe_load('{type: OffsetTVLoss, loss_weight: 0.002}'))(field)
    offsets = field.offsets
    total, maps = 0.0, 0
    for n in range(2):
        for t in range(5):
            for axis in range(2):
                m = offsets[n, t, axis]
                horizontal = sum(abs(m[j, i] - m[j, i + 1]) for j in range(6) for i in range(6)) / (6 * 6)
                vertical = sum(abs(m[j, i] - m[j + 1, i]) for j in range(5) for i in range(7)) / (7 * 5)
                total, maps = total + horizontal + vertical, maps + 1
    assert loss.item() == pytest.approx(0.002 * float(total) / maps, rel=1e-10)


def test_tv_loss_is_zero_for_spatially_constant_offsets_and_penalises_edges():
    constant = OffsetField(torch.ones(1, 3, 2, 5, 5) * torch.tensor([1.5, -2.0]).view(1, 1, 2, 1, 1))
    tv = build_loss({'type': 'OffsetTVLoss'})
    assert tv(constant).item() == 0
    step = torch.zeros(1, 3, 2, 5, 5)
    step[..., 3:] = 1.0  # a unit jump between columns 2 and 3 of every map: 5 of the 20 horizontal pairs
    assert tv(OffsetField(step)).item() == pytest.approx(5 / 20)


def test_magnitude_loss_is_eq_9_the_mean_squared_offset():
    field = _field(1)
    loss = build_loss(yaml.safe_load('{type: OffsetMagnitudeLoss, loss_weight: !!float 2e-5}'))(field)
    expected = sum(float(v)**2 for v in field.offsets.flatten()) / field.offsets.numel()
    assert loss.item() == pytest.approx(2e-5 * expected, rel=1e-10)


def test_regularisers_have_gradients_and_reject_other_fields():
    offsets = torch.randn(1, 3, 2, 4, 4, requires_grad=True)
    field = OffsetField(offsets)
    (build_loss({'type': 'OffsetTVLoss'})(field) + build_loss({'type': 'OffsetMagnitudeLoss'})(field)).backward()
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0
    with pytest.raises(TypeError, match='expected an OffsetField'):
        build_loss({'type': 'OffsetTVLoss'})(torch.zeros(1, 3, 2, 4, 4))
