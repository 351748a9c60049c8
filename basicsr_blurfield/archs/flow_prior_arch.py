"""Flow-based motion-kernel prior, stage I of UFPNet (Fang et al., CVPR 2023, eq. (2)-(3)).

A RealNVP normalizing flow (Dinh et al.; masked affine coupling + batch-norm flow layers as in Papamakarios et al.'s
MAF paper, used for kernels by FKP, Liang et al. 2021) maps a blur kernel ``k`` (K x K, flattened to ``L = K*K``) to a
latent ``z`` of the standard normal base distribution ``N(0, I_L)``:

    u = logit(alpha + (1 - 2 alpha) * normalization * k)          (pre-processing, invertible on [0, 1]^L)
    z = f_theta(u): for each block, coupling y = m*u + (1-m) * (u - t(m*u)) * exp(-s(m*u)), then batch norm
    log p(k) = log N(z; 0, I) + sum log|det df/du| + log|det du/dk|                               (eq. (2))

``encode(k) = z`` and ``decode(z) = k`` are exact inverses on the open cube; ``decode`` then projects onto kernels
(non-negative, summing to 1) with :func:`basicsr_blurfield.fields.normalize_kernels`; the published code skips that
projection (``decode(z, normalize=False)`` gives its output, which the released UFPNet feeds to its attention
modules), every field we return applies it. The log-likelihood is that of the un-projected kernel vector.

Batch-norm layers use batch statistics (and update their running averages) when the module is training and the
flow is evaluated in the data-to-latent direction; the latent-to-data direction (``decode``, ``sample``) always uses
the running averages, so decoding never depends on the other samples of a batch.

The module layout (``kernel_size``, ``alpha``, ``normalization``, ``base_dist_mean``, ``base_dist_var`` buffers,
``net.{2b}`` couplings with ``mask``, ``s_net``, ``t_net``, ``net.{2b+1}`` batch norms with ``log_gamma``, ``beta``,
``running_mean``, ``running_var``) equals the published ``Flow_motion.pt`` / UFPNet ``flow.*`` layout: 194,470
parameters at K=19, 5 blocks, hidden size 25.

Reference: Fang et al., CVPR 2023, §3.1, eq. (2)-(3); Dinh et al., RealNVP; Liang et al., FKP. Written from the papers.
"""
import math
from typing import Optional

import torch
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.fields import normalize_kernels

__all__ = ['KernelFlowPrior']

_DECODE_BOUND = 1e4


def _mlp(num_dims: int, hidden_size: int, num_hidden: int, activation: type) -> nn.Sequential:
    """Linear(L, h), act, [Linear(h, h), act] * num_hidden, Linear(h, L)."""
    layers = [nn.Linear(num_dims, hidden_size), activation()]
    for _ in range(num_hidden):
        layers += [nn.Linear(hidden_size, hidden_size), activation()]
    layers.append(nn.Linear(hidden_size, num_dims))
    return nn.Sequential(*layers)


