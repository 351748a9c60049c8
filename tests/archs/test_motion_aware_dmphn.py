"""Motion-aware DMPHN (Motion-ETR eq. 16): tap positions on hand-built trajectories (paper and released layouts),
the released checkpoint layout, the offset net frozen or fine-tuned, and option errors."""
import json
import os

import pytest
import torch

from basicsr.archs import build_network
from basicsr_blurfield.archs.dmphn_arch import (DMPHN, MotionAwareDMPHN, _MotionAwarePair, _ResPair,
                                                motion_aware_offsets, released_tap_source, remap_official_keys)
from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.fields import OffsetField, deform_conv2d
from tests.conftest import FIXTURES

TINY = dict(num_feat=4, offset_feat=4)
H, W = 12, 14


def ma_layout() -> dict:
    with open(os.path.join(FIXTURES, 'motion_etr_ma_dmphn_state_dict.json')) as handle:
        return json.load(handle)


def sampled_positions(offset: torch.Tensor) -> torch.Tensor:
    """Where each 3x3 tap of ``deform_conv2d`` reads, measured: (9, 2, H, W) as (y, x).

    The input holds the row and column coordinates (linear ramps, which bilinear sampling reproduces exactly inside
    the image); a weight with a single tap k copies the sampled coordinates of that tap to the output.
    """
    rows = torch.arange(H, dtype=torch.float64)[:, None].expand(H, W)
    cols = torch.arange(W, dtype=torch.float64).expand(H, W)
    ramps = torch.stack((rows, cols))[None]
    positions = []
    for tap in range(9):
        weight = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
        weight[0, 0].view(-1)[tap] = weight[1, 1].view(-1)[tap] = 1
        positions.append(deform_conv2d(ramps, offset, weight, padding=1)[0])
    return torch.stack(positions)


def hand_built_trajectory() -> torch.Tensor:
    """A curved 15-instant trajectory, (1, 15, 2, H, W) as (dx, dy), through (0, 0) at instant 7, varying in x."""
    tau = torch.arange(15, dtype=torch.float64) - 7
    dx = 0.9 * tau + 0.05 * tau ** 2
    dy = -0.6 * tau + 0.08 * tau ** 2
    ramp = 1 + torch.arange(W, dtype=torch.float64) / W  # a different trajectory length in every column
    return (torch.stack((dx, dy), 1)[None, :, :, None, None] * ramp).expand(1, 15, 2, H, W).contiguous()


def test_paper_layout_taps_sample_the_9_trajectory_points_centred_on_the_middle_instant():
    offsets = hand_built_trajectory()
    measured = sampled_positions(motion_aware_offsets(offsets, layout='paper'))
    rows = torch.arange(H, dtype=torch.float64)[:, None]
    cols = torch.arange(W, dtype=torch.float64)
    inside = (slice(2, H - 2), slice(2, W - 2))  # away from the zero border (the points move up to ~1.1 px)
    for tap in range(9):  # eq. 16: y(p0) = sum_n w(p_n) x(p0 + alpha * dp^{t_n}), tap n row-major, t_n = 3 + n
        instant = 3 + tap
        expected_y = rows + 0.1 * offsets[0, instant, 1]
        expected_x = cols + 0.1 * offsets[0, instant, 0]
        assert torch.allclose(measured[tap, 0][inside], expected_y[inside], atol=1e-12), tap
        assert torch.allclose(measured[tap, 1][inside], expected_x[inside], atol=1e-12), tap
    # the middle instant is (0, 0): the centre tap keeps its regular place (zero offset)
    assert torch.equal(motion_aware_offsets(offsets)[:, 8:10], torch.zeros(1, 2, H, W, dtype=torch.float64))


def test_released_tap_tables_are_the_fixtures():
    table = ma_layout()['dcn_offset_map']
    source, grid = released_tap_source()
    assert list(source) == table['dcn_channel_source_offsetnet_channel']
    assert list(grid) == table['dcn_channel_subtracted_constant']
    assert table['scale_value'] == 0.08 and table['offset_net_vectors_used'] == list(range(3, 12))


