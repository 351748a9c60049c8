"""Reference models: names resolve to shipped files carrying their network options; export -> load round trips for
every estimator family; clear errors for unknown names; the detect_blur script loads a basis reference by path;
test-time averaging (flips / transposes mapped back, spatial smoothing) against slow references."""
import os

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr_blurfield import reference_models as refs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    'ufpnet': {'type': 'FlowKernelEstimator', 'kernel_size': 5, 'num_feat': 4, 'flow_num_block': 2,
               'flow_hidden_size': 8},
    'basis': {'type': 'BasisKernelNet', 'num_basis': 4, 'kernel_size': 9, 'num_feat': 8, 'enc_channels': [8, 8, 8],
              'kernel_channels': [8, 8, 8]},
    'offsets': {'type': 'MotionOffsetNet', 'num_feat': 4},
}


@pytest.mark.parametrize('kind', sorted(TINY))
def test_export_then_load_gives_the_same_network_and_field(kind, tmp_path):
    torch.manual_seed(0)
    net = build_network(dict(TINY[kind])).eval()
    checkpoint, options = str(tmp_path / 'net_g_5.pth'), str(tmp_path / 'train.yml')
    torch.save({'params': net.state_dict()}, checkpoint)
    with open(options, 'w') as handle:
        yaml.safe_dump({'network_g': TINY[kind]}, handle)
    destination = str(tmp_path / 'reference.pth')
    refs.export_reference(checkpoint, options, destination, kind, {'iterations': 5})
    stored = torch.load(destination, weights_only=True)
    assert stored['kind'] == kind and stored['network_g'] == TINY[kind] and stored['meta'] == {'iterations': 5}
    loaded, loaded_kind = refs.load_estimator(destination)
    assert loaded_kind == kind and not loaded.training
    lq = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected, got = net(lq), loaded(lq)
    for name, tensor in expected.tensors().items():
        assert torch.equal(tensor, got.tensors()[name])


def test_kind_and_sizes_are_read_off_a_plain_ufpnet_checkpoint(tmp_path):
    net = build_network(dict(TINY['ufpnet']))
    path = str(tmp_path / 'plain.pth')
    torch.save({'params': net.state_dict()}, path)
    loaded, kind = refs.load_estimator(path)
    assert kind == 'ufpnet' and loaded.flow.size == 5
    assert loaded.kernel_extra.Encoding_Block1.Conv_head.out_channels == 4
    assert 'network_g' not in torch.load(path, weights_only=True)  # the sizes came off the weights


def test_unknown_names_and_kinds_are_refused_with_the_choices():
    with pytest.raises(FileNotFoundError, match='ufpnet-ke-reference'):
        refs.resolve_checkpoint('no-such-model')
    with pytest.raises(KeyError, match='expected one of'):
        refs.reference_model_path('no-such-model')
    with pytest.raises(ValueError, match='kind'):
        refs.load_estimator('ufpnet-ke-reference', kind='kernels')
    with pytest.raises(ValueError, match='holds a FlowKernelEstimator; expected BasisKernelNet'):
        refs.load_estimator('ufpnet-ke-reference', kind='basis')


@pytest.mark.parametrize('name', sorted(refs.REFERENCE_MODELS))
def test_every_reference_model_is_shipped_small_and_carries_its_card(name):
    path = refs.reference_model_path(name)
    assert os.path.getsize(path) < 10 * 2**20
    stored = torch.load(path, weights_only=True)
    assert stored['kind'] in refs.KINDS and {'options', 'iterations', 'train_seconds', 'machine'} <= set(stored['meta'])
    assert os.path.isfile(os.path.join(ROOT, stored['meta']['options']))
    net, kind = refs.load_estimator(name)
    field = net(torch.rand(1, 3, 64, 64))
    assert field.height == 64 and kind == stored['kind']


