"""Boundary handling is the same in every representation: a tap outside the image reads the padded value."""
import pytest
import torch
from field_reference import read

from basicsr_blurfield.fields import PADDING_MODES, BasisField, KernelField, OffsetField
from basicsr_blurfield.fields._common import pad_image, source_index, unpad_adjoint


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_a_shift_reads_the_same_padded_pixels_in_every_representation(padding):
    sharp = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dx, dy, size = 2, -2, 5
    radius = size // 2
    delta = torch.zeros(size, size, dtype=torch.float64)
    delta[dy + radius, dx + radius] = 1
    kernel = KernelField(delta.reshape(1, -1, 1, 1).expand(1, size * size, 6, 7).contiguous(), padding)
    basis = BasisField(delta[None, None], torch.ones(1, 1, 6, 7, dtype=torch.float64), padding)
    offsets = torch.tensor([float(dx), float(dy)], dtype=torch.float64).view(1, 1, 2, 1, 1).expand(1, 1, 2, 6, 7)
    offset = OffsetField(offsets.contiguous(), padding)
    expected = torch.stack(
        [torch.stack([read(sharp[0], y + dy, x + dx, padding) for x in range(7)], -1) for y in range(6)],
        -1).permute(0, 2, 1)[None]
    for field in (kernel, basis, offset):
        assert torch.allclose(field.blur(sharp), expected, atol=1e-12), type(field).__name__


@pytest.mark.parametrize('padding', ('replicate', 'reflect'))
def test_source_index_follows_torch_padding(padding):
    image = torch.arange(5, dtype=torch.float64).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    padded = pad_image(image, 3, padding)
    assert torch.equal(padded[0, 0, 0], source_index(5, 3, padding).double())
    assert source_index(5, 3, padding).tolist() == ([0, 0, 0, 0, 1, 2, 3, 4, 4, 4, 4]
                                                    if padding == 'replicate' else [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])


@pytest.mark.parametrize('padding', PADDING_MODES)
def test_unpad_adjoint_is_the_transpose_of_padding(padding):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 3, 10, 9, generator=gen, dtype=torch.float64)
    assert torch.isclose((pad_image(x, 2, padding) * y).sum(), (x * unpad_adjoint(y, 2, padding)).sum(), rtol=1e-12)
