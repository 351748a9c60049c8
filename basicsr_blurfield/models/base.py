"""Training plumbing shared by every basicsr_blurfield model (no maths of its own).

``BlurFieldBaseModel`` extends BasicSR's ``BaseModel`` with what BasicSR 1.4.2 lacks and the published deblurring
recipes use: AdamW/SGD optimizers, torch's cosine schedule (NAFNet/UFPNet ``TrueCosineAnnealingLR``), gradient-norm
clipping, frozen auxiliary networks (``network_<role>`` + ``pretrain_network_<role>``), clear errors for missing
checkpoints, and atomic checkpoint / training-state writes (temporary name, then rename), so an interrupted run never
leaves a truncated ``.pth`` or ``.state`` that ``--auto_resume`` would pick up.

``FieldEstimatorModel`` adds what the blur-field estimator models (basis kernels, motion offsets, per-pixel kernels,
the blur operator family) share: batch reading, evaluation-mode inference, the optimisation step around a model's own
``compute_losses``, the validation loop over a model's own ``evaluate_current`` figures and its logging.
"""
import logging
import os
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn

from basicsr.archs import build_network
from basicsr.models import lr_scheduler as basicsr_lr_scheduler
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr_blurfield.atomic import torch_save
from basicsr_blurfield.data.synthetic_blur_dataset import field_from_batch


def log_to_file(message: str) -> None:
    """Writes ``message`` (INFO) to the root logger's log file only, not to the console; dropped without a log file.

    For the long dumps BasicSR prints before the first step (environment, options, network structures): the console
    stays readable and the log file keeps everything.
    """
    logger = get_root_logger()
    handlers = [handler for handler in logger.handlers if isinstance(handler, logging.FileHandler)]
    if handlers:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
        for handler in handlers:
            handler.handle(record)


