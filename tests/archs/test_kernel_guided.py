"""The one kernel-guidance mechanism (KE + KAM) on MPRNet and MIMO-UNet (Fang et al., Table 6)."""
import pytest
import torch
from torch import nn

from basicsr.archs import build_network
from basicsr_blurfield.archs.kernel_attention import KernelGuidedMixin
from basicsr_blurfield.fields import KernelField

VARIANTS = {
    'MPRNetKE': {'n_feat': 4, 'scale_unetfeats': 2, 'scale_orsnetfeats': 2, 'num_cab': 1, 'blur_kernel_size': 5,
                 'estimator_feat': 4},
    'MIMOUNetKE': {'num_res': 1, 'base_channel': 4, 'kernel_size': 5, 'estimator_feat': 4},
    'UFPNet': {'width': 4, 'enc_blk_nums': (1, 1, 1, 1), 'dec_blk_nums': (1, 1, 1, 1), 'kernel_size': 5,
               'estimator_feat': 4},
}
BACKBONES = {'MPRNetKE': 'MPRNet', 'MIMOUNetKE': 'MIMOUNet', 'UFPNet': 'NAFNet'}


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_every_kernel_guided_arch_runs_forward_and_backward_at_tiny_size(name):
    net = build_network(dict(VARIANTS[name], type=name)).train()
    lq = torch.rand(2, 3, 17, 22)
    output, field = net(lq, return_field=True)
    outputs = output if isinstance(output, list) else [output]
    assert isinstance(field, KernelField) and field.kernels.shape == (2, 25, 17, 22)
    assert outputs[0].shape[0] == 2 and max(o.shape[-2:] for o in outputs) == (17, 22)
    assert all(torch.isfinite(o).all() for o in outputs)
    (sum(o.mean() for o in outputs) + field.blur(lq).mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'No gradient for {name}: {missing[:5]}'


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_backbone_parameter_names_are_unchanged(name):
    backbone_name = BACKBONES[name]
    opt = {k: v for k, v in VARIANTS[name].items() if k not in ('blur_kernel_size', 'estimator_feat')}
    if name != 'MPRNetKE':
        opt.pop('kernel_size')
    backbone = build_network(dict(opt, type=backbone_name)).state_dict()
    guided = build_network(dict(VARIANTS[name], type=name)).state_dict()
    extra = set(guided) - set(backbone)
    assert set(backbone) <= set(guided)
    assert all(k.startswith(('kernel_extra.', 'flow.', 'kernel_down.')) or '.kernel_attention.' in k for k in extra)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_kernel_attention_sites_match_the_paper(name):
    net = build_network(dict(VARIANTS[name], type=name))
    sites = sorted(path for path, module in net.named_modules() if hasattr(module, 'kernel_attention_site'))
    expected = {
        'MPRNetKE': [f'stage{s}_encoder.encoder_level{level}.0' for s in (1, 2) for level in (1, 2, 3)],
        'MIMOUNetKE': ['Encoder.0.layers.0', 'Encoder.1.layers.0', 'Encoder.2.layers.0'],
        'UFPNet': ['encoders.0.0', 'encoders.1.0', 'encoders.2.0'],
    }[name]
    assert sites == sorted(expected)


def test_tiled_sites_see_the_kernel_map_of_their_own_tile():
    """MPRNet runs its stage-1 encoder on quarters: each call must get the matching quarter of the kernel map."""
    net = build_network(dict(VARIANTS['MPRNetKE'], type='MPRNetKE')).eval()
    seen = []
    kam = net.stage1_encoder.encoder_level1[0].kernel_attention
    kam.register_forward_hook(lambda module, args, out: seen.append(args[1].clone()))
    lq = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        net(lq)
        kernels, _ = net.estimate_kernels(lq, normalize=net.renormalize_kernels)
    quarters = [kernels[..., :8, :12], kernels[..., :8, 12:], kernels[..., 8:, :12], kernels[..., 8:, 12:]]
    assert len(seen) == 4
    for got, expected in zip(seen, quarters):
        assert torch.allclose(got, expected, atol=1e-6)


def test_batch_of_kernel_guided_outputs_equals_each_sample_alone():
    net = build_network(dict(VARIANTS['MIMOUNetKE'], type='MIMOUNetKE')).eval()
    lq = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        together = net(lq)[-1]
        for index in range(2):
            assert torch.allclose(net(lq[index:index + 1])[-1], together[index:index + 1], atol=1e-5)


def test_container_sites_are_rejected_with_the_fix_named():

    class _Tiny(KernelGuidedMixin, nn.Module):

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))
            self._build_kernel_guidance((('body', 0, 3), ), kernel_size=3, estimator_feat=2)

    with pytest.raises(ValueError, match="name its first block instead, e.g. 'body.0'"):
        _Tiny()



@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_the_kernel_attention_sits_inside_the_site_block_with_the_residual_on_its_input(name):
    """Released UFPNet kernel block: out = x + branch(KAM(x, K)), the residual on the block's original input x."""
    net = build_network(dict(VARIANTS[name], type=name)).eval()
    path = sorted(p for p, module in net.named_modules() if hasattr(module, 'kernel_attention_site'))[0]
    block = net.get_submodule(path)
    seen = {}
    block.kernel_attention.register_forward_hook(lambda module, args, out: seen.update(kam_args=args, kam=out))
    block.register_forward_hook(lambda module, args, out: seen.update(inp=args[0], out=out))
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 24))
        x, attended = seen['inp'], seen['kam']
        assert seen['kam_args'][0] is x
        assert torch.equal(seen['out'], block.forward(x, branch=attended))
        if name == 'UFPNet':  # NAFBlock: with beta = gamma = 0 both residuals leave the original input
            block.beta.zero_()
            block.gamma.zero_()
            assert torch.equal(block.forward(x, branch=attended), x)
        else:  # one residual: x + branch(b) = x + (block(b) - b)
            assert torch.allclose(block.forward(x, branch=attended), x + block.forward(attended) - attended,
                                  atol=1e-6)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_each_kernel_map_is_released_once_its_attention_modules_have_run(name):
    net = build_network(dict(VARIANTS[name], type=name)).eval()
    sites = [module for module in net.modules() if hasattr(module, 'kernel_attention_site')]
    deepest = max(module.kernel_attention_site[0] for module in sites)
    held = []
    for module in sites:
        if module.kernel_attention_site[0] == deepest:
            module.kernel_attention.register_forward_hook(
                lambda *_: held.append([m is not None for m in net._kernel_maps]))
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 24))
    assert held and not any(held[-1][:deepest])  # the finer maps are gone by the last call of the deepest level
