"""pad_to_multiple / crop_to round trip at odd sizes, including sizes smaller than the pad."""
import pytest
import torch

from basicsr_blurfield.archs.arch_util import crop_to, pad_to_multiple


@pytest.mark.parametrize('size', [(37, 45), (3, 5), (16, 16)])
def test_pad_then_crop_restores_the_input(size):
    x = torch.rand(2, 3, *size)
    padded, original = pad_to_multiple(x, 16)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert original == size and torch.equal(crop_to(padded, original), x)


def test_pad_to_multiple_rejects_bad_arguments():
    with pytest.raises(ValueError, match='expected a 4-D tensor'):
        pad_to_multiple(torch.rand(3, 8, 8), 4)
    with pytest.raises(ValueError, match="invalid mode 'wrap'"):
        pad_to_multiple(torch.rand(1, 3, 8, 8), 4, mode='wrap')


def test_crop_scaled_crops_every_scale_of_a_multi_scale_output_with_ceil():
    from basicsr_blurfield.archs.arch_util import crop_scaled
    outputs = [torch.rand(1, 3, 64, 64), torch.rand(1, 3, 128, 128), torch.rand(1, 3, 256, 256)]
    cropped = crop_scaled(outputs, (253, 250), 256)
    assert [tuple(image.shape[-2:]) for image in cropped] == [(64, 63), (127, 125), (253, 250)]
    assert torch.equal(crop_scaled(outputs[2], (253, 250), 256), outputs[2][..., :253, :250])
