"""LatentKernelField: the estimator's field decoded on demand equals the eager KernelField (values and gradients),
decodes only the pixels asked for, and keeps a no-grad decode out of a differentiable loss."""
import pytest
import torch

from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator, LatentKernelField
from basicsr_blurfield.fields import KernelField
from basicsr_blurfield.losses.kernel_loss import KernelLoss

POINTS = torch.tensor([[0, 0, 0], [1, 20, 25], [1, 5, 7], [0, 20, 3], [0, 10, 13]])


@pytest.fixture
def estimator():
    torch.manual_seed(0)
    return FlowKernelEstimator(img_channel=3, kernel_size=7, num_feat=8, flow_num_block=2, flow_hidden_size=8)


def test_lazy_field_equals_the_eager_field(estimator):
    estimator.eval()
    image = torch.rand(2, 3, 21, 26)  # not a multiple of the U-Net's 4: padded, then cropped
    eager, lazy = estimator(image), estimator(image, lazy=True)
    assert isinstance(lazy, LatentKernelField) and isinstance(lazy, KernelField)
    assert (lazy.batch, lazy.height, lazy.width, lazy.kernel_size) == (2, 21, 26, 7)
    torch.testing.assert_close(lazy.kernels_at(POINTS), eager.kernels_at(POINTS), atol=1e-6, rtol=0)
    assert lazy._kernels is None  # kernels_at decoded only the five points
    assert lazy.device == image.device and lazy.dtype == torch.float32 and lazy._kernels is None
    sums = lazy.kernels_at(POINTS).sum((1, 2))
    torch.testing.assert_close(sums, torch.ones(5))
    sharp = torch.rand(2, 3, 21, 26)
    torch.testing.assert_close(lazy.blur(sharp), eager.blur(sharp), atol=1e-6, rtol=0)
    torch.testing.assert_close(lazy.kernels, eager.kernels, atol=1e-6, rtol=0)
    assert type(lazy.detach()) is KernelField


@pytest.mark.parametrize('sample', [False, True])
@pytest.mark.parametrize('grad', [False, True])
def test_lazy_full_decode_is_bit_for_bit_the_eager_field(estimator, sample, grad):
    """Both paths share the trunk, the heads, the noise draw and the decode: the same generator gives equal bits."""
    estimator.train(grad)
    image = torch.rand(2, 3, 13, 10)
    with torch.set_grad_enabled(grad):
        eager = estimator(image, sample=sample, generator=torch.Generator().manual_seed(5))
        lazy = estimator(image, sample=sample, generator=torch.Generator().manual_seed(5), lazy=True)
        assert torch.equal(lazy.kernels, eager.kernels)
        kernels, sigma = estimator.estimate_kernels(image, sample=sample, generator=torch.Generator().manual_seed(5))
    assert torch.equal(kernels, eager.kernels) and sigma.shape == (2, 1, 13, 10)
    assert lazy.kernels.requires_grad == grad


def test_lazy_field_gradients_equal_the_eager_ones(estimator):
    estimator.train()
    image = torch.rand(2, 3, 21, 26, requires_grad=True)
    weights = torch.rand(5, 7, 7)
    inputs = [image] + [p for p in estimator.parameters() if p.requires_grad]
    grads = []
    for lazy in (False, True):
        field = estimator(image, sample=False, lazy=lazy)
        grads.append(torch.autograd.grad((field.kernels_at(POINTS) * weights).sum(), inputs))
    for eager_grad, lazy_grad in zip(*grads):
        torch.testing.assert_close(lazy_grad, eager_grad, atol=1e-6, rtol=1e-5)


def test_sampling_adds_noise_from_the_given_generator(estimator):
    estimator.train()
    image = torch.rand(1, 3, 16, 16)
    points = torch.tensor([[0, 3, 4], [0, 12, 9]])

    def draw(seed):
        field = estimator(image, sample=True, generator=torch.Generator().manual_seed(seed), lazy=True)
        return field.kernels_at(points)

    torch.testing.assert_close(draw(1), draw(1))
    assert (draw(1) - draw(2)).abs().max() > 1e-3
    mean = estimator(image, sample=False, lazy=True).kernels_at(points)
    assert (draw(1) - mean).abs().max() > 1e-3


def test_no_grad_decode_does_not_leak_into_a_differentiable_loss(estimator):
    """A metric read under no_grad (the training log) may decode the whole field; the loss's backward recomputes its
    sampled kernels with autograd and must still reach the network."""
    estimator.train()
    image = torch.rand(2, 3, 16, 16)
    target = estimator(torch.rand(2, 3, 16, 16), sample=False).detach()
    field = estimator(image, lazy=True)
    loss = KernelLoss(p=1, num_samples=16)(field, target, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        field.kernels  # the whole field, without a graph
        KernelLoss(p=1, num_samples=16)(field, target)
    loss.backward()
    grad = estimator.kernel_extra.Conv_tail['mean'][2].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_a_full_decode_after_a_checkpointed_kernel_loss_keeps_its_backward_valid(estimator):
    """Kernel loss first, then the re-blur loss (which decodes every pixel with autograd): both backward."""
    estimator.train()
    image, sharp = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    target = estimator(torch.rand(2, 3, 16, 16), sample=False).detach()
    field = estimator(image, lazy=True)
    loss = KernelLoss(p=1, num_samples=16)(field, target, generator=torch.Generator().manual_seed(0))
    loss = loss + (field.blur(sharp) - image).abs().mean()
    loss.backward()
    assert estimator.kernel_extra.Conv_tail['mean'][2].weight.grad.abs().sum() > 0
