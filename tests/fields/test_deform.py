"""Pure-torch deformable convolution against the DCN definition (loops over output pixels and taps)."""
import pytest
import torch
import torch.nn.functional as F
from field_reference import deform_conv_reference

from basicsr_blurfield.fields import deform_conv2d
from basicsr_blurfield.fields.deform import deform_conv2d_torch, torchvision_deform_conv2d


def make_inputs(num=2,
                in_channels=4,
                out_channels=6,
                size=(6, 7),
                kernel=(3, 3),
                groups=1,
                offset_groups=1,
                out_size=(6, 7),
                scale=2.0,
                seed=0):
    gen = torch.Generator().manual_seed(seed)
    taps = kernel[0] * kernel[1]
    inp = torch.rand(num, in_channels, *size, generator=gen, dtype=torch.float64)
    offset = scale * torch.randn(num, 2 * offset_groups * taps, *out_size, generator=gen, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels // groups, *kernel, generator=gen, dtype=torch.float64)
    bias = torch.randn(out_channels, generator=gen, dtype=torch.float64)
    mask = torch.rand(num, offset_groups * taps, *out_size, generator=gen, dtype=torch.float64)
    return inp, offset, weight, bias, mask


@pytest.mark.parametrize('with_mask', (False, True))
@pytest.mark.parametrize('scale', (0.6, 3.0))
def test_3x3_matches_dcn_reference(scale, with_mask):
    inp, offset, weight, bias, mask = make_inputs(scale=scale, seed=int(scale * 10))
    mask = mask if with_mask else None
    expected = deform_conv_reference(inp, offset, weight, bias, 1, 1, 1, mask)
    got = deform_conv2d(inp, offset, weight, bias, padding=1, mask=mask)
    assert torch.allclose(got, expected, atol=1e-12)


def test_stride_dilation_groups_and_offset_groups_match_dcn_reference():
    # H_out = (7 + 2 * 2 - 2 * 2 - 1) // 2 + 1 = 4, W_out = (8 + 4 - 4 - 1) // 2 + 1 = 4
    inp, offset, weight, bias, mask = make_inputs(1, 4, 6, (7, 8), (3, 3), groups=2, offset_groups=2, out_size=(4, 4))
    expected = deform_conv_reference(inp, offset, weight, bias, 2, 2, 2, mask)
    got = deform_conv2d(inp, offset, weight, bias, stride=2, padding=2, dilation=2, mask=mask)
    assert torch.allclose(got, expected, atol=1e-12)


def test_rectangular_kernel_without_padding_matches_dcn_reference():
    inp, offset, weight, _, _ = make_inputs(1, 2, 3, (5, 6), (1, 3), out_size=(5, 4), scale=1.0)
    expected = deform_conv_reference(inp, offset, weight)
    assert torch.allclose(deform_conv2d(inp, offset, weight), expected, atol=1e-12)


def test_zero_offsets_reduce_to_an_ordinary_convolution():
    inp, offset, weight, bias, _ = make_inputs(scale=0.0)
    expected = F.conv2d(inp, weight, bias, padding=1)
    assert torch.allclose(deform_conv2d(inp, offset, weight, bias, padding=1), expected, atol=1e-12)


def test_gradcheck_in_input_offset_weight_and_mask():
    inp, offset, weight, bias, mask = make_inputs(1, 2, 2, (4, 4), out_size=(4, 4), scale=0.0, seed=1)
    # keep samples away from integer positions, where bilinear interpolation is not differentiable
    offset = offset + 0.3 + 0.4 * torch.rand(
        offset.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (inp, offset, weight, bias, mask))
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d_torch(*a[:4], 1, 1, 1, a[4]), inputs)


def test_uses_the_pure_torch_path_when_torchvision_ops_are_unavailable():
    try:
        import torchvision.extension
        has_ops = torchvision.extension._has_ops()
    except Exception:
        has_ops = False
    assert (torchvision_deform_conv2d() is not None) == has_ops


def test_validation_messages():
    inp, offset, weight, bias, mask = make_inputs()
    with pytest.raises(
            ValueError, match=r'offset: expected \(2, 2 \* G \* 9, 6, 7\) with G dividing C_in=4, '
            r'got \(2, 18, 5, 7\)'):
        deform_conv2d(inp, offset[:, :, :5], weight, padding=1)
    with pytest.raises(ValueError, match=r'mask: expected \(2, 9, 6, 7\), got \(2, 8, 6, 7\)'):
        deform_conv2d(inp, offset, weight, padding=1, mask=mask[:, :8])
    with pytest.raises(ValueError, match=r'bias: expected \(6,\), got \(5,\)'):
        deform_conv2d(inp, offset, weight, bias[:5], padding=1)
    with pytest.raises(ValueError, match='weight: expected .* groups dividing C_in=4'):
        deform_conv2d(inp, offset, weight[:, :3], padding=1)
    with pytest.raises(ValueError, match=r'stride: expected an int or a pair of ints >= 1, got 0'):
        deform_conv2d(inp, offset, weight, stride=0, padding=1)
