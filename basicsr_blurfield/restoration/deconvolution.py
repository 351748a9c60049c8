"""Non-blind deconvolution through a blur field: Richardson-Lucy with total-variation regularisation.

With the blur operator ``A`` of any field (``field.blur``) and its exact transpose ``A^T`` (``field.adjoint``), the
multiplicative update of Richardson-Lucy with TV (Dey et al., 2006) is

    u_{k+1} = u_k * A^T(v / A u_k) / (A^T 1 - lambda * div(grad u_k / |grad u_k|_eps)),

the maximum-likelihood (Poisson) fixed point of ``v = A u`` with a TV prior of weight ``lambda``. ``A^T 1`` is 1 for a
spatially uniform kernel but not for a non-uniform field (the columns of ``A`` need not sum to 1), so it is kept.
Carbajal et al. deconvolve with their estimated field (§4.1); their released code uses this Richardson-Lucy + TV
scheme. The solver only calls the field's operators, so it works with every representation.

Reference: Carbajal et al., §4.1; Dey et al., "Richardson-Lucy algorithm with total variation regularization for 3D
confocal microscope deconvolution", 2006. Written from the papers.
"""
import torch
import torch.nn.functional as F

__all__ = ['richardson_lucy_tv', 'tv_divergence']


def tv_divergence(image: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Divergence of the normalised gradient, ``div(grad u / sqrt(|grad u|^2 + eps^2))`` (minus the TV gradient).

    Forward differences with a zero difference past the last row / column; the divergence is their exact negative
    adjoint (backward differences).

    Args:
        image (Tensor): (N, C, H, W).
        eps (float): smoothing of the gradient magnitude.

    Returns:
        Tensor: (N, C, H, W).
    """
    dx = F.pad(image[..., :, 1:] - image[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(image[..., 1:, :] - image[..., :-1, :], (0, 0, 0, 1))
    magnitude = torch.sqrt(dx * dx + dy * dy + eps * eps)
    px, py = dx / magnitude, dy / magnitude
    div_x = px - F.pad(px[..., :, :-1], (1, 0, 0, 0))
    div_y = py - F.pad(py[..., :-1, :], (0, 0, 1, 0))
    return div_x + div_y


def richardson_lucy_tv(blurry: torch.Tensor,
                       field,
                       num_iter: int = 30,
                       tv_weight: float = 2e-3,
                       eps: float = 1e-6,
                       init: torch.Tensor = None) -> torch.Tensor:
    """Restores a sharp image from a blurry one and its blur field (Richardson-Lucy + TV).

    Args:
        blurry (Tensor): (N, C, H, W) in [0, 1].
        field: blur field of the same N, H, W (any representation with ``blur`` and ``adjoint``).
        num_iter (int): iterations. Default: 30.
        tv_weight (float): lambda; 0 gives plain Richardson-Lucy. Keep ``lambda < 1/2`` so the denominator stays
            positive (it is also clamped). Default: 2e-3.
        eps (float): floor of the denominators. Default: 1e-6.
        init (Tensor, optional): (N, C, H, W) positive starting image; default the blurry image.

    Returns:
        Tensor: (N, C, H, W), non-negative (not clipped to [0, 1]); computed without autograd.
    """
    if blurry.dim() != 4:
        raise ValueError(f'blurry: expected (N, C, H, W), got {tuple(blurry.shape)}')
    if int(num_iter) < 0 or tv_weight < 0:
        raise ValueError(f'expected num_iter >= 0 and tv_weight >= 0, got {num_iter} and {tv_weight}')
    blurry = blurry.clamp_min(0)
    estimate = (blurry if init is None else init).clamp_min(eps)
    with torch.no_grad():
        column_sums = field.adjoint(torch.ones_like(blurry))
        for _ in range(int(num_iter)):
            ratio = blurry / field.blur(estimate).clamp_min(eps)
            correction = field.adjoint(ratio)
            denominator = column_sums
            if tv_weight > 0:
                denominator = denominator - tv_weight * tv_divergence(estimate)
            estimate = estimate * correction / denominator.clamp_min(eps)
    return estimate
