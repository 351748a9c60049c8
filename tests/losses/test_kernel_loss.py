"""KernelLoss (eq. (4) of Carbajal et al.) against a direct dense computation."""
import pytest
import torch

from basicsr.losses import build_loss
from basicsr_blurfield.fields import BasisField, KernelField
from basicsr_blurfield.losses.kernel_loss import KernelLoss

N, B, K, KT, H, W = 2, 3, 5, 7, 8, 9


def make_fields(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis_logits = torch.randn(N, B, K * K, generator=g, dtype=dtype).requires_grad_()
    mixing_logits = torch.randn(N, B, H, W, generator=g, dtype=dtype).requires_grad_()
    target = torch.softmax(torch.randn(N, KT * KT, H, W, generator=g, dtype=dtype) * 3, dim=1)
    weight = torch.rand(N, 1, H, W, generator=g, dtype=dtype) + 0.1
    return basis_logits, mixing_logits, KernelField(target), weight


def predicted(basis_logits, mixing_logits):
    return BasisField(torch.softmax(basis_logits, 2).view(N, B, K, K), torch.softmax(mixing_logits, 1))


def dense_reference(pred, target, weight, p, reduction='mean'):
    """Every per-pixel kernel expanded at once, on the common KT x KT grid."""
    diff = pred.dense(KT).kernels - target.kernels
    per_pixel = diff.abs().sum(1, keepdim=True) if p == 1 else diff.square().sum(1, keepdim=True).add(1e-12).sqrt()
    if reduction == 'none':
        return weight * per_pixel
    if reduction == 'sum':
        return (weight * per_pixel).sum()
    return (weight * per_pixel).sum() / weight.sum()


@pytest.mark.parametrize('p', [1, 2])
@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
@pytest.mark.parametrize('tile_size', [7, 1024])
def test_tiled_loss_equals_dense_computation_and_its_gradient(p, reduction, tile_size):
    basis_logits, mixing_logits, target, weight = make_fields()
    loss_fn = KernelLoss(loss_weight=0.5, p=p, tile_size=tile_size, reduction=reduction)
    loss = loss_fn(predicted(basis_logits, mixing_logits), target, weight)
    ref = 0.5 * dense_reference(predicted(basis_logits, mixing_logits), target, weight, p, reduction)
    assert loss.shape == ref.shape
    assert torch.allclose(loss, ref, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(loss.sum(), (basis_logits, mixing_logits))
    ref_grads = torch.autograd.grad(ref.sum(), (basis_logits, mixing_logits))
    for grad, ref_grad in zip(grads, ref_grads):
        assert torch.allclose(grad, ref_grad, rtol=1e-8, atol=1e-12)


def test_unweighted_mean_is_the_plain_mean_over_pixels():
    basis_logits, mixing_logits, target, _ = make_fields()
    pred = predicted(basis_logits, mixing_logits)
    loss = KernelLoss(p=1)(pred, target)
    ref = dense_reference(pred, target, torch.ones(N, 1, H, W, dtype=torch.float64), 1)
    assert torch.allclose(loss, ref, rtol=1e-10)


def test_identical_fields_give_zero_loss():
    basis_logits, mixing_logits, _, weight = make_fields()
    pred = predicted(basis_logits, mixing_logits)
    assert KernelLoss(p=1)(pred, pred.dense(), weight).item() == pytest.approx(0, abs=1e-12)
    assert KernelLoss(p=2)(pred, pred, weight).item() == pytest.approx(0, abs=1e-5)


def test_norm_order_switches_from_two_to_one_at_the_given_iteration():
    loss_fn = KernelLoss(p=2, switch_iter=100, p_after_switch=1)
    assert [loss_fn.order_at(i) for i in (None, 0, 99, 100, 5000)] == [2, 2, 2, 1, 1]
    basis_logits, mixing_logits, target, weight = make_fields()
    pred = predicted(basis_logits, mixing_logits)
    assert torch.allclose(loss_fn(pred, target, weight, current_iter=99), dense_reference(pred, target, weight, 2))
    assert torch.allclose(loss_fn(pred, target, weight, current_iter=100), dense_reference(pred, target, weight, 1))


def test_pixel_subsampling_reads_the_sampled_pixels_and_is_reproducible():
    basis_logits, mixing_logits, target, weight = make_fields()
    pred = predicted(basis_logits, mixing_logits)
    loss_fn = KernelLoss(p=1, num_samples=5, reduction='none')
    values = loss_fn(pred, target, weight, generator=torch.Generator().manual_seed(7))
    again = loss_fn(pred, target, weight, generator=torch.Generator().manual_seed(7))
    assert values.shape == (N, 5) and torch.equal(values, again)
    dense = dense_reference(pred, target, weight, 1, 'none')
    flat = torch.randint(H * W, (N * 5, ), generator=torch.Generator().manual_seed(7)).view(N, 5)
    expected = torch.stack([dense[n, 0].flatten()[flat[n]] for n in range(N)])
    assert torch.allclose(values, expected, rtol=1e-10)


def test_many_samples_approach_the_full_weighted_mean():
    basis_logits, mixing_logits, target, weight = make_fields()
    pred = predicted(basis_logits, mixing_logits)
    full = KernelLoss(p=1)(pred, target, weight)
    sampled = KernelLoss(p=1, num_samples=20000)(pred, target, weight, generator=torch.Generator().manual_seed(0))
    assert sampled.item() == pytest.approx(full.item(), rel=0.02)


def test_mismatched_fields_and_options_are_rejected():
    basis_logits, mixing_logits, target, weight = make_fields()
    pred = predicted(basis_logits, mixing_logits)
    with pytest.raises(ValueError, match='weight: expected'):
        KernelLoss()(pred, target, weight[:, :, :4])
    with pytest.raises(ValueError, match='target field: expected'):
        KernelLoss()(pred, KernelField(target.kernels[:1]), weight)
    with pytest.raises(TypeError, match='expected a blur field'):
        KernelLoss()(pred.mixing, target)
    with pytest.raises(ValueError, match=r'p: expected one of \[1, 2\]'):
        KernelLoss(p=3)


def test_build_loss_from_yaml_options():
    loss_fn = build_loss({'type': 'KernelLoss', 'loss_weight': 1.0, 'p': 2, 'switch_iter': 350, 'num_samples': 64})
    assert isinstance(loss_fn, KernelLoss) and loss_fn.order_at(400) == 1
