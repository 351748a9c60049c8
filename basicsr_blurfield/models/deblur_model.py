"""Deblurring model: a restoration network trained with a pixel loss and, optionally, a re-blur loss through a field.

The re-blur term is eq. (8) of Fang et al. (UFPNet stage III) and §4.1.4 of Carbajal et al. (re-blur fine-tuning of a
deblurrer): ``reblur_opt.loss_weight * dist(field.blur(restored), blurry)``, where the field comes either

* from a frozen estimator ``network_k`` (any arch whose ``forward(lq)`` returns a blur field), or
* from the generator itself when it estimates one (``net_g.estimates_field = True``; then
  ``net_g(lq, return_field=True)`` returns ``(restored, field)``), as UFPNet does.

The weight is applied once (the published UFPNet code applies its 0.01 twice). Our networks take any image size
themselves (each pads inside with its published padding mode and crops back), so the model leaves them alone; for
other BasicSR archs that need sizes divisible by N, the option ``pad_to_multiple: N`` pads the input (reflection)
and crops the output back. Networks that return a list of images (MPRNet
stages, MIMO-UNet scales) get the pixel loss on every element against the ground truth resized to its size; the
final image is the largest element (the first one among equal sizes).

Subclasses add terms by overriding :meth:`DeblurModel.compute_losses` and calling ``super()``.
"""
from collections import OrderedDict
from os import path as osp

import torch
import torch.nn.functional as F
from tqdm import tqdm

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_scaled, crop_to, pad_to_multiple
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.models.base import BlurFieldBaseModel


def final_image(output):
    """The restored image of a network output: the tensor itself, or the largest image of a list (first among ties).

    Args:
        output (Tensor | list[Tensor]): (N, C, H, W) or a list of such tensors at one or several scales.

    Returns:
        Tensor: (N, C, H, W).
    """
    if torch.is_tensor(output):
        return output
    return max(output, key=lambda image: image.shape[-2] * image.shape[-1])


