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
import os
from collections import OrderedDict

import cv2
import torch

from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.data.synthetic_blur_dataset import field_from_batch
from basicsr_blurfield.fields import draw_kernel_grid
from basicsr_blurfield.losses.kernel_loss import KernelLoss, observable_weight
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.models.base import BlurFieldBaseModel

VAL_METRICS = ('reblur_psnr', 'identity_psnr', 'kernel_error')


@MODEL_REGISTRY.register()
class BasisKernelModel(BlurFieldBaseModel):
    """Blur-field estimator trained with reblur and kernel losses.

    Options: ``network_g`` (returns a field), ``path.pretrain_network_g``; ``train.reblur_opt`` and/or
    ``train.kernel_opt``, ``train.optim_g``, ``train.scheduler``, ``train.use_grad_clip``; ``val.metrics`` with keys
    among ``reblur_psnr``, ``identity_psnr``, ``kernel_error``; ``val.kernel_grid_step`` (pixels between drawn
    kernels when ``save_img``, default 32). ``manual_seed`` also seeds the kernel loss's pixel sampling.
    """

    option_keys = {'train': ('reblur_opt', 'kernel_opt', 'observable_threshold'), 'val': ('kernel_grid_step',)}

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self.build_generator()
        metrics = (self.opt.get('val') or {}).get('metrics') or {}
        unknown = sorted(set(metrics) - set(VAL_METRICS))
        if unknown:
            raise ValueError(f'val.metrics: BasisKernelModel reports {list(VAL_METRICS)}, got unknown {unknown}')
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

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        self.gt = data['gt'].to(self.device) if 'gt' in data else None
        self.weight = data['weight'].to(self.device) if 'weight' in data else None
        has_field = 'field_basis' in data or 'field_offsets' in data
        self.gt_field = field_from_batch(data).to(self.device) if has_field else None

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

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        field = self.net_g(self.lq)
        total, loss_dict = self.compute_losses(field, current_iter)
        total.backward()
        self.clip_gradients(self.net_g.parameters())
        self.optimizer_g.step()
        self.field = field.detach()
        self.log_dict = self.reduce_loss_dict(loss_dict)

    def test(self):
        was_training = self.net_g.training
        self.net_g.eval()
        with torch.no_grad():
            self.field = self.net_g(self.lq)
        if was_training:
            self.net_g.train()

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

    def get_current_visuals(self):
        out = OrderedDict(lq=self.lq.detach().cpu())
        if self.gt is not None:
            out['gt'] = self.gt.detach().cpu()
            with torch.no_grad():
                out['result'] = self.field.blur(self.gt).detach().cpu()
        return out

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        if metrics:
            self._initialize_best_metric_results(dataset_name)
        sums, counts = {name: 0.0 for name in metrics}, {name: 0 for name in metrics}
        for index, val_data in enumerate(dataloader):
            self.feed_data(val_data)
            self.test()
            values = self.evaluate_current()
            for name in metrics:
                if name not in values:
                    raise ValueError(f'val.metrics.{name}: the validation data lacks what it needs (gt for the PSNRs, '
                                     'ground-truth fields for kernel_error)')
                sums[name] += values[name]
                counts[name] += 1
            if save_img:
                self._save_kernel_grid(val_data, index, current_iter, dataset_name)
        self.metric_results = {name: sums[name] / max(counts[name], 1) for name in metrics}
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        if metrics:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def _save_kernel_grid(self, val_data, index, current_iter, dataset_name):
        """Writes the predicted kernels drawn over the blurry image (first sample of the batch)."""
        name = os.path.splitext(os.path.basename(str(val_data['lq_path'][0]).split('#')[0]))[0] + f'_{index:04d}'
        label = current_iter if self.opt['is_train'] else self.opt['name']
        folder = name if self.opt['is_train'] else dataset_name
        path = os.path.join(self.opt['path']['visualization'], folder, f'{name}_{label}_kernels.png')
        step = int(self.opt['val'].get('kernel_grid_step', 32))
        grid = draw_kernel_grid(self.lq[0].cpu(), self.field.to('cpu'), step=step)
        imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        message = f'Validation {dataset_name}\n'
        for metric, value in self.metric_results.items():
            message += f'\t # {metric}: {value:.4f}'
            best = self.best_metric_results[dataset_name][metric]
            message += f'\tBest: {best["val"]:.4f} @ {best["iter"]} iter\n'
        get_root_logger().info(message)
        if tb_logger:
            for metric, value in self.metric_results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{metric}', value, current_iter)

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)