def _slow_average(net, lq, transforms):
    """The T fields mapped back by explicit index arithmetic on (K, K, H, W) grids."""
    size = net.flow.size
    fields = []
    for transpose, horizontal, vertical in refs._TRANSFORMS[:transforms]:
        image = lq.transpose(-1, -2) if transpose else lq
        if horizontal:
            image = image.flip(-1)
        if vertical:
            image = image.flip(-2)
        grid = net(image).kernels.view(size, size, image.shape[-2], image.shape[-1])
        out = torch.empty(size, size, lq.shape[-2], lq.shape[-1])
        for i in range(size):
            for j in range(size):
                for y in range(lq.shape[-2]):
                    for x in range(lq.shape[-1]):
                        tap_i, tap_j, at_y, at_x = i, j, y, x
                        if transpose:
                            tap_i, tap_j, at_y, at_x = tap_j, tap_i, at_x, at_y
                        if horizontal:
                            tap_j, at_x = size - 1 - tap_j, image.shape[-1] - 1 - at_x
                        if vertical:
                            tap_i, at_y = size - 1 - tap_i, image.shape[-2] - 1 - at_y
                        out[i, j, y, x] = grid[tap_i, tap_j, at_y, at_x]
        fields.append(out)
    return torch.stack(fields).mean(0).reshape(1, size * size, lq.shape[-2], lq.shape[-1])


@pytest.mark.parametrize('transforms', (2, 4, 8))
def test_averaged_estimator_maps_each_transformed_field_back_and_averages(transforms):
    torch.manual_seed(0)
    net = build_network(dict(TINY['ufpnet'])).eval()
    lq = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        got = refs.AveragedEstimator(net, transforms)(lq)
        expected = _slow_average(net, lq, transforms)
    assert torch.allclose(got.kernels, expected, atol=1e-6) and (got.height, got.width) == (9, 7)
    assert torch.allclose(got.kernels.sum(1), torch.ones(1, 9, 7), atol=1e-5)


def test_averaged_estimator_keeps_the_field_of_an_exactly_equivariant_estimator():
    from basicsr_blurfield.fields import KernelField
    from basicsr_blurfield.fields.generators import linear_kernel
    kernel = torch.from_numpy(linear_kernel(5, 4.0, 0.4)).float().reshape(25, 1, 1)
    other = torch.from_numpy(linear_kernel(5, 3.0, 2.1)).float().reshape(25, 1, 1)

    class TrueField(torch.nn.Module):
        """Returns the true field of whichever flip / transpose of ``reference`` it is given."""

        def __init__(self, reference):
            super().__init__()
            self.reference = reference
            self.truth = KernelField(torch.cat([kernel.expand(25, 8, 4), other.expand(25, 8, 4)], -1)[None])

        def forward(self, lq):
            for transpose, horizontal, vertical in refs._TRANSFORMS:
                image = self.reference.mT if transpose else self.reference
                dims = ((-1, ) if horizontal else ()) + ((-2, ) if vertical else ())
                if torch.equal(image.flip(dims) if dims else image, lq):
                    return (self.truth.transposed() if transpose else self.truth).flipped(horizontal, vertical)
            raise AssertionError('an input that is no flip / transpose of the reference')

    net = TrueField(torch.rand(1, 3, 8, 8))
    averaged = refs.AveragedEstimator(net, 8)(net.reference)
    assert torch.allclose(averaged.kernels, net.truth.kernels, atol=1e-6)


@pytest.mark.parametrize('kind', ('ufpnet', 'basis'))
def test_averaged_estimator_smooths_the_dense_field_over_neighbours(kind):
    torch.manual_seed(0)
    net = build_network(dict(TINY[kind])).eval()
    assert refs.averaged_estimator(net, 1, 0) is net
    smoothed = refs.averaged_estimator(net, 1, 2.5)
    lq = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected, got = net(lq).dense().smoothed(2.5).kernels, smoothed(lq).kernels
        raw = net(lq).dense().kernels
    assert torch.equal(got, expected) and (got - raw).abs().max() > 0
    for bad in (-1, float('nan'), float('inf'), '1'):
        with pytest.raises(ValueError, match='smooth sigma'):
            refs.averaged_estimator(net, 1, bad)
    for bad in (0, 3, True, 16):
        with pytest.raises(ValueError, match=r'transforms: expected one of \(1, 2, 4, 8\)'):
            refs.averaged_estimator(net, bad, 0)
