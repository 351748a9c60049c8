"""Published training losses of two deblurring backbones, for their kernel-guided variants' recipes.

* MPRNet (Zamir et al., CVPR 2021, eq. 2-4): ``L = sum_S [L_char(X_S, Y) + 0.05 * L_edge(X_S, Y)]`` over the three
  stage outputs, ``L_char = sqrt((X - Y)^2 + eps^2)`` (eps = 1e-3, averaged over pixels as the released training
  does) and ``L_edge = L_char(Lap(X), Lap(Y))``. The paper names a Laplacian operator; the released training uses the
  band-pass of a 5-tap Gaussian pyramid, ``Lap(x) = x - G * up(down(G * x))`` with ``G`` the separable
  [.05, .25, .4, .25, .05] filter (replicate borders), ``down`` keeping every second pixel and ``up`` putting those
  pixels back (times 4) on a zero grid: :class:`CharbonnierEdgeLoss` (``laplacian: 'pyramid'``, default) gives that,
  ``laplacian: 'discrete'`` the 3x3 five-point Laplacian.
* MIMO-UNet (Cho et al., ICCV 2021, eq. 3-5): ``L = sum_k [||S^_k - S_k||_1 / t_k + 0.1 * ||F(S^_k) - F(S_k)||_1 /
  t_k]`` over the three output scales, F the 2-D FFT (real and imaginary parts as two values), ``t_k`` the number of
  values (means): :class:`L1FrequencyLoss`.

``DeblurModel`` applies a pixel loss to every image of a multi-output network against the ground truth resized to its
size and sums them, which is the ``sum_S`` / ``sum_k`` of both papers; each loss here is the per-image term.
Written from the papers; the Laplacian is described from the released training's behaviour, not copied.
"""
import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import LOSS_REGISTRY

__all__ = ['CharbonnierEdgeLoss', 'L1FrequencyLoss', 'pyramid_laplacian', 'discrete_laplacian']

_GAUSS_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)


def _check_pair(name: str, pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f'{name} expects two (N, C, H, W) tensors of one shape, got {tuple(pred.shape)} and '
                         f'{tuple(target.shape)}')


def _gauss(image: torch.Tensor) -> torch.Tensor:
    channels = image.shape[1]
    taps = torch.tensor(_GAUSS_TAPS, dtype=image.dtype, device=image.device)
    kernel = (taps[:, None] * taps[None, :]).expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(image, (2, 2, 2, 2), mode='replicate'), kernel, groups=channels)


def pyramid_laplacian(image: torch.Tensor) -> torch.Tensor:
    """Band-pass of a Gaussian pyramid level: ``x - G * up(down(G * x))`` (module docstring).

    Shape: (N, C, H, W) -> (N, C, H, W), any H, W >= 3.
    """
    blurred = _gauss(image)
    upsampled = torch.zeros_like(blurred)
    upsampled[:, :, ::2, ::2] = blurred[:, :, ::2, ::2] * 4
    return image - _gauss(upsampled)


def discrete_laplacian(image: torch.Tensor) -> torch.Tensor:
    """Five-point Laplacian ``x[y-1] + x[y+1] + x[x-1] + x[x+1] - 4 x`` with replicate borders.

    Shape: (N, C, H, W) -> (N, C, H, W).
    """
    padded = F.pad(image, (1, 1, 1, 1), mode='replicate')
    return (padded[:, :, :-2, 1:-1] + padded[:, :, 2:, 1:-1] + padded[:, :, 1:-1, :-2] + padded[:, :, 1:-1, 2:] -
            4 * image)


_LAPLACIANS = {'pyramid': pyramid_laplacian, 'discrete': discrete_laplacian}


@LOSS_REGISTRY.register()
class CharbonnierEdgeLoss(nn.Module):
    """MPRNet's per-stage loss: Charbonnier + ``edge_weight`` x Charbonnier of the Laplacians.

    Args:
        loss_weight (float): multiplier of the whole term. Default: 1.0.
        edge_weight (float): lambda of the edge term. Default: 0.05 (published).
        eps (float): Charbonnier epsilon. Default: 1e-3 (published).
        laplacian (str): 'pyramid' (released training, default) or 'discrete' (five-point stencil).
        reduction (str): only 'mean' (over every value) is defined.

    Shape:
        pred, target: (N, C, H, W); returns a scalar.
    """

    def __init__(self, loss_weight: float = 1.0, edge_weight: float = 0.05, eps: float = 1e-3,
                 laplacian: str = 'pyramid', reduction: str = 'mean'):
        super().__init__()
        if reduction != 'mean':
            raise ValueError(f"Unsupported reduction mode: {reduction}. Supported ones are: ['mean']")
        if laplacian not in _LAPLACIANS:
            raise ValueError(f'laplacian: expected one of {sorted(_LAPLACIANS)}, got {laplacian!r}')
        self.loss_weight, self.edge_weight, self.eps = float(loss_weight), float(edge_weight), float(eps)
        self.laplacian = _LAPLACIANS[laplacian]

    def charbonnier(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((pred - target)**2 + self.eps**2).mean()

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight=None, **kwargs) -> torch.Tensor:
        _check_pair('CharbonnierEdgeLoss', pred, target)
        edge = self.charbonnier(self.laplacian(pred), self.laplacian(target))
        return self.loss_weight * (self.charbonnier(pred, target) + self.edge_weight * edge)


@LOSS_REGISTRY.register()
class L1FrequencyLoss(nn.Module):
    """MIMO-UNet's per-scale loss: mean L1 + ``frequency_weight`` x mean L1 between the 2-D FFTs.

    Args:
        loss_weight (float): multiplier of the whole term. Default: 1.0.
        frequency_weight (float): lambda of the frequency term. Default: 0.1 (published).
        reduction (str): only 'mean' is defined.

    Shape:
        pred, target: (N, C, H, W); returns a scalar. The FFT is over (H, W), real and imaginary parts as two values.
    """

    def __init__(self, loss_weight: float = 1.0, frequency_weight: float = 0.1, reduction: str = 'mean'):
        super().__init__()
        if reduction != 'mean':
            raise ValueError(f"Unsupported reduction mode: {reduction}. Supported ones are: ['mean']")
        self.loss_weight, self.frequency_weight = float(loss_weight), float(frequency_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight=None, **kwargs) -> torch.Tensor:
        _check_pair('L1FrequencyLoss', pred, target)
        spectrum = torch.view_as_real(torch.fft.fft2(pred.float())) - torch.view_as_real(torch.fft.fft2(target.float()))
        content = (pred - target).abs().mean()
        return self.loss_weight * (content + self.frequency_weight * spectrum.abs().mean())
