"""Stage II of UFPNet (Fang et al., CVPR 2023, §3.1-3.2): self-supervised uncertain kernel estimation, eq. (4).

``KernelEstimationModel`` trains ``network_g`` (a :class:`FlowKernelEstimator`, flow prior frozen) on pairs (sharp x,
blurry y) with the re-blur loss ``||blur(x, f_theta[G(y)]) - y||_1`` (``train.reblur_opt``, :class:`ReblurLoss`), no
ground-truth kernels needed. On synthetic data the recipe of ``docs/estimation.md`` adds a supervised per-pixel kernel
loss against the ground-truth field (``train.kernel_opt``, :class:`KernelLoss`, eq. (4) of Carbajal et al.), optionally
only where blur is observable (``train.observable_threshold``: pixel weights of
:func:`~basicsr_blurfield.losses.kernel_loss.observable_weight` on the sharp image; ~ weighs every pixel alike). The
prior comes from ``path.pretrain_network_flow`` (a stage-I ``net_g`` checkpoint, loaded into ``net_g.flow``), from a
full stage-II checkpoint (``path.pretrain_network_g``), or is fitted in place before training by ``train.prior_fit``
(:func:`fit_flow_prior` options; for the quickstart).

Training runs the estimator lazily (:class:`~basicsr_blurfield.archs.kernel_estimator_arch.LatentKernelField`): with
only the sampled kernel loss (``train.reblur_opt: ~`` and ``train.kernel_opt`` with ``num_samples``) a step decodes
just the sampled pixels, 5-10x faster than decoding every pixel with autograd for the re-blur loss.

Logged per step: ``l_reblur``, the batch's re-blur PSNR (``reblur_psnr``, dB) and, on synthetic data with
ground-truth fields (:class:`SyntheticBlurDataset`), the mean per-pixel kernel L1 error (``kernel_error``, in [0, 2])
on ``train.kernel_error_samples`` random pixels per image. Validation reports the same two metrics on the whole
images (deterministic estimator) and, with ``val.save_img``, writes the estimated field next to the ground truth as
a PNG (``draw_kernel_grid``) under ``visualization/``.
"""
import os
from collections import OrderedDict
from typing import Optional

import cv2
import numpy as np
import torch

from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.fields import draw_kernel_grid
from basicsr_blurfield.losses.kernel_loss import KernelLoss, constant_field, mean_kernel, observable_weight
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.models.base import FieldEstimatorModel
from basicsr_blurfield.models.flow_prior_model import fit_flow_prior

__all__ = ['KernelEstimationModel']


