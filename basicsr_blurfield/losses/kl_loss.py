"""KL term of the VAE variant of the encoded blur-kernel space (Tran et al., CVPR 2021, §3.1 and its released
training): ``loss_weight * reduce(mu^2 + sigma^2 - log(sigma^2 + eps) - 1)`` over the code map.

Per element this is ``2 * KL(N(mu, sigma^2) || N(0, 1))`` (exactly, for eps = 0): the published form without the
factor 1/2, used there with ``loss_weight`` 10 and a sum over every element of the batch (``reduction: sum``).
"""
import torch
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY

_REDUCTIONS = ('mean', 'sum')


@LOSS_REGISTRY.register()
class GaussianKLLoss(nn.Module):
    """Twice the KL divergence of a diagonal Gaussian code from the standard normal prior.

    Args:
        loss_weight (float): multiplier. Default: 1.0.
        reduction (str): 'sum' (published) or 'mean' over all elements. Default: 'sum'.
        eps (float): added to sigma^2 inside the log. Default: 1e-8.

    Shape:
        mu, sigma: (N, D, h, w), sigma > 0; returns a scalar.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'sum', eps: float = 1e-8):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'Unsupported reduction mode: {reduction}. Supported ones are: {list(_REDUCTIONS)}')
        self.loss_weight, self.reduction, self.eps = float(loss_weight), reduction, float(eps)

    def forward(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if sigma is None or mu.shape != sigma.shape:
            shape = None if sigma is None else tuple(sigma.shape)
            raise ValueError(f'GaussianKLLoss: expected mu and sigma of one shape (a VAE extractor), got '
                             f'{tuple(mu.shape)} and {shape}')
        variance = sigma * sigma
        terms = mu * mu + variance - torch.log(variance + self.eps) - 1
        return self.loss_weight * (terms.sum() if self.reduction == 'sum' else terms.mean())
