"""Joint training of the kernel extractor G and the blur operator family F of Tran et al. (CVPR 2021), eq. (4):

    min over F, G of  sum_i rho(y_i, F(x_i, G(x_i, y_i)))  [+ kl_weight * sum (mu^2 + sigma^2 - log(sigma^2) - 1)]

with x = ``gt`` (sharp), y = ``lq`` (blurry) and rho the Charbonnier penalty. The published reduction is a **sum**
of ``sqrt(d^2 + 1e-6)`` over every pixel, channel and sample of the batch, which BasicSR's ``CharbonnierLoss`` gives
exactly with ``{eps: 1.0e-6, reduction: sum}`` (its eps is added to d^2 unsquared); with a sum, the gradient scale
grows with batch and crop size (Adam is invariant to that scale). The KL term (``train.kl_opt``, ``GaussianKLLoss``,
published weight 10) needs a VAE extractor (``network_g.vae: true``).

Options: ``network_g`` (``BlurKernelExtractor``), ``network_f`` (``BlurOperatorFamily``), ``share_features``
(default true: one feature extractor for G and F as published, so the pair has the published 49,205,187 parameters),
``path.pretrain_network_g`` / ``pretrain_network_f`` (our checkpoints or the authors' ``KernelWizard`` file, which
holds both; ``strict_load_g`` / ``strict_load_f``, ``param_key_g`` / ``param_key_f``), ``train.pixel_opt``,
``train.kl_opt``, ``train.optim_g`` (over G and F), ``train.scheduler``, ``train.use_grad_clip``.

Validation (keys of ``val.metrics``, any subset, each ``{better: higher}``):

* ``reblur_psnr``: PSNR of F(x, G(x, y)) (clipped to [0, 1]) against y, the kernel-retrieval reblur PSNR of the
  paper's Table 3. Ours retrieves the code with G in one pass; the paper's Table 3 optimises the code (its step B).
* ``identity_psnr``: PSNR of x against y, the baseline (no blur) that a useful operator must beat.
* ``transfer_psnr``: blur transfer against ground truth, for data with known fields (``SyntheticBlurDataset``):
  PSNR of F(x', G(x, y)) against field.blur(x') where x' is the previous validation item's sharp image.

With ``save_img``, each item writes one strip ``[y | F(x, G(x, y)) | x' | F(x', G(x, y))]`` (blurry, retrieved
reblur, previous item's sharp image, the blur transferred to it) through the atomic writer.

Reference: Tran et al., CVPR 2021, eq. (3)-(4), §3.4, Table 3. The model only wires the networks and losses.
"""
import os
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.utils import tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.archs.checkpoints import load_published_weights
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.models.base import FieldEstimatorModel

VAL_METRICS = ('reblur_psnr', 'identity_psnr', 'transfer_psnr')


class _BlurSpacePair(nn.Module):
    """G and F as one module (one DDP wrapper for the shared features): (x, y) -> (F(x, G(x, y)), mu, sigma)."""

    def __init__(self, extractor: nn.Module, operator: nn.Module):
        super().__init__()
        self.extractor, self.operator = extractor, operator

    def forward(self, sharp: torch.Tensor, blurry: torch.Tensor) -> tuple:
        code, mu, sigma = self.extractor(sharp, blurry, return_stats=True)
        return self.operator(sharp, code), mu, sigma


