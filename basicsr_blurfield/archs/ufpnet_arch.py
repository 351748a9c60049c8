"""UFPNet of Fang et al., CVPR 2023: NAFNet guided by uncertain flow-based kernel estimation (§3.3, Fig. 3).

The blurry image y goes through the kernel estimator (``kernel_extra``, eq. (5)-(6)) and the frozen flow prior
(``flow``, eq. (3)) to a per-pixel kernel map K (N, K*K, H, W); the first NAFBlock of NAFNet's encoder levels 1-3
(``kam_levels``) becomes the published "kernel block": a kernel attention module (eq. (7)) inside it,
``y = inp + beta * branch(KAM(inp, K))`` with the residual on the block's original input, the map being carried
down by learned stride-2 2x2 convs (``kernel_down``). Stage III trains it with
``L_PSNR + lambda * ||F(y) (x) K(y) - y||_1`` (eq. (8), lambda = 0.01, applied once by the deblurring model); the
estimated field is returned with ``return_field=True``.

Published GoPro model (``UFPNet_code_uncertainty_Local``, width 64, enc_blk_nums (1, 1, 1, 28)): 80,343,663
parameters, 852 state-dict entries. Our names equal the published ones except the KAM, which the original spells
``kernel_atttion`` (three t's): :func:`remap_official_keys` renames it, and so does a load pre-hook, so a released
checkpoint also loads directly with ``load_state_dict`` / BasicSR's ``pretrain_network_g``. As published,
``kernel_down`` has one conv per encoder level although only the first ``kam_levels - 1`` are used; the unused ones
are kept (frozen) so the published state dict loads strictly.

As published (and checked against the released code's outputs, ``tests/archs/test_ufpnet_golden.py``): the input
is padded to a multiple of 16 with reflection, the output is clamped to [0, 1] (``clamp_output``) and the attention
modules get the flow's raw kernels (``renormalize_kernels=False``). Differences from the published code
(DESIGN.md): test time is deterministic by default (``sample_at_test``; the released code adds the uncertainty noise
at test time, so its results depend on the seed), the returned field is projected onto kernels summing to 1, the
re-blur pairs each kernel with its own sample, and the estimator is frozen by default (``freeze_estimator``).

Reference: Fang et al., CVPR 2023, §3.3, Fig. 3, Tables 1 and 6; NAFNet (Chen et al., ECCV 2022). Written from the
papers and DESIGN.md.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
from basicsr_blurfield.archs.kernel_attention import KernelGuidedMixin
from basicsr_blurfield.archs.nafnet_arch import NAFNet
from basicsr_blurfield.archs.tlc import replace_global_pooling

__all__ = ['UFPNet', 'UFPNetLocal', 'remap_official_keys']


@ARCH_REGISTRY.register()
class UFPNet(KernelGuidedMixin, NAFNet):
    """NAFNet with the KE module (module docstring); defaults are the published GoPro configuration.

    Args:
        img_channel (int): image channels. Default: 3.
        width (int): NAFNet width. Default: 64.
        middle_blk_num (int): bottleneck NAFBlocks. Default: 1.
        enc_blk_nums (tuple): NAFBlocks per encoder level. Default: (1, 1, 1, 28).
        dec_blk_nums (tuple): NAFBlocks per decoder level. Default: (1, 1, 1, 1).
        kernel_size (int): K of the estimated kernels. Default: 19.
        kam_levels (int): encoder levels with a KAM, from the top. Default: 3.
        estimator_feat (int): width of the kernel estimator's U-Net. Default: 64.
        flow_num_block (int): flow prior blocks. Default: 5.
        flow_hidden_size (int): flow prior MLP width. Default: 25.
        sample_at_test (bool): keep the uncertainty noise at test time (published behaviour). Default: False.
        freeze_estimator (bool): keep the stage-II estimator fixed. Default: True.
        padding (str): boundary mode of the returned field. Default: 'replicate'.
        renormalize_kernels (bool): feed kernels summing to 1 to the attention modules (ours); the published network
            feeds the flow's raw output. Changes the function: released weights need False. Default: False.
        clamp_output (bool): clamp the output to [0, 1] (published). Default: True.

    Shape:
        (N, img_channel, H, W) -> (N, img_channel, H, W), any H, W; with ``return_field=True`` also a KernelField
        with kernels (N, K*K, H, W), each summing to 1.
    """

    def __init__(self,
                 img_channel: int = 3,
                 width: int = 64,
                 middle_blk_num: int = 1,
                 enc_blk_nums: tuple = (1, 1, 1, 28),
                 dec_blk_nums: tuple = (1, 1, 1, 1),
                 kernel_size: int = 19,
                 kam_levels: int = 3,
                 estimator_feat: int = 64,
                 flow_num_block: int = 5,
                 flow_hidden_size: int = 25,
                 sample_at_test: bool = False,
                 freeze_estimator: bool = True,
                 padding: str = 'replicate',
                 renormalize_kernels: bool = False,
                 clamp_output: bool = True):
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)
        if not 1 <= int(kam_levels) <= len(enc_blk_nums) or min(enc_blk_nums[:int(kam_levels)]) < 1:
            raise ValueError(f'kam_levels: expected 1..{len(enc_blk_nums)} levels that each have a NAFBlock, got '
                             f'{kam_levels} with enc_blk_nums={tuple(enc_blk_nums)}')
        sites = tuple((f'encoders.{level}.0', level, width * 2**level) for level in range(int(kam_levels)))
        self._build_kernel_guidance(sites, img_channel, kernel_size, num_kernel_down=len(enc_blk_nums),
                                    estimator_feat=estimator_feat, flow_num_block=flow_num_block,
                                    flow_hidden_size=flow_hidden_size, sample_at_test=sample_at_test,
                                    freeze_estimator=freeze_estimator, padding=padding,
                                    renormalize_kernels=renormalize_kernels, clamp_output=clamp_output)
        self.register_load_state_dict_pre_hook(_rename_official_keys)


def _rename_official_keys(module, state_dict, prefix, *args) -> None:
    """Load pre-hook: renames the published ``kernel_atttion`` entries in place, so released checkpoints load
    through BasicSR's ``load_network`` (``strict_load_g: true``) without conversion."""
    for key in [key for key in state_dict if key.startswith(prefix) and '.kernel_atttion.' in key]:
        state_dict[key.replace('.kernel_atttion.', '.kernel_attention.')] = state_dict.pop(key)


