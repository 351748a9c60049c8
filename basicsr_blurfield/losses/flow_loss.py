"""Negative log-likelihood of a normalizing flow, eq. (2) of Fang et al. (UFPNet stage I):
``L(k; theta) = -log p_Z(f_theta(k)) - log|det(d f_theta(k) / dk)|``, averaged over the kernels of a batch.

The log-likelihood itself is computed by the flow (:meth:`KernelFlowPrior.log_prob`); this loss only reduces it.

Reference: Fang et al., CVPR 2023, eq. (2). Written from the paper.
"""
import torch
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY

_REDUCTIONS = ('none', 'mean', 'sum')


@LOSS_REGISTRY.register()
class FlowNLLLoss(nn.Module):
    """``loss_weight * -log p(k)`` reduced over the batch, optionally per dimension (nats / dim).

    Args:
        loss_weight (float): multiplier. Default: 1.0.
        reduction (str): 'none', 'mean' or 'sum'. Default: 'mean'.
        per_dim (bool): divide by the number of dimensions L = K*K (nats per tap). Default: False.

    Shape:
        log_prob (P,) log-likelihoods in nats; ``num_dims`` is L. Returns a scalar, or (P,) for 'none'.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', per_dim: bool = False):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: {list(_REDUCTIONS)}')
        self.loss_weight = float(loss_weight)
        self.reduction = reduction
        self.per_dim = bool(per_dim)

    def forward(self, log_prob: torch.Tensor, num_dims: int = 1) -> torch.Tensor:
        if log_prob.dim() != 1:
            raise ValueError(f'log_prob: expected (P,), got shape {tuple(log_prob.shape)}')
        nll = -log_prob / (int(num_dims) if self.per_dim else 1)
        if self.reduction == 'mean':
            nll = nll.mean()
        elif self.reduction == 'sum':
            nll = nll.sum()
        return self.loss_weight * nll