def released_map(start, end) -> torch.Tensor:
    """The authors' 30-channel map O of a quadratic trajectory, built from the fixture's description: v0 = S,
    v1..v6 = 0.5((t + t^2) S - (t - t^2) E) for t = 1/7..6/7, v7 = 0, v8..v13 the same with S and E swapped, v14 = E,
    each v as (dy, dx)."""
    vectors = [start]
    for n in range(1, 7):
        t = n / 7
        vectors.append(0.5 * ((t + t * t) * start - (t - t * t) * end))
    vectors.append(torch.zeros_like(start))
    for n in range(1, 7):
        t = n / 7
        vectors.append(0.5 * ((t + t * t) * end - (t - t * t) * start))
    vectors.append(end)
    return torch.cat(vectors, 1)


def test_released_layout_reads_the_authors_channels_in_their_scrambled_pair_order():
    generator = torch.Generator().manual_seed(0)
    start_dydx = torch.randn(1, 2, H, W, generator=generator, dtype=torch.float64) * 4
    end_dydx = torch.randn(1, 2, H, W, generator=generator, dtype=torch.float64) * 4
    ours = OffsetField.from_endpoints(start_dydx.flip(1), end_dydx.flip(1), 15, 'quadratic').offsets
    offset = motion_aware_offsets(ours, layout='released')
    released = released_map(start_dydx, end_dydx)
    table = ma_layout()['dcn_offset_map']
    expected = 0.08 * released[:, table['dcn_channel_source_offsetnet_channel']] - torch.tensor(
        table['dcn_channel_subtracted_constant'], dtype=torch.float64).view(1, -1, 1, 1)
    assert torch.allclose(offset, expected, atol=1e-12)
    # the fixture's worked taps: tap 0 samples (y + r O[6], x + r O[8]); tap 2 (y - 1 + r O[14], x + 1 + r O[16])
    measured = sampled_positions(offset)
    rows = torch.arange(H, dtype=torch.float64)[:, None].expand(H, W)
    cols = torch.arange(W, dtype=torch.float64).expand(H, W)
    inside = (slice(3, H - 3), slice(3, W - 3))
    zoom = 0.08 * released[0]
    for tap, (dy, dx, oy, ox) in {0: (0, 0, 6, 8), 2: (-1, 1, 14, 16), 5: (0, 0, 9, 11)}.items():
        assert torch.allclose(measured[tap, 0][inside], (rows + dy + zoom[oy])[inside], atol=1e-12), tap
        assert torch.allclose(measured[tap, 1][inside], (cols + dx + zoom[ox])[inside], atol=1e-12), tap


def test_a_motion_aware_pair_with_zero_tap_offsets_on_the_regular_grid_is_the_plain_pair():
    torch.manual_seed(0)
    plain = _ResPair(4)
    aware = _MotionAwarePair(4)
    aware.load_state_dict(plain.state_dict())
    x = torch.rand(2, 4, 9, 10)
    assert torch.allclose(aware(x, torch.zeros(2, 18, 9, 10)), plain(x), atol=1e-5)