def _labelled(panel: np.ndarray, label: str) -> np.ndarray:
    """A white band with ``label`` above an (H, W, 3) uint8 panel."""
    band = np.full((24, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(band, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, panel], 0)


def draw_field_comparison(lq: torch.Tensor, field, gt_field=None, step: int = 16, cell: Optional[int] = None,
                          scale: int = 1, labels: tuple = ('estimate', 'ground truth')) -> np.ndarray:
    """Estimated kernels drawn over the blurry image, next to the ground-truth kernels when given (uint8 RGB).

    Args:
        lq (Tensor): (N, C, H, W); the first sample is drawn.
        field: estimated field; gt_field: optional ground truth (same H, W).
        step (int): pixels between drawn kernels. cell (int, optional): side of each kernel square (default
            ``step - 2``; smaller keeps the photo visible). scale (int): nearest-neighbour enlargement of each panel.
        labels (tuple): titles of the two panels.

    Returns:
        ndarray: (24 + H * scale, W * scale or 2 W * scale + 8, 3) uint8, each panel titled.
    """
    fields = [field] if gt_field is None else [field, gt_field]
    panels = []
    for shown, label in zip(fields, labels):
        panel = draw_kernel_grid(lq[:1], shown, step=step, cell=cell)
        if scale > 1:
            panel = np.repeat(np.repeat(panel, scale, 0), scale, 1)
        panels += [_labelled(panel, label), np.full((panel.shape[0] + 24, 8, 3), 255, np.uint8)]
    return np.concatenate(panels[:-1], axis=1)


@MODEL_REGISTRY.register()
class KernelEstimationModel(FieldEstimatorModel):
    """Self-supervised training of the per-pixel kernel estimator (stage II).

    Options: ``network_g`` (``FlowKernelEstimator``); ``path.pretrain_network_flow`` (+ ``param_key_flow``,
    ``strict_load_flow``) or ``train.prior_fit: {num_iter, batch_size, lr, pool_size, dequantize_amplitude, seed}``;
    ``train.reblur_opt`` (``ReblurLoss``; may be ~ when ``kernel_opt`` is set), optional ``train.kernel_opt`` (``KernelLoss`` against the ground-truth
    field) and ``train.observable_threshold`` (float or ~), ``train.kernel_error_samples`` (default 256),
    ``train.optim_g``,
    ``train.scheduler``, ``train.use_grad_clip``; ``val.save_img``, ``val.kernel_grid_step`` (default 16),
    ``val.validate_initial`` (the training pipeline validates the starting weights before the first step, at the
    starting iteration).
    Data: ``lq``, ``gt`` (N, C, H, W) and optional ground-truth field keys; the re-blur loss is unweighted, as in
    UFPNet's eq. (4) (a dataset's ``weight`` is not used).
    """

    option_keys = {
        'train': ('reblur_opt', 'kernel_opt', 'observable_threshold', 'prior_fit', 'kernel_error_samples'),
        'val': ('kernel_grid_step', 'kernel_grid_cell', 'png_scale'),
        'path': ('pretrain_network_flow', 'strict_load_flow', 'param_key_flow'),
    }
    REQUIRES_GT = True

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self.build_generator()
        self.kernel_error_generator = torch.Generator().manual_seed(int(self.opt.get('manual_seed') or 0))
        path_opt = self.opt['path']
        if path_opt.get('pretrain_network_g') is None:  # else build_generator loaded the estimator with its prior
            flow = self.get_bare_model(self.net_g).flow
            if path_opt.get('pretrain_network_flow') is not None:
                self.load_network(flow, path_opt['pretrain_network_flow'], path_opt.get('strict_load_flow', True),
                                  path_opt.get('param_key_flow', 'params'))
            elif self.is_train and self.opt['train'].get('prior_fit') is not None:
                losses = fit_flow_prior(flow, **self.opt['train']['prior_fit'])
                get_root_logger().info(f'Fitted the flow prior in place: {len(losses)} steps, NLL {losses[0]:.3f} -> '
                                       f'{losses[-1]:.3f} nats/tap')
            elif self.is_train:
                raise ValueError('KernelEstimationModel needs a flow prior: set path.pretrain_network_flow (stage I), '
                                 'path.pretrain_network_g (stage II) or train.prior_fit')
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        if not train_opt.get('reblur_opt') and not train_opt.get('kernel_opt'):
            raise ValueError('KernelEstimationModel needs train.reblur_opt (e.g. {type: ReblurLoss, criterion: l1}), '
                             'train.kernel_opt (KernelLoss, synthetic data) or both')
        self.cri_reblur = build_loss(train_opt['reblur_opt']).to(self.device) if train_opt.get('reblur_opt') else None
        self.cri_kernel = build_loss(train_opt['kernel_opt']).to(self.device) if train_opt.get('kernel_opt') else None
        threshold = train_opt.get('observable_threshold')
        self.observable_threshold = None if threshold is None else float(threshold)
        self.sample_generator = torch.Generator().manual_seed(int(self.opt.get('manual_seed') or 0) + 1)
        self.kernel_error_samples = int(train_opt.get('kernel_error_samples', 256))
        self.setup_optimizer_g(self.net_g)

    def kernel_error(self, field, num_samples=None) -> float:
        """Mean L1 distance between estimated and ground-truth kernels (all pixels, or a random subset drawn from
        the model's own generator, so logging it does not change the training's random stream)."""
        metric = KernelLoss(p=1, num_samples=num_samples, tile_size=4096)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # a lazy field's noise draws leave no trace
            return float(metric(field, self.gt_field, generator=self.kernel_error_generator))

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.field = self.net_g(self.lq, lazy=True)
        log, total, reblurred = OrderedDict(), 0, None
        if self.cri_reblur is not None:
            reblurred = self.field.blur(self.gt)
            log['l_reblur'] = total = self.cri_reblur.from_reblurred(reblurred, self.lq)
        if self.cri_kernel is not None:
            if self.gt_field is None:
                raise ValueError('train.kernel_opt needs ground-truth fields: expected a dataset with field_basis / '
                                 'field_offsets (SyntheticBlurDataset)')
            weight = None
            if self.observable_threshold is not None:
                weight = observable_weight(self.gt, self.field.kernel_size, self.observable_threshold)
            log['l_kernel'] = self.cri_kernel(self.field, self.gt_field, weight, current_iter, self.sample_generator)
            total = total + log['l_kernel']
        if reblurred is not None:
            log['reblur_psnr'] = torch.tensor(reblur_psnr(reblurred, self.lq))
        if self.gt_field is not None:  # before the step: the lazy field decodes with the current weights
            log['kernel_error'] = torch.tensor(self.kernel_error(self.field, self.kernel_error_samples))
        total.backward()
        self.clip_gradients(self.optimizer_g.param_groups[0]['params'])
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(log)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Re-blur PSNR and kernel error averaged over the validation images; optional field PNGs.

        The first validation of each set also logs the reference rows a per-pixel estimate must beat: the re-blur
        PSNR of the no-blur field (identity: the sharp image itself against the blurry one, ``no_blur_reblur_psnr``)
        and, with ground-truth fields, the kernel error of three one-kernel fields (:meth:`baseline_kernel_errors`).
        """
        dataset_name = dataloader.dataset.opt['name']
        totals, counts = {}, {}
        self.val_baselines = getattr(self, 'val_baselines', {})
        first_validation = dataset_name not in self.val_baselines
        gt_fields, no_blur_psnr, num_batches = [], 0.0, 0
        for index, val_data in enumerate(dataloader):
            num_batches += 1
            self.feed_data(val_data)
            self.test()
            with torch.no_grad():
                scores = {'reblur_psnr': reblur_psnr(self.field.blur(self.gt), self.lq)}
            if first_validation:
                no_blur_psnr += reblur_psnr(self.gt, self.lq)  # the no-blur field re-blurs gt into gt itself
            if self.gt_field is not None:
                scores['kernel_error'] = self.kernel_error(self.field)
                if first_validation:
                    gt_fields.append(self.gt_field.to('cpu'))
            for name, value in scores.items():
                totals[name] = totals.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
            if save_img:
                self._save_field_png(dataset_name, index, current_iter)
        self.metric_results = {name: totals[name] / counts[name] for name in totals}
        if not hasattr(self, 'best_metric_results') or dataset_name not in self.best_metric_results:
            self.best_metric_results = getattr(self, 'best_metric_results', {})
            self.best_metric_results[dataset_name] = {
                name: {'better': 'lower' if name == 'kernel_error' else 'higher',
                       'val': float('inf') if name == 'kernel_error' else float('-inf'), 'iter': -1}
                for name in self.metric_results}
        message = f'Validation {dataset_name}, iter {current_iter}:'
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
            message += f' {name} {value:.4f}'
            if tb_logger:
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', value, current_iter)
        get_root_logger().info(message)
        if first_validation and num_batches:
            kernel_errors = self.baseline_kernel_errors(gt_fields) if gt_fields else {}
            self.val_baselines[dataset_name] = {**kernel_errors, 'no_blur_reblur_psnr': no_blur_psnr / num_batches}
            kernel_rows = ', '.join(f'{name} {value:.4f}' for name, value in kernel_errors.items())
            get_root_logger().info(f'Validation {dataset_name} baselines: reblur_psnr no_blur '
                                   f'{no_blur_psnr / num_batches:.4f}' +
                                   (f'; kernel_error {kernel_rows}' if kernel_rows else ''))

    @staticmethod
    def baseline_kernel_errors(gt_fields: list) -> dict:
        """Mean kernel L1 error of uniform fields on a list of batch-1 ground-truth fields: ``dataset_mean_kernel``
        (one kernel, the mean over all the fields' pixels), ``image_mean_kernel_oracle`` (each field's own mean) and
        ``no_blur_kernel`` (the centred delta kernel: the field of a sharp image).

        Args:
            gt_fields (list): batch-1 blur fields, one kernel side K.

        Returns:
            dict: baseline name -> mean kernel L1 error (between 0 and 2).
        """
        means = [mean_kernel(field) for field in gt_fields]
        dataset_mean = torch.stack(means).mean(0)
        delta = torch.zeros_like(dataset_mean)
        delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1
        metric = KernelLoss(p=1, tile_size=4096)
        totals = {'dataset_mean_kernel': 0.0, 'image_mean_kernel_oracle': 0.0, 'no_blur_kernel': 0.0}
        with torch.no_grad():
            for field, own in zip(gt_fields, means):
                for name, kernel in (('dataset_mean_kernel', dataset_mean), ('image_mean_kernel_oracle', own),
                                     ('no_blur_kernel', delta)):
                    totals[name] += float(metric(constant_field(kernel, field.height, field.width), field))
        return {name: value / len(gt_fields) for name, value in totals.items()}

    def _save_field_png(self, dataset_name: str, index: int, current_iter) -> str:
        val_opt = self.opt['val']
        step = int(val_opt.get('kernel_grid_step', 16))
        cell = val_opt.get('kernel_grid_cell')
        panel = draw_field_comparison(self.lq, self.field, self.gt_field, step, None if cell is None else int(cell),
                                      int(val_opt.get('png_scale', 1)))
        path = os.path.join(self.opt['path']['visualization'], dataset_name, f'field_{index:03d}_{current_iter}.png')
        imwrite(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        return path
