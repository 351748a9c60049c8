"""Training of the basis-kernel estimator of Carbajal et al. (§3.2-3.4): reblur loss (eq. 3) + kernel loss (eq. 4).

The network (``network_g``, e.g. :class:`~basicsr_blurfield.archs.basis_kernel_arch.BasisKernelNet`) maps the
blurry image ``lq`` to a blur field. The losses compare ``field.blur(gt)`` with ``lq`` (``train.reblur_opt``, e.g.
``ReblurLoss`` with ``criterion: l2``) and, when the batch carries its ground-truth field (``SyntheticBlurDataset``,
rebuilt with ``field_from_batch``), the per-pixel kernels with the true ones (``train.kernel_opt``, ``KernelLoss``
with its L2 -> L1 switch), both weighted per pixel by the dataset's ``weight`` (inverse region area, §3.3). With
``train.observable_threshold`` the kernel loss's weights are also multiplied by
:func:`~basicsr_blurfield.losses.kernel_loss.observable_weight` of the sharp image (loss where blur is observable).

Validation reports (keys of ``val.metrics``, any subset, each with ``better: higher|lower``):
``reblur_psnr`` (PSNR of ``field.blur(gt)`` against ``lq``), ``identity_psnr`` (the same for the identity field,
i.e. ``gt`` against ``lq``: the baseline a useful estimate must beat) and ``kernel_error`` (mean over pixels of the
L1 distance between predicted and true per-pixel kernels; needs ground-truth fields).

Reference: Carbajal et al., eq. (3)-(4), §3.4. The model only wires the network, the fields and the losses together.
"""
from collections import OrderedDict

import cv2
import torch

from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.fields import draw_kernel_grid
from basicsr_blurfield.losses.kernel_loss import KernelLoss, observable_weight
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.models.base import FieldEstimatorModel

VAL_METRICS = ('reblur_psnr', 'identity_psnr', 'kernel_error')


@MODEL_REGISTRY.register()
class BasisKernelModel(FieldEstimatorModel):
    """Blur-field estimator trained with reblur and kernel losses.

    Options: ``network_g`` (returns a field), ``path.pretrain_network_g``; ``train.reblur_opt`` and/or
    ``train.kernel_opt``, ``train.optim_g``, ``train.scheduler``, ``train.use_grad_clip``; ``val.metrics`` with keys
    among ``reblur_psnr``, ``identity_psnr``, ``kernel_error``; ``val.kernel_grid_step`` (pixels between drawn
    kernels when ``save_img``, default 32). ``manual_seed`` also seeds the kernel loss's pixel sampling.
    """

    option_keys = {'train': ('reblur_opt', 'kernel_opt', 'observable_threshold'), 'val': ('kernel_grid_step',)}
    VAL_METRICS = VAL_METRICS
    MISSING_FIGURE_HINT = 'gt for the PSNRs, ground-truth fields for kernel_error'

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self.build_generator()
        self.check_val_metrics()
        self.kernel_error = KernelLoss(p=1)
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        self.cri_reblur = build_loss(train_opt['reblur_opt']).to(self.device) if train_opt.get('reblur_opt') else None
        self.cri_kernel = build_loss(train_opt['kernel_opt']).to(self.device) if train_opt.get('kernel_opt') else None
        if self.cri_reblur is None and self.cri_kernel is None:
            raise ValueError('BasisKernelModel needs train.reblur_opt and/or train.kernel_opt; both are missing')
        self.sample_generator = torch.Generator().manual_seed(int(self.opt.get('manual_seed') or 0))
        threshold = train_opt.get('observable_threshold')
        self.observable_threshold = None if threshold is None else float(threshold)
        self.setup_optimizer_g(self.net_g)

    def compute_losses(self, field, current_iter=None) -> tuple:
        """Loss terms for a predicted field. Returns (total loss, OrderedDict of named terms for the log)."""
        loss_dict = OrderedDict()
        total = 0
        if self.cri_reblur is not None:
            if self.gt is None:
                raise ValueError('train.reblur_opt needs the sharp image: expected a dataset with gt')
            loss_dict['l_reblur'] = self.cri_reblur(field, self.gt, self.lq, self.weight)
            total = total + loss_dict['l_reblur']
        if self.cri_kernel is not None:
            if self.gt_field is None:
                raise ValueError('train.kernel_opt needs ground-truth fields: expected a dataset with field_basis / '
                                 'field_offsets (SyntheticBlurDataset)')
            weight = self.weight
            if getattr(self, 'observable_threshold', None) is not None:
                if self.gt is None:
                    raise ValueError('train.observable_threshold needs the sharp image: expected a dataset with gt')
                window = getattr(self.gt_field, 'kernel_size', None) or self.gt_field.auto_kernel_size()
                observable = observable_weight(self.gt, window, self.observable_threshold)
                weight = observable if weight is None else weight * observable
            loss_dict['l_kernel'] = self.cri_kernel(field, self.gt_field, weight, current_iter, self.sample_generator)
            total = total + loss_dict['l_kernel']
        return total, loss_dict

    def evaluate_current(self) -> dict:
        """Validation figures of the current batch and field (see the module docstring)."""
        with torch.no_grad():
            values = {}
            if self.gt is not None:
                values['reblur_psnr'] = reblur_psnr(self.field.blur(self.gt), self.lq)
                values['identity_psnr'] = reblur_psnr(self.gt, self.lq)
            if self.gt_field is not None:
                values['kernel_error'] = self.kernel_error(self.field, self.gt_field).item()
        return values

    def save_validation_visual(self, val_data, index, current_iter, dataset_name):
        """Writes the predicted kernels drawn over the blurry image (first sample of the batch)."""
        path = self.validation_visual_path(val_data, index, current_iter, dataset_name, 'kernels')
        step = int(self.opt['val'].get('kernel_grid_step', 32))
        grid = draw_kernel_grid(self.lq[0].cpu(), self.field.to('cpu'), step=step)
        imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
