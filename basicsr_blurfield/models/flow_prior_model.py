"""Stage I of UFPNet (Fang et al., CVPR 2023, §3.1): fit the kernel flow prior by maximum likelihood, eq. (2).

``FlowPriorModel`` trains ``network_g`` (a :class:`KernelFlowPrior`) on batches ``{'kernel': (N, 1, K, K)}`` of
:class:`KernelDataset` with ``train.flow_opt`` (:class:`FlowNLLLoss`); validation reports the mean negative
log-likelihood in nats per tap (``nll``, lower is better). Optional ``train.dequantize`` adds uniform noise of that
amplitude to the kernels (renormalised) before the likelihood, which keeps the density of the many exactly-zero taps
finite. Validation scores kernels noised the same way, with noise drawn from a generator re-seeded (``manual_seed``)
at every validation, so it measures the density that training fits and every validation sees the same kernels.

:func:`fit_flow_prior` is the same fit as a short loop over a fixed pool of generated kernels, used to give the
stage-II model a prior when no stage-I checkpoint is available (the quickstart).
"""
from collections import OrderedDict

import numpy as np
import torch

from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.archs.flow_prior_arch import KernelFlowPrior
from basicsr_blurfield.fields import generators as gen
from basicsr_blurfield.fields import normalize_kernels
from basicsr_blurfield.losses.flow_loss import FlowNLLLoss
from basicsr_blurfield.models.base import BlurFieldBaseModel

__all__ = ['FlowPriorModel', 'fit_flow_prior']


def dequantize(kernels: torch.Tensor, amplitude: float, generator=None) -> torch.Tensor:
    """Adds U(0, amplitude) noise to (P, 1, K, K) / (P, K, K) kernels and renormalises each to sum 1."""
    if amplitude <= 0:
        return kernels
    noise = torch.rand(kernels.shape, generator=generator, device=kernels.device, dtype=kernels.dtype)
    return normalize_kernels(kernels + amplitude * noise, dim=(-2, -1))


def fit_flow_prior(prior: KernelFlowPrior, num_iter: int = 500, batch_size: int = 256, lr: float = 1e-3,
                   pool_size: int = 4000, dequantize_amplitude: float = 0.0, seed: int = 0) -> list:
    """Fits ``prior`` (in place) to camera-shake (80 %) and linear (20 %) kernels of its size by Adam on eq. (2).

    Args:
        prior (KernelFlowPrior): the flow; left in eval mode.
        num_iter (int): optimisation steps. Default: 500.
        batch_size (int): kernels per step. Default: 256.
        lr (float): Adam learning rate. Default: 1e-3.
        pool_size (int): kernels generated once (``generators.random_kernel``) and drawn from. Default: 4000.
        dequantize_amplitude (float): see :func:`dequantize`. Default: 0.
        seed (int): seed of the kernel pool and of the batch draws.

    Returns:
        list: the loss (nats per tap) of every step.
    """
    rng = np.random.default_rng(seed)
    size = prior.size
    kinds = rng.choice(gen.KERNEL_TYPES, size=pool_size, p=(0.8, 0.2))
    pool = torch.from_numpy(np.stack([gen.random_kernel(size, rng, str(kind)) for kind in kinds]))
    pool = pool.to(prior.base_dist_mean.device)
    generator = torch.Generator(device=pool.device).manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in prior.parameters()], lr)
    was_frozen = not any(p.requires_grad for p in prior.parameters())
    prior.requires_grad_(True)
    prior.train()
    criterion = FlowNLLLoss(per_dim=True)
    losses = []
    for _ in range(int(num_iter)):
        index = torch.randint(len(pool), (int(batch_size), ), generator=generator, device=pool.device)
        kernels = dequantize(pool[index], dequantize_amplitude, generator)
        loss = criterion(prior.log_prob(kernels), prior.num_dims)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    prior.eval()
    if was_frozen:
        prior.requires_grad_(False)
    return losses


@MODEL_REGISTRY.register()
class FlowPriorModel(BlurFieldBaseModel):
    """Maximum-likelihood training of a kernel flow prior (stage I).

    Options: ``network_g`` (``KernelFlowPrior``), ``train.flow_opt`` (default ``FlowNLLLoss``),
    ``train.dequantize`` (float, default 0), ``train.optim_g``, ``train.scheduler``, ``train.use_grad_clip``.
    Data: ``kernel`` (N, 1, K, K).
    """

    option_keys = {'train': ('flow_opt', 'dequantize')}

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self.build_generator()
        self.dequantize = float((self.opt.get('train') or {}).get('dequantize', 0.0))
        self.val_seed = int(self.opt.get('manual_seed') or 0)
        self.val_generator = None
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        self.cri_flow = build_loss(train_opt['flow_opt']) if train_opt.get('flow_opt') else FlowNLLLoss()
        self.setup_optimizer_g(self.net_g)

    def feed_data(self, data):
        self.kernel = data['kernel'].to(self.device)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        prior = self.get_bare_model(self.net_g)
        log_prob = self.net_g(dequantize(self.kernel, self.dequantize))
        l_nll = self.cri_flow(log_prob, prior.num_dims)
        l_nll.backward()
        self.clip_gradients(self.optimizer_g.param_groups[0]['params'])
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_nll=l_nll, nll_per_tap=-log_prob.mean() / prior.num_dims))

    def test(self):
        """Log-likelihood of the current kernels, dequantised like the training ones (noise from
        ``self.val_generator`` when set, so validations are reproducible)."""
        self.net_g.eval()
        with torch.no_grad():
            self.log_prob = self.net_g(dequantize(self.kernel, self.dequantize, self.val_generator))
        self.net_g.train()

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """Mean negative log-likelihood (nats per tap) of the validation kernels, logged as metric ``nll``."""
        dataset_name = dataloader.dataset.opt['name']
        self._initialize_best_metric_results(dataset_name)
        total, count = 0.0, 0
        prior = self.get_bare_model(self.net_g)
        self.val_generator = torch.Generator(device=self.device).manual_seed(self.val_seed)
        for val_data in dataloader:
            self.feed_data(val_data)
            self.test()
            total += float(-self.log_prob.sum()) / prior.num_dims
            count += self.log_prob.numel()
        self.val_generator = None
        self.metric_results = {'nll': total / max(count, 1)}
        self._update_best_metric_result(dataset_name, 'nll', self.metric_results['nll'], current_iter)
        get_root_logger().info(f'Validation {dataset_name}, iter {current_iter}: nll {self.metric_results["nll"]:.4f} '
                               'nats/tap')
        if tb_logger:
            tb_logger.add_scalar(f'metrics/{dataset_name}/nll', self.metric_results['nll'], current_iter)

    def _initialize_best_metric_results(self, dataset_name):
        """Best-``nll`` record of each validation set (lower is better), created once per set."""
        if not hasattr(self, 'best_metric_results'):
            self.best_metric_results = {}
        self.best_metric_results.setdefault(dataset_name,
                                            {'nll': {'better': 'lower', 'val': float('inf'), 'iter': -1}})

    def save(self, epoch, current_iter):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)