@MODEL_REGISTRY.register()
class DeblurModel(BlurFieldBaseModel):
    """Paired deblurring with a pixel loss, optional re-blur loss, EMA, gradient clipping and padding.

    Options: ``network_g``; ``pad_to_multiple`` (default 1: no padding by the model); optional ``network_k``
    (+ ``path.pretrain_network_k``, ``train.freeze_network_k``, default true); ``train.pixel_opt`` (e.g.
    ``PSNRLoss``), ``train.reblur_opt`` (``ReblurLoss``), ``train.ema_decay``, ``train.use_grad_clip``,
    ``train.optim_g``, ``train.scheduler``; ``val.metrics`` as in BasicSR.
    """

    option_keys = {
        '': ('pad_to_multiple', 'network_k'),
        'train': ('pixel_opt', 'reblur_opt', 'ema_decay', 'freeze_network_k'),
        'path': ('pretrain_network_k', 'strict_load_k', 'param_key_k'),
    }

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self.build_generator()
        self.net_k = None
        if 'network_k' in opt:
            frozen = not self.is_train or self.opt['train'].get('freeze_network_k', True)
            self.net_k = self.build_auxiliary_network('k', frozen=frozen)
        if self.is_train:
            self.init_training_settings()

    @property
    def size_multiple(self) -> int:
        multiple = self.opt.get('pad_to_multiple', 1)
        if not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f'pad_to_multiple: expected a positive integer, got {multiple!r}')
        return multiple

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            get_root_logger().info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            load_path = self.opt['path'].get('pretrain_network_g')
            if load_path is not None:
                self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
            else:
                self.model_ema(0)
            self.net_g_ema.eval()

        self.cri_pix = build_loss(train_opt['pixel_opt']).to(self.device) if train_opt.get('pixel_opt') else None
        self.cri_reblur = build_loss(train_opt['reblur_opt']).to(self.device) if train_opt.get('reblur_opt') else None
        if self.cri_pix is None and self.cri_reblur is None:
            raise ValueError('DeblurModel needs train.pixel_opt and/or train.reblur_opt; both are missing')
        if self.cri_reblur is not None and self.net_k is None and not self._generator_estimates_field():
            raise ValueError('train.reblur_opt needs a blur field: add network_k (a frozen field estimator) or use a '
                             'network_g that estimates one (estimates_field = True, e.g. UFPNet)')
        nets = [self.net_g] + ([self.net_k] if self.net_k is not None and not self._net_k_frozen() else [])
        self.setup_optimizer_g(*nets)

    def _net_k_frozen(self) -> bool:
        return not any(param.requires_grad for param in self.net_k.parameters())

    def _generator_estimates_field(self) -> bool:
        return bool(getattr(self.get_bare_model(self.net_g), 'estimates_field', False))

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        self.weight = data['weight'].to(self.device) if 'weight' in data else None

    def run_network(self, net, lq: torch.Tensor, with_field: bool = False):
        """Runs ``net`` on ``lq`` padded to ``pad_to_multiple``; returns (output cropped back, field or None).

        The field (when asked for) comes from ``network_k`` on the unpadded input, or from ``net`` itself; networks
        that estimate a field take any input size themselves and return a field of the input size, so they are not
        padded here.
        """
        if with_field and self.net_k is None:
            return net(lq, return_field=True)
        padded, size = pad_to_multiple(lq, self.size_multiple)
        output = net(padded)
        field = None
        if with_field:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self._net_k_frozen()):
                field = self.net_k(lq)
        if torch.is_tensor(output):
            return crop_to(output, size), field
        return crop_scaled(list(output), size, padded.shape[-2]), field

    def compute_losses(self, output, field) -> tuple:
        """Loss terms of one step. Returns (total loss, OrderedDict of named terms for the log).

        Args:
            output (Tensor | list[Tensor]): network output(s), cropped to the input size.
            field: blur field of the batch, or None when no re-blur loss is configured.
        """
        loss_dict = OrderedDict()
        total = 0
        if self.cri_pix is not None:
            outputs = output if isinstance(output, (list, tuple)) else [output]
            l_pix = 0
            for image in outputs:
                target = self.gt if image.shape[-2:] == self.gt.shape[-2:] else F.interpolate(
                    self.gt, size=image.shape[-2:], mode='bilinear', align_corners=False, antialias=True)
                l_pix = l_pix + self.cri_pix(image, target)
            loss_dict['l_pix'] = l_pix
            total = total + l_pix
        if self.cri_reblur is not None:
            l_reblur = self.cri_reblur(field, final_image(output), self.lq, self.weight)
            loss_dict['l_reblur'] = l_reblur
            total = total + l_reblur
        return total, loss_dict

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        output, field = self.run_network(self.net_g, self.lq, with_field=self.cri_reblur is not None)
        total, loss_dict = self.compute_losses(output, field)
        total.backward()
        self.clip_gradients(self.optimizer_g.param_groups[0]['params'])
        self.optimizer_g.step()
        self.output = final_image(output).detach()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            output, _ = self.run_network(net, self.lq)
        self.output = final_image(output)
        if was_training:
            net.train()

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """BasicSR's validation loop (metrics from ``val.metrics``, best-value tracking, tensorboard), saving each
        result under its dataset key (``<dataset>/<key>[_<suffix>].png`` when testing, ``<dataset>/<key>_<iter>.png``
        during training), where the key is the item's ``key`` (the sharp image's relative path, for benchmark
        layouts whose scenes reuse file names) or else the blurry file's name."""
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        if metrics:
            if not hasattr(self, 'metric_results'):
                self.metric_results = {name: 0 for name in metrics}
            self._initialize_best_metric_results(dataset_name)
            self.metric_results = {name: 0 for name in self.metric_results}
        progress = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        count = 0
        for val_data in dataloader:
            key = val_data['key'][0] if 'key' in val_data else osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            visuals = self.get_current_visuals()
            metric_data = {'img': tensor2img([visuals['result']])}
            if 'gt' in visuals:
                metric_data['img2'] = tensor2img([visuals['gt']])
                del self.gt
            del self.lq, self.output
            if save_img:
                imwrite(self._result_path(dataset_name, key, current_iter), metric_data['img'])
            for name, metric_opt in metrics.items():
                self.metric_results[name] += calculate_metric(metric_data, metric_opt)
            count += 1
            if progress is not None:
                progress.update(1)
                progress.set_description(f'Test {key}')
        if progress is not None:
            progress.close()
        if metrics:
            for name in self.metric_results:
                self.metric_results[name] /= max(count, 1)
                self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _result_path(self, dataset_name: str, key: str, current_iter: int) -> str:
        folder = osp.join(self.opt['path']['visualization'], dataset_name)
        if self.opt['is_train']:
            return osp.join(folder, f'{key}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix')
        return osp.join(folder, f'{key}_{suffix}.png' if suffix else f'{key}.png')

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        """BasicSR's validation log with the iteration it scores (``Validation <dataset>, iter <n>``)."""
        lines = [f'Validation {dataset_name}, iter {current_iter}']
        for metric, value in self.metric_results.items():
            best = self.best_metric_results[dataset_name][metric]
            lines.append(f'\t # {metric}: {value:.4f}\tBest: {best["val"]:.4f} @ {best["iter"]} iter')
        get_root_logger().info('\n'.join(lines) + '\n')
        if tb_logger:
            for metric, value in self.metric_results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{metric}', value, current_iter)

    dist_validation = SRModel.dist_validation
    get_current_visuals = SRModel.get_current_visuals
