"""KernelDataset: normalised centred kernels of size K, lengths from short to long, reproducible."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from basicsr.data import build_dataset
from basicsr_blurfield.fields import generators as gen


def _dataset(**extra):
    opt = {'name': 'kernels', 'type': 'KernelDataset', 'phase': 'val', 'kernel_size': 19, 'num_samples': 120, 'seed': 1}
    opt.update(extra)
    return build_dataset(opt)


def test_kernels_are_normalised_centred_and_span_short_to_long_blur():
    dataset = _dataset()
    batch = next(iter(DataLoader(dataset, batch_size=120)))
    kernels = batch['kernel']
    assert kernels.shape == (120, 1, 19, 19)
    assert (kernels >= 0).all()
    assert torch.allclose(kernels.sum((2, 3)), torch.ones(120, 1), atol=1e-5)
    for k in kernels[:, 0].numpy():
        cy, cx = gen.center_of_mass(k)
        assert abs(cy - 9) < 1e-3 and abs(cx - 9) < 1e-3
    lengths = batch['length'].numpy()
    assert lengths.min() < 19 / 4 and lengths.max() > 19 / 2
    types = set(batch['kernel_type'])
    assert types == {'shake', 'linear'}


def test_same_seed_same_kernels_and_other_seed_other_kernels():
    a, b, c = _dataset(), _dataset(), _dataset(seed=2)
    assert torch.equal(a[7]['kernel'], b[7]['kernel'])
    assert not torch.equal(a[7]['kernel'], c[7]['kernel'])
    assert not torch.equal(a[7]['kernel'], a[8]['kernel'])


def test_kernel_types_option_selects_linear_kernels_only():
    dataset = _dataset(kernel_types={'linear': 1.0}, kernel_size=9)
    for index in range(5):
        kernel = dataset[index]['kernel'][0].numpy()
        # a linear kernel's mass lies along one line through the centre
        ys, xs = np.nonzero(kernel > 1e-6)
        cov = np.cov(np.stack([xs, ys]), aweights=kernel[ys, xs]) if len(xs) > 1 else np.zeros((2, 2))
        eig = np.linalg.eigvalsh(cov)
        assert eig[0] <= 0.25 * max(eig[1], 1e-9) + 0.3


def test_invalid_options_are_reported():
    with pytest.raises(ValueError, match=r"expected keys among \('shake', 'linear'\), got \['gauss'\]"):
        _dataset(kernel_types={'gauss': 1.0})
    with pytest.raises(ValueError, match='positive odd int, got 8'):
        _dataset(kernel_size=8)
