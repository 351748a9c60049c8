"""Stage III of UFPNet (Fang et al., CVPR 2023, §3.3): kernel-guided deblurring, eq. (8).

``L_recon = L_PSNR(F(y), x) + lambda * ||F(y) (x) K(y) - y||_1`` with lambda = 0.01: the restored image F(y) is
re-blurred through the field K(y) that the network's own (frozen) estimator gives for the same sample, and compared
with the blurry input. The maths and the loop are :class:`DeblurModel`'s (``pixel_opt``, ``reblur_opt``, applied
once); this model adds loading the stage-II estimator into a kernel-guided ``network_g`` (UFPNet, MPRNetKE,
MIMOUNetKE): ``path.pretrain_network_ke`` (+ ``param_key_ke``, default ``params``) names a
:class:`FlowKernelEstimator` checkpoint whose ``kernel_extra.*`` and ``flow.*`` weights must all match. It is
skipped when ``path.pretrain_network_g`` already provides the whole network.
"""
import os

import torch

from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
from basicsr_blurfield.models.deblur_model import DeblurModel

__all__ = ['UFPNetModel', 'load_estimator_weights']

_ESTIMATOR_PREFIXES = ('kernel_extra.', 'flow.')


def load_estimator_weights(net, checkpoint: dict, param_key: str = 'params') -> int:
    """Copies a stage-II estimator's ``kernel_extra.*`` and ``flow.*`` weights into a kernel-guided network.

    Args:
        net (nn.Module): a network with ``kernel_extra`` and ``flow`` (UFPNet, MPRNetKE, MIMOUNetKE, ...).
        checkpoint (dict): a :class:`FlowKernelEstimator` checkpoint (``{param_key: state_dict}``) or state dict.
        param_key (str): wrapper key of the checkpoint. Default: 'params'.

    Returns:
        int: the number of tensors copied.

    Raises:
        KeyError: when the checkpoint lacks estimator weights the network has, or has ones it lacks.
        ValueError: when a shape differs.
    """
    state = unwrap_state_dict(checkpoint, param_key if param_key in checkpoint else None)
    state = {key: value for key, value in state.items() if key.startswith(_ESTIMATOR_PREFIXES)}
    own = {key: value for key, value in net.state_dict().items() if key.startswith(_ESTIMATOR_PREFIXES)}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(f'estimator checkpoint does not match the network: missing {missing[:5]} '
                       f'({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})')
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(f'estimator weight {key}: expected shape {tuple(own[key].shape)}, '
                             f'got {tuple(value.shape)}')
    net.load_state_dict(state, strict=False)
    return len(state)


@MODEL_REGISTRY.register()
class UFPNetModel(DeblurModel):
    """:class:`DeblurModel` for kernel-guided networks that loads the stage-II estimator (module docstring).

    Options: as :class:`DeblurModel` (``pixel_opt: {type: PSNRLoss}``, ``reblur_opt: {type: ReblurLoss,
    loss_weight: 0.01}``), plus ``path.pretrain_network_ke`` and ``path.param_key_ke``.
    """

    option_keys = {'path': ('pretrain_network_ke', 'param_key_ke')}

    def __init__(self, opt):
        super().__init__(opt)
        bare = self.get_bare_model(self.net_g)
        if not getattr(bare, 'estimates_field', False):
            raise ValueError(f'UFPNetModel needs a kernel-guided network_g (UFPNet, UFPNetLocal, MPRNetKE, '
                             f'MIMOUNetKE), got {type(bare).__name__}')
        path = self.opt['path'].get('pretrain_network_ke')
        if path is not None and self.opt['path'].get('pretrain_network_g') is None:
            if not os.path.isfile(path):
                raise FileNotFoundError(f'stage-II estimator checkpoint not found: {path!r} (check '
                                        'path.pretrain_network_ke)')
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
            count = load_estimator_weights(bare, checkpoint, self.opt['path'].get('param_key_ke', 'params'))
            get_root_logger().info(f'Loaded {count} stage-II estimator tensors from {path}')
            if hasattr(self, 'net_g_ema'):  # BasicSR's EMA averages parameters only: copy the flow's buffers too
                self.net_g_ema.load_state_dict(bare.state_dict())
