"""save_field / load_field: compact archives that round-trip exactly."""
import numpy as np
import pytest
import torch

from basicsr_blurfield.fields import BasisField, KernelField, OffsetField, load_field, normalize_kernels, save_field


def fields():
    gen = torch.Generator().manual_seed(0)
    kernels = normalize_kernels(torch.rand(2, 9, 5, 6, generator=gen), 1)
    basis = normalize_kernels(torch.rand(1, 3, 5, 5, generator=gen, dtype=torch.float64), (2, 3))
    mixing = torch.softmax(torch.randn(1, 3, 7, 8, generator=gen, dtype=torch.float64), 1)
    offsets = torch.randn(1, 5, 2, 4, 6, generator=gen)
    return [KernelField(kernels, 'zeros'), BasisField(basis, mixing, 'reflect'), OffsetField(offsets)]


@pytest.mark.parametrize('field', fields(), ids=lambda f: type(f).__name__)
def test_save_then_load_round_trips_exactly(tmp_path, field):
    path = tmp_path / 'field.npz'
    save_field(path, field)
    loaded = load_field(path)
    assert type(loaded) is type(field) and loaded.padding == field.padding
    for name, value in field.tensors().items():
        assert loaded.tensors()[name].dtype == value.dtype
        assert torch.equal(loaded.tensors()[name], value)


def test_archive_holds_the_representation_not_a_dense_expansion(tmp_path):
    field = fields()[1]
    save_field(tmp_path / 'basis.npz', field)
    with np.load(tmp_path / 'basis.npz') as archive:
        assert sorted(archive.files) == ['basis', 'field_type', 'mixing', 'padding']
        assert archive['basis'].shape == (1, 3, 5, 5)


def test_errors_name_the_expected_content(tmp_path):
    with pytest.raises(TypeError, match=r"field: expected one of \('KernelField', 'BasisField', 'OffsetField'\)"):
        save_field(tmp_path / 'x.npz', torch.zeros(1))
    np.savez(tmp_path / 'other.npz', a=np.zeros(2))
    with pytest.raises(ValueError, match='expected a blur-field archive with a field_type entry'):
        load_field(tmp_path / 'other.npz')
    np.savez(tmp_path / 'bad.npz', field_type=np.array('DenseField'), padding=np.array('zeros'))
    with pytest.raises(ValueError, match="field_type expected one of .* got 'DenseField'"):
        load_field(tmp_path / 'bad.npz')
