"""One sweep over everything basicsr_blurfield registers: each arch is built from a tiny YAML-style option and run
forward and backward (output shape, no NaN, a gradient for every trainable parameter); each loss, dataset, model and
metric is known to this sweep, so a newly registered name without a tiny option here fails the sweep."""
import os
import re

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from basicsr_blurfield.fields import BlurField

TINY_ARCHS = yaml.safe_load('''
NAFNet: {width: 8, enc_blk_nums: [1, 1], middle_blk_num: 1, dec_blk_nums: [1, 1]}
NAFNetLocal: {width: 8, enc_blk_nums: [1, 1], middle_blk_num: 1, dec_blk_nums: [1, 1], train_size: [1, 3, 16, 16]}
MPRNet: {n_feat: 8, scale_unetfeats: 4, scale_orsnetfeats: 4, num_cab: 1}
MIMOUNet: {num_res: 1, base_channel: 8}
MIMOUNetPlus: {num_res: 1, base_channel: 8}
BasisKernelNet: {num_basis: 4, kernel_size: 9, num_feat: 8, enc_channels: [8, 12, 16], kernel_channels: [12, 8, 8],
                 in_channels: [3]}
FlowKernelEstimator: {kernel_size: 5, num_feat: 4}
KernelFlowPrior: {kernel_size: 5, num_block: 2}
UFPNet: {width: 4, enc_blk_nums: [1, 1, 1, 1], dec_blk_nums: [1, 1, 1, 1], kernel_size: 5, estimator_feat: 4}
UFPNetLocal: {width: 4, enc_blk_nums: [1, 1, 1, 1], dec_blk_nums: [1, 1, 1, 1], kernel_size: 5, estimator_feat: 4,
              train_size: [1, 3, 16, 16]}
MPRNetKE: {n_feat: 4, scale_unetfeats: 2, scale_orsnetfeats: 2, num_cab: 1, blur_kernel_size: 5, estimator_feat: 4}
MIMOUNetKE: {num_res: 1, base_channel: 4, kernel_size: 5, estimator_feat: 4}
BlurKernelExtractor: {num_feat: 4, num_front_block: 1, enc_feat: 4, num_down: 3, code_channels: 8, num_block: 1}
BlurOperatorFamily: {num_feat: 4, num_front_block: 1, num_back_block: 1, unet_feat: 4, num_levels: 3, code_channels: 8}
MotionOffsetNet: {num_feat: 4, constraint: quadratic, num_steps: 5}
DMPHN: {num_feat: 4}
MotionAwareDMPHN: {num_feat: 4, offset_feat: 4, num_steps: 9}
''')
# Names covered by their own YAML-snippet tests (file named after each).
COVERED_ELSEWHERE = {
    'loss': {'PSNRLoss': 'tests/losses/test_psnr_reblur_loss.py', 'ReblurLoss': 'tests/losses/test_psnr_reblur_loss.py',
             'KernelLoss': 'tests/losses/test_kernel_loss.py', 'FlowNLLLoss': 'tests/models/test_ufpnet_stages.py',
             'CharbonnierEdgeLoss': 'tests/losses/test_backbone_loss.py',
             'L1FrequencyLoss': 'tests/losses/test_backbone_loss.py',
             'MSSSIMLoss': 'tests/losses/test_msssim_loss.py', 'OffsetTVLoss': 'tests/losses/test_offset_loss.py',
             'OffsetMagnitudeLoss': 'tests/losses/test_offset_loss.py',
             'GaussianKLLoss': 'tests/losses/test_kl_loss.py'},
    'dataset': {'PairedBlurDataset': 'tests/data/test_paired_blur_dataset.py',
                'SyntheticBlurDataset': 'tests/data/test_synthetic_blur_dataset.py',
                'KernelDataset': 'tests/data/test_kernel_dataset.py',
                'BlurSwapDataset': 'tests/data/test_blur_swap_dataset.py'},
    'model': {'DeblurModel': 'tests/models/test_deblur_model.py',
              'BasisKernelModel': 'tests/models/test_basis_kernel_model.py',
              'FlowPriorModel': 'tests/models/test_ufpnet_stages.py',
              'KernelEstimationModel': 'tests/models/test_ufpnet_stages.py',
              'UFPNetModel': 'tests/models/test_ufpnet_stages.py',
              'MotionOffsetModel': 'tests/models/test_motion_offset_model.py',
              'BlurOperatorModel': 'tests/models/test_blur_operator_model.py'},
    'metric': {name: 'tests/metrics/test_leaderboard_metrics.py' for name in (
        'calculate_psnr_uint8_rgb', 'calculate_ssim_matlab3d', 'calculate_ssim_per_channel')} | {
            name: 'tests/metrics/test_realblur.py' for name in ('calculate_realblur_psnr', 'calculate_realblur_ssim')},
}


