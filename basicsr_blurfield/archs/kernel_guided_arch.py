"""Kernel-guided MPRNet and MIMO-UNet: the KE module of UFPNet plugged into other encoder-decoders (Fang et al.,
CVPR 2023, §4.3 "Effectiveness of the Kernel Estimation Module", Table 6).

Each variant is its backbone with :class:`~basicsr_blurfield.archs.kernel_attention.KernelGuidedMixin` in front: the
uncertain kernel estimator + flow prior (eq. (3)-(6)) and a kernel attention module (eq. (7)) "in the front of each
encoder" level, the kernel map carried down by stride-2 2x2 convs. As in the released UFPNet's kernel block, the KAM
sits inside the level's first residual block: the block's branch reads ``KAM(x, K)`` and its residual stays on x
(``x + branch(KAM(x, K))``). These two variants are ours (no released weights); they share UFPNet's estimator and its
defaults (raw kernels into the KAM, ``renormalize_kernels`` to project them; outputs not clamped, as their
backbones). The NAFNet variant is
:class:`~basicsr_blurfield.archs.ufpnet_arch.UFPNet` itself. Backbone parameter names are unchanged, so the
published MPRNet / MIMO-UNet weights load into the backbone part by name (``strict=False``).

* ``MPRNetKE``: KAMs inside the first CAB of the three levels of the stage-1 encoder (run on the 4 image quarters,
  so each KAM gets the quarter of the kernel map) and of the stage-2 encoder (2 halves).
* ``MIMOUNetKE``: KAMs inside the first residual block of the three encoder levels (full, 1/2, 1/4 resolution).

Reference: Fang et al., CVPR 2023, §3.3 and Table 6; Zamir et al., CVPR 2021 (MPRNet); Cho et al., ICCV 2021
(MIMO-UNet). Written from the papers.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.kernel_attention import KernelGuidedMixin
from basicsr_blurfield.archs.mimounet_arch import MIMOUNet
from basicsr_blurfield.archs.mprnet_arch import MPRNet

__all__ = ['MPRNetKE', 'MIMOUNetKE']


@ARCH_REGISTRY.register()
class MPRNetKE(KernelGuidedMixin, MPRNet):
    """MPRNet with the KE module (module docstring).

    Args:
        in_c, out_c, n_feat, scale_unetfeats, scale_orsnetfeats, num_cab, kernel_size, reduction, bias, return_list:
            as :class:`~basicsr_blurfield.archs.mprnet_arch.MPRNet` (``kernel_size`` is its conv size).
        blur_kernel_size (int): K of the estimated blur kernels. Default: 19.
        estimator_feat (int): width of the kernel estimator. Default: 64.
        flow_num_block (int), flow_hidden_size (int): flow prior size. Defaults: 5, 25.
        sample_at_test (bool): uncertainty noise at test time. Default: False.
        freeze_estimator (bool): keep the stage-II estimator fixed. Default: True.
        padding (str): boundary mode of the returned field. Default: 'replicate'.
        renormalize_kernels (bool): feed kernels summing to 1 to the attention modules. Default: False.

    Shape:
        (N, in_c, H, W) -> MPRNet's outputs; with ``return_field=True`` also a KernelField (N, K*K, H, W).
    """

    def __init__(self, in_c: int = 3, out_c: int = 3, n_feat: int = 96, scale_unetfeats: int = 48,
                 scale_orsnetfeats: int = 32, num_cab: int = 8, kernel_size: int = 3, reduction: int = 4,
                 bias: bool = False, return_list: bool = True, blur_kernel_size: int = 19, estimator_feat: int = 64,
                 flow_num_block: int = 5, flow_hidden_size: int = 25, sample_at_test: bool = False,
                 freeze_estimator: bool = True, padding: str = 'replicate', renormalize_kernels: bool = False):
        super().__init__(in_c, out_c, n_feat, scale_unetfeats, scale_orsnetfeats, num_cab, kernel_size, reduction,
                         bias, return_list)
        sites = tuple((f'stage{stage}_encoder.encoder_level{level + 1}.0', level, n_feat + level * scale_unetfeats,
                       tiles) for stage, tiles in ((1, (2, 2)), (2, (2, 1))) for level in range(3))
        self._build_kernel_guidance(sites, in_c, blur_kernel_size, estimator_feat=estimator_feat,
                                    flow_num_block=flow_num_block, flow_hidden_size=flow_hidden_size,
                                    sample_at_test=sample_at_test, freeze_estimator=freeze_estimator, padding=padding,
                                    renormalize_kernels=renormalize_kernels)


@ARCH_REGISTRY.register()
class MIMOUNetKE(KernelGuidedMixin, MIMOUNet):
    """MIMO-UNet with the KE module (module docstring).

    Args:
        num_res, base_channel, img_channel, drop_rate, return_list: as
            :class:`~basicsr_blurfield.archs.mimounet_arch.MIMOUNet`.
        kernel_size (int): K of the estimated blur kernels. Default: 19.
        estimator_feat (int): width of the kernel estimator. Default: 64.
        flow_num_block (int), flow_hidden_size (int): flow prior size. Defaults: 5, 25.
        sample_at_test (bool): uncertainty noise at test time. Default: False.
        freeze_estimator (bool): keep the stage-II estimator fixed. Default: True.
        padding (str): boundary mode of the returned field. Default: 'replicate'.
        renormalize_kernels (bool): feed kernels summing to 1 to the attention modules. Default: False.

    Shape:
        (N, img_channel, H, W) -> MIMO-UNet's outputs; with ``return_field=True`` also a KernelField.
    """

    def __init__(self, num_res: int = 8, base_channel: int = 32, img_channel: int = 3, drop_rate: float = 0.,
                 return_list: bool = True, kernel_size: int = 19, estimator_feat: int = 64, flow_num_block: int = 5,
                 flow_hidden_size: int = 25, sample_at_test: bool = False, freeze_estimator: bool = True,
                 padding: str = 'replicate', renormalize_kernels: bool = False):
        super().__init__(num_res, base_channel, img_channel, drop_rate, return_list)
        sites = tuple((f'Encoder.{level}.layers.0', level, base_channel * 2**level) for level in range(3))
        self._build_kernel_guidance(sites, img_channel, kernel_size, estimator_feat=estimator_feat,
                                    flow_num_block=flow_num_block, flow_hidden_size=flow_hidden_size,
                                    sample_at_test=sample_at_test, freeze_estimator=freeze_estimator, padding=padding,
                                    renormalize_kernels=renormalize_kernels)
