"""Stage II of UFPNet (Fang et al., CVPR 2023, §3.1-3.2): self-supervised uncertain kernel estimation, eq. (4).

``KernelEstimationModel`` trains ``network_g`` (a :class:`FlowKernelEstimator`, flow prior frozen) on pairs
(sharp x, blurry y) with the re-blur loss ``||blur(x, f_theta[G(y)]) - y||_1`` (``train.reblur_opt``,
:class:`ReblurLoss`), no ground-truth kernels needed. The prior comes from ``path.pretrain_network_flow`` (a stage-I
``net_g`` checkpoint, loaded into ``net_g.flow``), from a full stage-II checkpoint (``path.pretrain_network_g``), or
is fitted in place before training by ``train.prior_fit`` (:func:`fit_flow_prior` options; for the quickstart).

Logged per step: ``l_reblur``, the batch's re-blur PSNR (``reblur_psnr``, dB) and, on synthetic data with
ground-truth fields (:class:`SyntheticBlurDataset`), the mean per-pixel kernel L1 error (``kernel_error``, in [0, 2])
on ``train.kernel_error_samples`` random pixels per image. Validation reports the same two metrics on the whole
images (deterministic estimator) and, with ``val.save_img``, writes the estimated field next to the ground truth as
a PNG (``draw_kernel_grid``) under ``visualization/``.
"""
import os
from collections import OrderedDict

import cv2
import numpy as np
import torch

from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.data.synthetic_blur_dataset import field_from_batch
from basicsr_blurfield.fields import draw_kernel_grid
from basicsr_blurfield.losses.kernel_loss import KernelLoss
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.models.base import BlurFieldBaseModel
from basicsr_blurfield.models.flow_prior_model import fit_flow_prior

__all__ = ['KernelEstimationModel']

_GT_FIELD_KEYS = ('field_basis', 'field_offsets')


def draw_field_comparison(lq: torch.Tensor, field, gt_field=None, step: int = 16) -> np.ndarray:
    """Estimated kernels drawn over the blurry image, next to the ground-truth kernels when given (uint8 RGB)."""
    panels = [draw_kernel_grid(lq[:1], field, step=step)]
    if gt_field is not None:
        panels.append(draw_kernel_grid(lq[:1], gt_field, step=step))
    return np.concatenate(panels, axis=1)


@MODEL_REGISTRY.register()
class KernelEstimationModel(BlurFieldBaseModel):
    """Self-supervised training of the per-pixel kernel estimator (stage II).

    Options: ``network_g`` (``FlowKernelEstimator``); ``path.pretrain_network_flow`` (+ ``param_key_flow``,
    ``strict_load_flow``) or ``train.prior_fit: {num_iter, batch_size, lr, pool_size, dequantize_amplitude, seed}``;
    ``train.reblur_opt`` (``ReblurLoss``), ``train.kernel_error_samples`` (default 256), ``train.optim_g``,
    ``train.scheduler``, ``train.use_grad_clip``; ``val.save_img``, ``val.kernel_grid_step`` (default 16),
    ``val.validate_initial`` (also validate the starting weights, as iteration 0, at the first validation).
    Data: ``lq``, ``gt`` (N, C, H, W) and optional ground-truth field keys; the re-blur loss is unweighted, as in
    UFPNet's eq. (4) (a dataset's ``weight`` is not used).
    """

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
        self._initial_state = None
        if self.is_train and (self.opt.get('val') or {}).get('validate_initial', False):
            self._initial_state = {k: v.clone() for k, v in self.get_bare_model(self.net_g).state_dict().items()}
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        if not train_opt.get('reblur_opt'):
            raise ValueError('KernelEstimationModel needs train.reblur_opt (e.g. {type: ReblurLoss, criterion: l1})')
        self.cri_reblur = build_loss(train_opt['reblur_opt']).to(self.device)
        self.kernel_error_samples = int(train_opt.get('kernel_error_samples', 256))
        self.setup_optimizer_g(self.net_g)

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        self.gt = data['gt'].to(self.device)
        self.gt_field = field_from_batch(data).to(self.device) if any(k in data for k in _GT_FIELD_KEYS) else None

    def kernel_error(self, field, num_samples=None) -> float:
        """Mean L1 distance between estimated and ground-truth kernels (all pixels, or a random subset drawn from
        the model's own generator, so logging it does not change the training's random stream)."""
        metric = KernelLoss(p=1, num_samples=num_samples, tile_size=4096)
        with torch.no_grad():
            return float(metric(field, self.gt_field, generator=self.kernel_error_generator))

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.field = self.net_g(self.lq)
        reblurred = self.field.blur(self.gt)
        l_reblur = self.cri_reblur.from_reblurred(reblurred, self.lq)
        l_reblur.backward()
        self.clip_gradients(self.optimizer_g.param_groups[0]['params'])
        self.optimizer_g.step()
        log = OrderedDict(l_reblur=l_reblur, reblur_psnr=torch.tensor(reblur_psnr(reblurred, self.lq)))
        if self.gt_field is not None:
            log['kernel_error'] = torch.tensor(self.kernel_error(self.field, self.kernel_error_samples))
        self.log_dict = self.reduce_loss_dict(log)

    def test(self):
        self.net_g.eval()
        with torch.no_grad():
            self.field = self.net_g(self.lq)
        self.net_g.train()

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Re-blur PSNR and kernel error averaged over the validation images; optional field PNGs.

        With ``val.validate_initial`` the first call also validates the weights the training started from, logged
        as iteration 0, so the log shows the whole learning curve.
        """
        if self._initial_state is not None:
            bare = self.get_bare_model(self.net_g)
            current = {k: v.clone() for k, v in bare.state_dict().items()}
            bare.load_state_dict(self._initial_state)
            self._initial_state = None
            self.nondist_validation(dataloader, 0, tb_logger, save_img)
            bare.load_state_dict(current)
        dataset_name = dataloader.dataset.opt['name']
        totals, counts = {}, {}
        for index, val_data in enumerate(dataloader):
            self.feed_data(val_data)
            self.test()
            with torch.no_grad():
                scores = {'reblur_psnr': reblur_psnr(self.field.blur(self.gt), self.lq)}
            if self.gt_field is not None:
                scores['kernel_error'] = self.kernel_error(self.field)
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

    def _save_field_png(self, dataset_name: str, index: int, current_iter) -> str:
        step = int(self.opt['val'].get('kernel_grid_step', 16))
        panel = draw_field_comparison(self.lq, self.field, self.gt_field, step)
        path = os.path.join(self.opt['path']['visualization'], dataset_name, f'field_{index:03d}_{current_iter}.png')
        imwrite(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        return path

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)