@ARCH_REGISTRY.register()
class UFPNetLocal(UFPNet):
    """UFPNet with test-time local statistics (TLC) in its NAFBlocks, as used for the published numbers.

    Args:
        img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums, kernel_size, kam_levels, estimator_feat,
            flow_num_block, flow_hidden_size, sample_at_test, freeze_estimator, padding, renormalize_kernels,
            clamp_output: as :class:`UFPNet`.
        train_size (tuple): (N, C, H_t, W_t) training crop size. Default: (1, 3, 256, 256).
        base_size (int | tuple | None): TLC window in image pixels; None is 1.5 x train size. Default: None.
        fast_imp (bool): subsampled TLC approximation. Default: False.

    Shape:
        as :class:`UFPNet`; the state dict is identical, so UFPNet checkpoints load unchanged.
    """

    def __init__(self,
                 img_channel: int = 3,
                 width: int = 64,
                 middle_blk_num: int = 1,
                 enc_blk_nums: tuple = (1, 1, 1, 28),
                 dec_blk_nums: tuple = (1, 1, 1, 1),
                 kernel_size: int = 19,
                 kam_levels: int = 3,
                 estimator_feat: int = 64,
                 flow_num_block: int = 5,
                 flow_hidden_size: int = 25,
                 sample_at_test: bool = False,
                 freeze_estimator: bool = True,
                 padding: str = 'replicate',
                 renormalize_kernels: bool = False,
                 clamp_output: bool = True,
                 train_size: tuple = (1, 3, 256, 256),
                 base_size=None,
                 fast_imp: bool = False):
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums, kernel_size, kam_levels,
                         estimator_feat, flow_num_block, flow_hidden_size, sample_at_test, freeze_estimator, padding,
                         renormalize_kernels, clamp_output)
        replace_global_pooling(self, base_size=base_size, train_size=train_size, fast_imp=fast_imp)


def remap_official_keys(state: dict) -> dict:
    """Maps a published UFPNet checkpoint (``{'params': ...}``, BasicSR layout) to our names.

    The only renaming is the KAM attribute ``kernel_atttion`` -> ``kernel_attention``; a published NAFNet
    (width 64) checkpoint maps to the NAFNet subset of UFPNet (load it with ``strict=False``), and a
    ``Flow_motion.pt`` prior (``{'model_state': ...}``) maps to :class:`KernelFlowPrior`'s names.

    Args:
        state (dict): a state dict or a checkpoint wrapping it (``params``, ``params_ema``, ``model_state``, ...).

    Returns:
        dict: parameter name -> tensor.
    """
    if isinstance(state.get('model_state'), dict):
        state = state['model_state']
    state = unwrap_state_dict(state)
    return {key.replace('.kernel_atttion.', '.kernel_attention.'): value for key, value in state.items()}