def test_published_config_counts_and_the_released_checkpoint_loads_strictly():
    layout = ma_layout()
    with torch.device('meta'):
        net = MotionAwareDMPHN(ma_layout='released')
        backbone = DMPHN()
    counts = layout['params_by_top_module']
    assert sum(p.numel() for p in net.offset_net.parameters()) == counts['offset_net'] == 1129604
    # ours keeps alpha as an option, the release stores it as three frozen 0-dim parameters (ratio_3)
    assert sum(p.numel() for p in net.parameters()) == layout['num_params'] - 3 == 6553997
    assert {k: v.shape for k, v in net.state_dict().items() if not k.startswith('offset_net.')} == {
        k: v.shape for k, v in backbone.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    released = {key: torch.randn(shape, generator=generator) for key, shape in
                layout['state_dict']['latest_net_deblur.pth'].items()}
    for first, second in layout['aliased_keys']:
        released[second] = released[first]
    net = MotionAwareDMPHN(ma_layout='released')
    net.load_state_dict(released)  # strict, through the load pre-hook (BasicSR's load_network path)
    state = net.state_dict()
    assert torch.equal(state['decoder_lv2.layer21.0.weight'], released['deblur_net.decoder_lv2.dcn_5_0.weight'])
    assert torch.equal(state['decoder_lv3.layer22.2.bias'], released['deblur_net.decoder_lv3.dcn_6_1.bias'])
    assert torch.equal(state['encoder_lv1.layer11.2.weight'], released['deblur_net.encoder_lv1.layer11.2.weight'])
    assert set(remap_official_keys(released)) == set(state)


def test_frozen_offset_net_stays_fixed_and_the_fine_tuned_one_learns():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    frozen = build_network(dict(TINY, type='MotionAwareDMPHN', freeze_offset_net=True)).train()
    assert not frozen.offset_net.training and not any(p.requires_grad for p in frozen.offset_net.parameters())
    frozen(x).mean().backward()
    assert all(p.grad is None for p in frozen.offset_net.parameters())
    assert all(p.grad is not None for p in frozen.decoder_lv1.layer21.parameters())
    tuned = build_network(dict(TINY, type='MotionAwareDMPHN')).train()
    tuned(x).mean().backward()
    assert all(p.grad is not None for p in tuned.offset_net.parameters())


def test_offset_net_checkpoint_loads_at_construction_and_return_field_gives_its_field(tmp_path):
    offset_net = MotionOffsetNet(num_feat=4)
    torch.save({'params': offset_net.state_dict()}, tmp_path / 'offsets.pth')
    net = MotionAwareDMPHN(offset_net_path=str(tmp_path / 'offsets.pth'), **TINY).eval()
    x = torch.rand(2, 3, 19, 22, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        restored, field = net(x, return_field=True)
        expected = offset_net(x).offsets
    assert restored.shape == x.shape and torch.allclose(field.offsets, expected)
    with open(os.path.join(FIXTURES, 'motion_etr_offsetnet_state_dict.json')) as handle:
        shapes = json.load(handle)['state_dict']
    generator = torch.Generator().manual_seed(4)
    released = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key in [key for key in released if '.model.' in key]:  # each bottleneck tensor is stored twice
        layer, _, index, kind = key.split('.')
        released[key] = released[f'{layer}.conv{1 if index == "0" else 2}.{kind}']
    torch.save(released, tmp_path / 'latest_net_offset.pth')
    net = MotionAwareDMPHN(offset_net_path=str(tmp_path / 'latest_net_offset.pth'), num_feat=4)
    assert torch.equal(net.offset_net.head.bias, released['conv_out_0.bias'].view(2, 2).flip(1).reshape(4))
    with pytest.raises(FileNotFoundError, match='no MotionOffsetNet checkpoint'):
        MotionAwareDMPHN(offset_net_path=str(tmp_path / 'missing.pth'), **TINY)


@pytest.mark.parametrize('options,message', [
    (dict(ma_layout='dcn'), r"ma_layout: expected one of \('paper', 'released'\)"),
    (dict(num_steps=7), 'expected an odd T >= 9'),
    (dict(ma_layout='released', num_steps=9), "needs the authors' T=15"),
])
def test_bad_options_are_refused_with_the_valid_choices(options, message):
    with pytest.raises(ValueError, match=message):
        MotionAwareDMPHN(**TINY, **options)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_the_gpu_gives_the_cpus_output_and_gradients():
    torch.manual_seed(5)
    net = MotionAwareDMPHN(**TINY).eval()
    x = torch.rand(2, 3, 24, 32)
    expected = net(x)
    expected.mean().backward()
    cpu_grad = net.offset_net.head.weight.grad.clone()
    net.zero_grad()
    gpu = net.cuda()
    out = gpu(x.cuda())
    out.mean().backward()
    assert torch.allclose(out.cpu(), expected, atol=1e-4)
    assert torch.allclose(gpu.offset_net.head.weight.grad.cpu(), cpu_grad, atol=1e-4, rtol=1e-3)