# archs whose forward takes a second tensor (G: the blurry image, F: a code map): name -> that input for an image
SECOND_INPUT = {'BlurKernelExtractor': lambda image: image.roll(1, dims=-1),
                'BlurOperatorFamily': lambda image: torch.randn(image.shape[0], 8, 1, 1)}


def ours(registry) -> list:
    return sorted(name for name, obj in registry._obj_map.items() if obj.__module__.startswith('basicsr_blurfield'))


def test_every_registered_arch_has_a_tiny_option_here():
    assert ours(ARCH_REGISTRY) == sorted(TINY_ARCHS)


def _test_text_with_its_options(test_file: str) -> str:
    """The test file's text plus that of every ``options/*.yml`` it names (tests that build from option files)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, test_file)) as f:
        text = f.read()
    for option_name in sorted(set(re.findall(r"'([\w-]+\.yml)'", text))):
        path = os.path.join(root, 'options', option_name)
        if os.path.isfile(path):
            with open(path) as f:
                text += f.read()
    return text


@pytest.mark.parametrize('registry', [LOSS_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY, METRIC_REGISTRY],
                         ids=lambda registry: registry._name)
def test_every_registered_loss_dataset_model_and_metric_has_a_named_test(registry):
    covered = COVERED_ELSEWHERE[registry._name]
    assert ours(registry) == sorted(covered)
    for name, test_file in covered.items():
        assert name in _test_text_with_its_options(test_file), f'{test_file} never uses {name}'


def scalar_of(output, image):
    """A scalar that depends on every part of a network's output (image, list of images, field, log-likelihood)."""
    if isinstance(output, BlurField):
        return output.blur(image).mean()
    if isinstance(output, (list, tuple)):
        return sum(scalar_of(item, image) for item in output)
    return output.float().mean()


@pytest.mark.parametrize('name', sorted(TINY_ARCHS))
def test_every_arch_runs_forward_and_backward_at_tiny_size(name):
    torch.manual_seed(0)
    net = build_network(dict(TINY_ARCHS[name], type=name)).train()
    if name == 'KernelFlowPrior':
        kernels = torch.rand(8, 5, 5)
        inputs = kernels / kernels.sum(dim=(1, 2), keepdim=True)
        image = None
    else:
        image = torch.rand(2, 3, 19, 22)
        inputs = image
    output = net(inputs, SECOND_INPUT[name](image)) if name in SECOND_INPUT else net(inputs)
    if name == 'BlurKernelExtractor':
        assert output.shape == (2, 8, 1, 1)  # the code map of a 19 x 22 pair: one cell of the 32 px multiple
    elif image is not None and torch.is_tensor(output):
        assert output.shape == image.shape
    if isinstance(output, BlurField):
        assert output.blur(image).shape == image.shape
    loss = scalar_of(output, image)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [key for key, param in net.named_parameters() if param.requires_grad and param.grad is None]
    assert not missing, f'No gradient for {name}: {missing[:5]}'