_OPTIMIZERS = {'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW, 'SGD': torch.optim.SGD}
_COSINE = ('TrueCosineAnnealingLR', 'CosineAnnealingLR')
_BASICSR_SCHEDULERS = {
    'MultiStepLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'MultiStepRestartLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'CosineAnnealingRestartLR': basicsr_lr_scheduler.CosineAnnealingRestartLR,
}


class BlurFieldBaseModel(BaseModel):
    """BasicSR ``BaseModel`` plus optimizers, schedulers, clipping, frozen nets and atomic saving.

    Every network built by :meth:`build_generator` or :meth:`build_auxiliary_network` is saved by :meth:`save` as
    ``net_<role>_<iter>.pth`` (with the EMA copy of ``net_g`` under ``params_ema``), which is the file BasicSR's
    resume loads for each ``network_<role>`` option, so a resumed run gets back every trained or loaded network.

    Option keys (under ``train``): ``optim_<net>: {type: Adam|AdamW|SGD, lr, ...}``, ``scheduler: {type: ...}`` with
    BasicSR's types, ``TrueCosineAnnealingLR`` / ``CosineAnnealingLR`` (``T_max``, ``eta_min``) or torch's
    ``LinearLR`` (``start_factor``, ``end_factor``, ``total_iters``; Motion-ETR's linear decay),
    ``use_grad_clip`` (bool) and ``grad_clip_norm`` (float, default 0.01 as published for NAFNet/UFPNet).

    ``option_keys`` lists the keys this class reads beyond BasicSR's; subclasses that declare their own get these
    too, and the options are checked before anything is built (:mod:`basicsr_blurfield.option_check`).
    """

    option_keys = {'train': ('use_grad_clip', 'grad_clip_norm')}

    def __init__(self, opt):
        super().__init__(opt)
        self.networks = {}  # role ('g', 'k', ...) -> network, for every network built (saved and resumed together)

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs):
        if optim_type not in _OPTIMIZERS:
            raise ValueError(f'Unsupported optimizer type: {optim_type}. Supported ones are: {list(_OPTIMIZERS)}')
        if 'betas' in kwargs:
            kwargs['betas'] = tuple(kwargs['betas'])
        return _OPTIMIZERS[optim_type](params, lr, **kwargs)

    def setup_schedulers(self):
        """Builds one scheduler per optimizer from ``train.scheduler`` (the option dict is not modified)."""
        scheduler_opt = dict(self.opt['train']['scheduler'])
        scheduler_type = scheduler_opt.pop('type')
        for optimizer in self.optimizers:
            if scheduler_type in _COSINE:
                scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **scheduler_opt)
            elif scheduler_type == 'LinearLR':
                scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, **scheduler_opt)
            elif scheduler_type in _BASICSR_SCHEDULERS:
                scheduler = _BASICSR_SCHEDULERS[scheduler_type](optimizer, **scheduler_opt)
            else:
                raise ValueError(f'Unsupported scheduler type: {scheduler_type}. Supported ones are: '
                                 f'{list(_BASICSR_SCHEDULERS) + list(_COSINE) + ["LinearLR"]}')
            self.schedulers.append(scheduler)

    def clip_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Clips the gradient norm when ``train.use_grad_clip`` is true (max norm ``train.grad_clip_norm``)."""
        train_opt = self.opt['train']
        if train_opt.get('use_grad_clip', False):
            torch.nn.utils.clip_grad_norm_(list(parameters), float(train_opt.get('grad_clip_norm', 0.01)))

    def trainable_parameters(self, *nets: nn.Module) -> list:
        """Parameters with ``requires_grad`` of the given networks; logs the frozen ones once."""
        params = []
        frozen = 0
        for net in nets:
            for param in net.parameters():
                if param.requires_grad:
                    params.append(param)
                else:
                    frozen += param.numel()
        if frozen:
            get_root_logger().info(f'{frozen:,d} frozen parameters are not optimized.')
        if not params:
            raise ValueError('No trainable parameters: every network of this model is frozen')
        return params

    def build_generator(self) -> nn.Module:
        """Builds ``network_g`` on this model's device (DDP-wrapped when distributed), logs it and loads
        ``path.pretrain_network_g`` (with ``strict_load_g``, ``param_key_g``) when given."""
        net = self.model_to_device(build_network(self.opt['network_g']))
        self.networks['g'] = net
        self.print_network(net)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(net, load_path, self.opt['path'].get('strict_load_g', True),
                              self.opt['path'].get('param_key_g', 'params'))
        return net

    def setup_optimizer_g(self, *nets: nn.Module) -> None:
        """Sets ``self.optimizer_g`` (``train.optim_g``) over the trainable parameters of ``nets``, then schedulers."""
        optim_opt = dict(self.opt['train']['optim_g'])
        self.optimizer_g = self.get_optimizer(optim_opt.pop('type'), self.trainable_parameters(*nets), **optim_opt)
        self.optimizers.append(self.optimizer_g)
        self.setup_schedulers()

    def build_auxiliary_network(self, role: str, frozen: bool = True) -> nn.Module:
        """Builds ``network_<role>``, loads ``path.pretrain_network_<role>`` and freezes it (eval mode) if asked.

        Args:
            role (str): e.g. 'k' for ``network_k`` / ``pretrain_network_k`` / ``param_key_k`` / ``strict_load_k``.
            frozen (bool): disable gradients and keep the network in eval mode.

        Returns:
            nn.Module: the network on this model's device (not wrapped in DDP when frozen).
        """
        key = f'network_{role}'
        if key not in self.opt:
            raise KeyError(f'option {key!r} is missing: add a {key}: {{type: ..., ...}} section')
        net = build_network(self.opt[key]).to(self.device)
        load_path = self.opt['path'].get(f'pretrain_network_{role}')
        if load_path is not None:
            self.load_network(net, load_path, self.opt['path'].get(f'strict_load_{role}', True),
                              self.opt['path'].get(f'param_key_{role}', 'params'))
        if frozen:
            net.requires_grad_(False)
            net.eval()
        else:
            net = self.model_to_device(net)
        self.networks[role] = net
        return net

    def print_network(self, net) -> None:
        """Logs the network's class and parameter count; its full structure goes to the log file only."""
        bare = self.get_bare_model(net)
        wrapper = f'{type(net).__name__} - ' if bare is not net else ''
        count = sum(param.numel() for param in bare.parameters())
        get_root_logger().info(f'Network: {wrapper}{type(bare).__name__}, with parameters: {count:,d}')
        log_to_file(str(bare))

    def model_ema(self, decay: float = 0.999) -> None:
        """``net_g_ema = decay * net_g_ema + (1 - decay) * net_g`` over the parameters; buffers (batch-norm
        statistics, flow normalisers) are copied, so the EMA network follows them (BasicSR averages parameters only
        and leaves the EMA copy's buffers at their initial values)."""
        net_g = self.get_bare_model(self.net_g)
        ema_params = dict(self.net_g_ema.named_parameters())
        for name, param in net_g.named_parameters():
            ema_params[name].data.mul_(decay).add_(param.data, alpha=1 - decay)
        ema_buffers = dict(self.net_g_ema.named_buffers())
        for name, buffer in net_g.named_buffers():
            ema_buffers[name].data.copy_(buffer.data)

    def save(self, epoch, current_iter):
        """Saves every network of :attr:`networks` (``net_g`` with its EMA copy when there is one) and the
        training state."""
        for role, net in self.networks.items():
            if role == 'g' and hasattr(self, 'net_g_ema'):
                self.save_network([net, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
            else:
                self.save_network(net, f'net_{role}', current_iter)
        self.save_training_state(epoch, current_iter)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        bare = self.get_bare_model(net)
        if os.path.isdir(load_path) and hasattr(bare, 'load_checkpoint_folder'):  # e.g. DMPHN's six .pkl files
            get_root_logger().info(f'Loading {type(bare).__name__} model from the folder {load_path}.')
            bare.load_checkpoint_folder(load_path, strict=strict)
            return
        if not os.path.isfile(load_path):
            from basicsr_blurfield.reference_models import REFERENCE_MODELS, reference_model_path

            if load_path not in REFERENCE_MODELS:
                raise FileNotFoundError(f'pretrained network not found: {load_path!r} (check the '
                                        f'path.pretrain_network_* option: a file, or one of the reference models '
                                        f'{sorted(REFERENCE_MODELS)})')
            load_path = reference_model_path(load_path)
        super().load_network(net, load_path, strict, param_key)

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's checkpoint layout (``{param_key: state_dict}``, ``module.`` stripped), written atomically."""
        label = 'latest' if current_iter == -1 else current_iter
        save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
        nets = net if isinstance(net, list) else [net]
        param_keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(param_keys):
            raise ValueError(f'save_network: {len(nets)} networks but {len(param_keys)} param keys')
        save_dict = {}
        for net_, key in zip(nets, param_keys):
            state_dict = OrderedDict()
            for name, param in self.get_bare_model(net_).state_dict().items():
                state_dict[name[7:] if name.startswith('module.') else name] = param.cpu()
            save_dict[key] = state_dict
        torch_save(save_dict, save_path)

    @master_only
    def save_training_state(self, epoch, current_iter):
        """BasicSR's ``<iter>.state`` (epoch, iter, optimizers, schedulers), written atomically."""
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [optimizer.state_dict() for optimizer in self.optimizers],
            'schedulers': [scheduler.state_dict() for scheduler in self.schedulers],
        }
        torch_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))


