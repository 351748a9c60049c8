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