class _AffineCoupling(nn.Module):
    """Masked affine coupling: the masked half conditions a scale (Tanh MLP) and a shift (ReLU MLP) of the rest."""

    def __init__(self, num_dims: int, hidden_size: int, num_hidden: int, parity: int):
        super().__init__()
        self.register_buffer('mask', (torch.arange(num_dims) % 2 == parity).float())
        self._parity = int(parity)
        self.s_net = _mlp(num_dims, hidden_size, num_hidden, nn.Tanh)
        self.t_net = _mlp(num_dims, hidden_size, num_hidden, nn.ReLU)

    def _scale_shift(self, conditioner: torch.Tensor) -> tuple:
        free = 1 - self.mask
        return self.s_net(conditioner) * free, self.t_net(conditioner) * free

    def forward(self, u: torch.Tensor) -> tuple:
        """Data to latent. u (P, L) -> (y (P, L), log|det| (P,))."""
        masked = u * self.mask
        scale, shift = self._scale_shift(masked)
        return masked + (1 - self.mask) * (u - shift) * torch.exp(-scale), -scale.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Latent to data. y (P, L) -> u (P, L)."""
        masked = y * self.mask
        scale, shift = self._scale_shift(masked)
        return masked + (1 - self.mask) * (y * torch.exp(scale) + shift)

    def inverse_columns(self, y: torch.Tensor, inplace: bool) -> torch.Tensor:
        """:meth:`inverse` on columns, computing only what changes: y (L, P), one column per point -> u (L, P).

        The masks alternate (even / odd entries), so the conditioning half is the rows ``parity::2`` and only the
        other half is updated: ``u_F = y_F * exp(s_F(y_M)) + t_F(y_M)``, clamped to +-_DECODE_BOUND as in
        :meth:`KernelFlowPrior.decode`. The first layers of both MLPs read only the conditioning rows (one matrix
        product for both) and their last layers produce only the updated rows. ``inplace`` updates ``y`` itself.
        """
        parity = self.parity
        cond, free_rows = y[parity::2], slice(1 - parity, None, 2)
        s_layers, t_layers = list(self.s_net), list(self.t_net)
        first = torch.cat([s_layers[0].weight[:, parity::2], t_layers[0].weight[:, parity::2]])
        hidden = torch.addmm(torch.cat([s_layers[0].bias, t_layers[0].bias])[:, None], first, cond)
        width = s_layers[0].out_features
        h_s, h_t = torch.tanh(hidden[:width]), torch.relu(hidden[width:])
        for s_lin, t_lin in zip(s_layers[2:-1:2], t_layers[2:-1:2]):  # hidden-to-hidden layers
            h_s = torch.tanh(torch.addmm(s_lin.bias[:, None], s_lin.weight, h_s))
            h_t = torch.relu(torch.addmm(t_lin.bias[:, None], t_lin.weight, h_t))
        s_last, t_last = s_layers[-1], t_layers[-1]
        scale = torch.addmm(s_last.bias[free_rows, None], s_last.weight[free_rows], h_s)
        shift = torch.addmm(t_last.bias[free_rows, None], t_last.weight[free_rows], h_t)
        if inplace:
            y[free_rows].mul_(scale.exp_()).add_(shift).clamp_(-_DECODE_BOUND, _DECODE_BOUND)
            return y
        free = (y[free_rows] * torch.exp(scale) + shift).clamp(-_DECODE_BOUND, _DECODE_BOUND)
        index = torch.arange(1 - parity, y.shape[0], 2, device=y.device)
        return y.index_copy(0, index, free)

    @property
    def parity(self) -> int:
        """Which entries condition the coupling: 0 for the even ones (mask 1 at even indices), 1 for the odd ones.

        Fixed at construction (the ``mask`` buffer holds the same pattern, as do the published checkpoints); a plain
        int, so the column path also runs on meta tensors (TLC's calibration pass).
        """
        return self._parity


class _BatchNormFlow(nn.Module):
    """Invertible batch normalisation y = exp(log_gamma) * (u - mean) / sqrt(var + eps) + beta (MAF, §3.1)."""

    def __init__(self, num_dims: int, momentum: float = 0.9, eps: float = 1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.log_gamma = nn.Parameter(torch.zeros(num_dims))
        self.beta = nn.Parameter(torch.zeros(num_dims))
        self.register_buffer('running_mean', torch.zeros(num_dims))
        self.register_buffer('running_var', torch.ones(num_dims))

    def forward(self, u: torch.Tensor) -> tuple:
        """Data to latent (batch statistics while training). u (P, L) -> (y (P, L), log|det| (P,))."""
        if self.training:
            mean, var = u.mean(dim=0), u.var(dim=0)
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_(mean.detach() * (1 - self.momentum))
                self.running_var.mul_(self.momentum).add_(var.detach() * (1 - self.momentum))
        else:
            mean, var = self.running_mean, self.running_var
        y = torch.exp(self.log_gamma) * (u - mean) / torch.sqrt(var + self.eps) + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return y, log_det.expand(u.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Latent to data with the running statistics. y (P, L) -> u (P, L)."""
        scale = torch.exp(-self.log_gamma) * torch.sqrt(self.running_var + self.eps)
        return (y - self.beta) * scale + self.running_mean

    def inverse_columns(self, y: torch.Tensor, inplace: bool) -> torch.Tensor:
        """:meth:`inverse` on columns, y (L, P) -> u (L, P), clamped to +-_DECODE_BOUND; ``inplace`` updates y."""
        scale = (torch.exp(-self.log_gamma) * torch.sqrt(self.running_var + self.eps))[:, None]
        if inplace:
            return y.sub_(self.beta[:, None]).mul_(scale).add_(self.running_mean[:, None]).clamp_(
                -_DECODE_BOUND, _DECODE_BOUND)
        return ((y - self.beta[:, None]) * scale + self.running_mean[:, None]).clamp(-_DECODE_BOUND, _DECODE_BOUND)


@ARCH_REGISTRY.register()
class KernelFlowPrior(nn.Module):
    """RealNVP prior over K x K motion-blur kernels: exact log-likelihood, encode, decode and sampling.

    Args:
        kernel_size (int): K, odd. Default: 19 (published).
        num_block (int): coupling (+ batch-norm) blocks, masks alternating even/odd. Default: 5.
        hidden_size (int): width of the scale and shift MLPs. Default: 25.
        num_hidden (int): hidden-to-hidden layers of each MLP. Default: 1.
        alpha (float): logit bound, kernels are mapped into [alpha, 1 - alpha] before the logit. Default: 1e-6.
        normalization (float): kernels are multiplied by it before the logit (1 for kernels summing to 1).
            Default: 1.0.
        batch_norm (bool): add a batch-norm flow layer after each coupling. Default: True.

    Shape:
        kernels: (P, K, K), (P, 1, K, K) or (P, L) with L = K*K, in [0, 1]; latents: (P, L).
        ``forward(kernels)`` returns the log-likelihood (P,) of eq. (2) (the stage-I loss is its negative mean).
    """

    def __init__(self,
                 kernel_size: int = 19,
                 num_block: int = 5,
                 hidden_size: int = 25,
                 num_hidden: int = 1,
                 alpha: float = 1e-6,
                 normalization: float = 1.0,
                 batch_norm: bool = True):
        super().__init__()
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f'kernel_size: expected a positive odd integer, got {kernel_size}')
        if not 0 < float(alpha) < 0.5:
            raise ValueError(f'alpha: expected a value in (0, 0.5), got {alpha}')
        num_dims = int(kernel_size)**2
        self.num_dims = num_dims
        self.register_buffer('kernel_size', torch.tensor([float(kernel_size)]))
        self.register_buffer('alpha', torch.tensor([float(alpha)]))
        self.register_buffer('normalization', torch.tensor([float(normalization)]))
        self.register_buffer('base_dist_mean', torch.zeros(num_dims))
        self.register_buffer('base_dist_var', torch.ones(num_dims))
        layers = []
        for index in range(int(num_block)):
            layers.append(_AffineCoupling(num_dims, int(hidden_size), int(num_hidden), parity=1 - index % 2))
            if batch_norm:
                layers.append(_BatchNormFlow(num_dims))
        self.net = nn.ModuleList(layers)

    @property
    def size(self) -> int:
        """K, the kernel side (fixed by the layout: L = K*K; not read from the buffer, so meta tensors work)."""
        return math.isqrt(self.num_dims)

    def _flatten(self, kernels: torch.Tensor) -> torch.Tensor:
        k = self.size
        if kernels.dim() == 2 and kernels.shape[1] == k * k:
            return kernels
        if kernels.shape[-2:] == (k, k) and (kernels.dim() == 3 or (kernels.dim() == 4 and kernels.shape[1] == 1)):
            return kernels.reshape(kernels.shape[0], k * k)
        raise ValueError(f'kernels: expected (P, {k}, {k}), (P, 1, {k}, {k}) or (P, {k * k}), '
                         f'got {tuple(kernels.shape)}')

    def encode_with_log_det(self, kernels: torch.Tensor) -> tuple:
        """Kernel to latent with the log-determinant of the Jacobian dz/dk.

        Args:
            kernels (Tensor): (P, K, K), (P, 1, K, K) or (P, L), values in [0, 1].

        Returns:
            tuple: z (P, L) and log|det dz/dk| (P,).
        """
        alpha, scale = self.alpha, self.normalization
        p = alpha + (1 - 2 * alpha) * scale * self._flatten(kernels)
        u = torch.log(p) - torch.log1p(-p)
        log_det = (torch.log((1 - 2 * alpha) * scale) - torch.log(p) - torch.log1p(-p)).sum(dim=1)
        for layer in self.net:
            u, layer_log_det = layer(u)
            log_det = log_det + layer_log_det
        return u, log_det

    def encode(self, kernels: torch.Tensor) -> torch.Tensor:
        """Kernel to latent, z = f_theta^{-1}(k) of eq. (3). kernels (P, K, K) / (P, L) -> z (P, L)."""
        return self.encode_with_log_det(kernels)[0]

    def log_prob(self, kernels: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood log p(k) of eq. (2) in nats. kernels (P, K, K) / (P, L) -> (P,)."""
        z, log_det = self.encode_with_log_det(kernels)
        var = self.base_dist_var
        log_base = -0.5 * (((z - self.base_dist_mean)**2) / var + torch.log(2 * math.pi * var)).sum(dim=1)
        return log_base + log_det

    def forward(self, kernels: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each kernel, see :meth:`log_prob`. kernels (P, K, K) / (P, L) -> (P,)."""
        return self.log_prob(kernels)

    def decode(self, z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Latent to kernel, k = f_theta(z) of eq. (3), then projected onto kernels summing to 1.

        Args:
            z (Tensor): (P, L) latent codes.
            normalize (bool): apply :func:`normalize_kernels` (clamp >= 0, divide by the sum). Default: True.

        Returns:
            Tensor: (P, K, K) kernels, non-negative and summing to 1 when ``normalize``.
        """
        if z.dim() != 2 or z.shape[1] != self.num_dims:
            raise ValueError(f'z: expected (P, {self.num_dims}), got {tuple(z.shape)}')
        u = z
        for layer in reversed(self.net):
            # numerical guard, exact for every finite code that decodes to a kernel: an overflow (inf) in one
            # coupling would turn into NaN (inf * 0) in the next one's mask
            u = layer.inverse(u).clamp(-_DECODE_BOUND, _DECODE_BOUND)
        kernels = (torch.sigmoid(u) - self.alpha) / ((1 - 2 * self.alpha) * self.normalization)
        if normalize:
            kernels = normalize_kernels(kernels, dim=1)
        return kernels.reshape(-1, self.size, self.size)

    def decode_columns(self, z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """:meth:`decode` for codes stored as columns, the layout of per-pixel code maps (no transposes needed).

        Computes only the changing half of each coupling (:meth:`_AffineCoupling.inverse_columns`); equal to
        ``decode(z.T).reshape(-1, L).T`` up to float rounding, gradients included. Without autograd (no gradient
        needed for z or the flow) it works in place on one copy of z: feed it cache-sized blocks of columns.

        Args:
            z (Tensor): (L, P) latent codes, one column per point (any strides).
            normalize (bool): project each column onto the simplex (:func:`normalize_kernels`). Default: True.

        Returns:
            Tensor: (L, P) kernels, one flattened K x K kernel per column.
        """
        if z.dim() != 2 or z.shape[0] != self.num_dims:
            raise ValueError(f'z: expected ({self.num_dims}, P), got {tuple(z.shape)}')
        inplace = not (torch.is_grad_enabled() and
                       (z.requires_grad or any(p.requires_grad for p in self.parameters())))
        u = z.clone(memory_format=torch.contiguous_format) if inplace else z
        for layer in reversed(self.net):
            u = layer.inverse_columns(u, inplace)
        scale = (1 - 2 * self.alpha) * self.normalization
        if inplace:
            kernels = u.sigmoid_().sub_(self.alpha).div_(scale)
        else:
            kernels = (torch.sigmoid(u) - self.alpha) / scale
        return normalize_kernels(kernels, dim=0) if normalize else kernels

    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draws kernels from the prior: z ~ N(0, I), k = decode(z).

        Args:
            num_samples (int): P.
            generator (torch.Generator, optional): source of randomness (on the module's device).

        Returns:
            Tensor: (P, K, K) kernels, non-negative, each summing to 1.
        """
        z = torch.randn(int(num_samples), self.num_dims, generator=generator, device=self.base_dist_mean.device,
                        dtype=self.base_dist_mean.dtype)
        return self.decode(self.base_dist_mean + z * torch.sqrt(self.base_dist_var))