class FieldEstimatorModel(BlurFieldBaseModel):
    """Shared part of the models whose ``net_g`` maps the blurry image ``lq`` (N, C, H, W) to a blur field.

    A subclass gives its maths: ``compute_losses(field, current_iter) -> (total, OrderedDict of terms)`` and
    ``evaluate_current() -> {metric: float}`` for the current batch and ``self.field``, and lists its validation
    figures in :attr:`VAL_METRICS` (``val.metrics`` is checked against them by :meth:`check_val_metrics`). With
    ``save_img`` the validation loop calls :meth:`save_validation_visual` (a subclass draws its own picture).

    Batches (:meth:`feed_data`): ``lq``, ``gt`` (optional unless :attr:`REQUIRES_GT`), optional ``weight``
    (N, 1, H, W), and the ground-truth field (rebuilt by ``field_from_batch``) when one of :attr:`GT_FIELD_KEYS` is
    present.
    """

    VAL_METRICS = ()
    GT_FIELD_KEYS = ('field_basis', 'field_offsets')
    REQUIRES_GT = False
    MISSING_FIGURE_HINT = 'gt for the PSNRs, ground-truth fields for the field errors'

    def check_val_metrics(self) -> None:
        """Refuses ``val.metrics`` keys this model does not report (the message lists those it does)."""
        metrics = (self.opt.get('val') or {}).get('metrics') or {}
        unknown = sorted(set(metrics) - set(self.VAL_METRICS))
        if unknown:
            raise ValueError(f'val.metrics: {type(self).__name__} reports {list(self.VAL_METRICS)}, got unknown '
                             f'{unknown}')

    def feed_data(self, data):
        if self.REQUIRES_GT and 'gt' not in data:
            raise KeyError(f'{type(self).__name__} needs (sharp gt, blurry lq) pairs: the batch has no gt (keys '
                           f'{sorted(data)})')
        self.lq = data['lq'].to(self.device)
        self.gt = data['gt'].to(self.device) if 'gt' in data else None
        self.weight = data['weight'].to(self.device) if 'weight' in data else None
        has_field = any(key in data for key in self.GT_FIELD_KEYS)
        self.gt_field = field_from_batch(data).to(self.device) if has_field else None

    @contextmanager
    def evaluating(self, net: nn.Module) -> Iterator[None]:
        """Runs the block with ``net`` in eval mode and without gradients, then restores its mode."""
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            if was_training:
                net.train()

    def test(self):
        with self.evaluating(self.net_g):
            self.field = self.net_g(self.lq)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        field = self.net_g(self.lq)
        total, loss_dict = self.compute_losses(field, current_iter)
        total.backward()
        self.clip_gradients(self.net_g.parameters())
        self.optimizer_g.step()
        self.field = field.detach()
        self.log_dict = self.reduce_loss_dict(loss_dict)

    def get_current_visuals(self):
        out = OrderedDict(lq=self.lq.detach().cpu())
        if self.gt is not None:
            out['gt'] = self.gt.detach().cpu()
            with torch.no_grad():
                out['result'] = self.field.blur(self.gt).detach().cpu()
        return out

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Means over the validation batches of the ``val.metrics`` figures of :meth:`evaluate_current`."""
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        if metrics:
            self._initialize_best_metric_results(dataset_name)
        sums = {name: 0.0 for name in metrics}
        count = 0
        for index, val_data in enumerate(dataloader):
            self.feed_data(val_data)
            self.test()
            values = self.evaluate_current()
            for name in metrics:
                if name not in values:
                    raise ValueError(f'val.metrics.{name}: the validation data lacks what it needs '
                                     f'({self.MISSING_FIGURE_HINT})')
                sums[name] += values[name]
            count += 1
            if save_img:
                self.save_validation_visual(val_data, index, current_iter, dataset_name)
        self.metric_results = {name: sums[name] / max(count, 1) for name in metrics}
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
        if metrics:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def validation_visual_path(self, val_data, index: int, current_iter, dataset_name: str, suffix: str) -> str:
        """``visualization/<folder>/<name>_<label>_<suffix>.png`` of a validation batch (its first sample): the
        image name and batch index, labelled by iteration in training (one folder per image) or by the run's name in
        testing (one folder per dataset), as BasicSR's SRModel names its images."""
        name = os.path.splitext(os.path.basename(str(val_data['lq_path'][0]).split('#')[0]))[0] + f'_{index:04d}'
        label = current_iter if self.opt['is_train'] else self.opt['name']
        folder = name if self.opt['is_train'] else dataset_name
        return os.path.join(self.opt['path']['visualization'], folder, f'{name}_{label}_{suffix}.png')

    def save_validation_visual(self, val_data, index: int, current_iter, dataset_name: str) -> None:
        raise NotImplementedError(f'{type(self).__name__} draws no validation picture: set val.save_img: false')

    _log_validation_metric_values = SRModel._log_validation_metric_values