@MODEL_REGISTRY.register()
class BlurOperatorModel(FieldEstimatorModel):
    """Trains G (``network_g``) and F (``network_f``) jointly by eq. (4); see the module docstring for options."""

    option_keys = {'': ('network_f', 'share_features'), 'train': ('pixel_opt', 'kl_opt'),
                   'path': ('pretrain_network_f', 'strict_load_f', 'param_key_f')}
    VAL_METRICS = VAL_METRICS
    REQUIRES_GT = True

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = build_network(opt['network_g'])
        if 'network_f' not in opt:
            raise KeyError("option 'network_f' is missing: add network_f: {type: BlurOperatorFamily, ...}")
        self.net_f = build_network(opt['network_f'])
        if self.net_g.code_channels != self.net_f.code_channels:
            raise ValueError(f'network_g and network_f disagree on code_channels: {self.net_g.code_channels} vs '
                             f'{self.net_f.code_channels}')
        if opt.get('share_features', True):
            self._share_features()
        for role, net in (('g', self.net_g), ('f', self.net_f)):
            load_path = self.opt['path'].get(f'pretrain_network_{role}')
            if load_path is not None:
                if not os.path.isfile(load_path):
                    raise FileNotFoundError(f'pretrained network not found: {load_path!r} (check the '
                                            f'path.pretrain_network_{role} option)')
                load_published_weights(
                    net,
                    load_path,
                    strict=self.opt['path'].get(f'strict_load_{role}', True),
                    param_key=self.opt['path'].get(f'param_key_{role}'))
        self.net = self.model_to_device(_BlurSpacePair(self.net_g, self.net_f))
        self.print_network(self.net)
        self.check_val_metrics()
        if self.is_train:
            self.init_training_settings()

    def _share_features(self) -> None:
        shapes_g = {k: v.shape for k, v in self.net_g.features.state_dict().items()}
        shapes_f = {k: v.shape for k, v in self.net_f.features.state_dict().items()}
        if shapes_g != shapes_f:
            raise ValueError('share_features: network_g and network_f need the same num_in_ch, num_feat and '
                             'num_front_block (or set share_features: false)')
        self.net_f.features = self.net_g.features

    def init_training_settings(self):
        self.net.train()
        train_opt = self.opt['train']
        if not train_opt.get('pixel_opt'):
            raise ValueError('BlurOperatorModel needs train.pixel_opt (the paper: CharbonnierLoss, eps 1.0e-6, '
                             'reduction sum)')
        self.cri_pix = build_loss(train_opt['pixel_opt']).to(self.device)
        self.cri_kl = build_loss(train_opt['kl_opt']).to(self.device) if train_opt.get('kl_opt') else None
        if self.cri_kl is not None and not self.net_g.vae:
            raise ValueError('train.kl_opt needs a VAE extractor: set network_g.vae: true (or remove kl_opt)')
        self.setup_optimizer_g(self.net)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        reblurred, mu, sigma = self.net(self.gt, self.lq)
        loss_dict = OrderedDict(l_pix=self.cri_pix(reblurred, self.lq))
        total = loss_dict['l_pix']
        if self.cri_kl is not None:
            loss_dict['l_kl'] = self.cri_kl(mu, sigma)
            total = total + loss_dict['l_kl']
        total.backward()
        self.clip_gradients(self.optimizer_g.param_groups[0]['params'])
        self.optimizer_g.step()
        self.output = reblurred.detach()
        self.log_dict = self.reduce_loss_dict(loss_dict)

    def test(self):
        with self.evaluating(self.net):
            self.code = self.net_g(self.gt, self.lq)
            self.output = self.net_f(self.gt, self.code)

    def transfer(self, target: torch.Tensor) -> torch.Tensor:
        """F(target, code of the current pair) (N, C, H', W') for a sharp target of any size (after :meth:`test`)."""
        with self.evaluating(self.net):
            return self.net_f(target.to(self.device), self.code)

    def get_current_visuals(self):
        return OrderedDict(lq=self.lq.detach().cpu(), gt=self.gt.detach().cpu(), result=self.output.detach().cpu())

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        if metrics:
            self._initialize_best_metric_results(dataset_name)
        values = {name: [] for name in metrics}
        previous = None
        for index, val_data in enumerate(dataloader):
            self.feed_data(val_data)
            self.test()
            transferred = self.transfer(previous) if previous is not None else None
            figures = {'reblur_psnr': reblur_psnr(self.output, self.lq), 'identity_psnr': reblur_psnr(self.gt, self.lq)}
            if (transferred is not None and self.gt_field is not None and previous.shape == self.gt.shape):
                figures['transfer_psnr'] = reblur_psnr(transferred, self.gt_field.blur(previous))
            for name in metrics:
                if name in figures:
                    values[name].append(figures[name])
            if save_img:
                self._save_transfer_strip(val_data, index, current_iter, dataset_name, transferred, previous)
            previous = self.gt
        if 'transfer_psnr' in metrics and not values['transfer_psnr']:
            raise ValueError('val.metrics.transfer_psnr needs at least two validation items of one size with '
                             'ground-truth fields (SyntheticBlurDataset)')
        self.metric_results = {name: float(np.mean(values[name])) for name in metrics}
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        if metrics:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _save_transfer_strip(self, val_data, index, current_iter, dataset_name, transferred, target):
        """Writes ``[y | F(x, G(x, y)) | x' | F(x', G(x, y))]`` (the last two when there is a previous item)."""
        panels = [self.lq[:1], self.output[:1]]
        if transferred is not None:
            height = max(self.lq.shape[-2], target.shape[-2])
            panels += [target[:1], transferred[:1]]
            panels = [torch.nn.functional.pad(p, (0, 0, 0, height - p.shape[-2])) for p in panels]
        strip = tensor2img([torch.cat([p.detach().cpu() for p in panels], dim=-1)])
        key = val_data['key'][0] if 'key' in val_data else os.path.basename(str(val_data['lq_path'][0]))
        name = f'{os.path.splitext(os.path.basename(key))[0]}_{index:04d}'
        label = current_iter if self.opt['is_train'] else self.opt['name']
        imwrite(os.path.join(self.opt['path']['visualization'], dataset_name, f'{name}_{label}_transfer.png'), strip)

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_network(self.net_f, 'net_f', current_iter)
        self.save_training_state(epoch, current_iter)
