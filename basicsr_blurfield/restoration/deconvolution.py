"""Non-blind deconvolution through a blur field: Richardson-Lucy + TV, and conjugate gradients on the normal equations
(gradient prior, or TV by half-quadratic minimisation).

All solvers only call the field's operators, ``A = field.blur`` and its exact transpose ``A^T = field.adjoint``, so they
work with every representation (:class:`KernelField`, :class:`BasisField`, :class:`OffsetField`) and treat the image
borders exactly as the field does (its ``padding``: the taps that read outside the image are part of ``A``).

Richardson-Lucy with TV (Dey et al., 2006), the scheme of the basis paper's released code (Carbajal et al., §4.1):

    u_{k+1} = u_k * A^T(v / A u_k) / (A^T 1 - lambda * div(grad u_k / |grad u_k|_eps)),

the maximum-likelihood (Poisson) fixed point of ``v = A u`` with a TV prior of weight ``lambda``. ``A^T 1`` is 1 for a
spatially uniform kernel but not for a non-uniform field (the columns of ``A`` need not sum to 1), so it is kept.

Conjugate gradients (:func:`deconvolve_cg`), the MAP estimate under Gaussian noise with a quadratic gradient prior
(``prior='gradient'``):

    (A^T A + lambda D^T D) u = A^T v,

``D`` the forward differences of :func:`image_gradient` (zero past the last row / column, so ``D^T D`` is the Neumann
Laplacian). With ``prior='tv'`` it minimises ``1/2 ||A u - v||^2 + lambda sum_p sqrt(|D u|_p^2 + eps^2)`` (smoothed
isotropic TV) by half-quadratic minimisation in its multiplicative form (Geman and Reynolds, 1992; the lagged
diffusivity fixed point of Vogel and Oman, 1996): every round freezes the weights ``w_p = 1 / sqrt(|D u_p|^2 + eps^2)``
of the current image and solves the weighted normal equations

    (A^T A + lambda D^T W D) u = A^T v

by a few warm-started CG steps. Both priors keep the operator symmetric positive definite, so CG applies. The solver
starts from the blurry image with the residual ``A^T (v - A u_0) - D^T W D u_0`` (one blur and one adjoint) and carries
it from round to round (a new ``W`` changes only the prior term), so every CG step costs one blur and one adjoint, like
a Richardson-Lucy iteration. With ``precondition`` it runs preconditioned CG: ``'circulant'`` is the circulant
approximation of the operator (T. Chan, 1988), the mean power spectrum of the field's kernels at a few pixels plus
``mu`` times the periodic Laplacian, inverted by one FFT pair per channel and step (:func:`circulant_preconditioner`);
``'mixture'`` (basis fields, the default of ``precondition=True`` for them) inverts each basis kernel on its own,
weighted by the square roots of its mixing map, on the channel mean (:func:`mixture_preconditioner`), which fits
region-wise fields.

Reference: Carbajal et al., §4.1; Dey et al., "Richardson-Lucy algorithm with total variation regularization for 3D
confocal microscope deconvolution", 2006; Hestenes and Stiefel, 1952 (conjugate gradients); Geman and Reynolds,
"Constrained restoration and the recovery of discontinuities", TPAMI 1992; Vogel and Oman, "Iterative methods for total
variation denoising", SIAM J. Sci. Comput. 1996; T. Chan, "An optimal circulant preconditioner for Toeplitz systems",
SIAM J. Sci. Stat. Comput. 1988. Written from the papers.
"""
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from basicsr_blurfield.fields import BasisField

__all__ = [
    'PRECONDITIONERS', 'PRECONDITIONER_SCALE', 'PRIORS', 'check_problem', 'circulant_preconditioner',
    'conjugate_gradient', 'deconvolve_cg', 'image_gradient', 'image_gradient_adjoint', 'mixture_preconditioner',
    'richardson_lucy_tv', 'tv_divergence', 'weighted_laplacian'
]

PRIORS = ('gradient', 'tv')
PRECONDITIONERS = ('circulant', 'mixture')
# mu of the TV rounds' preconditioner over their mean weight, tuned on bundled photos (bench_deconvolution.py)
PRECONDITIONER_SCALE = 3.0


def tv_divergence(image: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Divergence of the normalised gradient, ``div(grad u / sqrt(|grad u|^2 + eps^2))`` (minus the TV gradient).

    Forward differences :func:`image_gradient` (zero past the last row / column); the divergence is their exact
    negative adjoint, ``-D^T`` (backward differences).

    Args:
        image (Tensor): (N, C, H, W).
        eps (float): smoothing of the gradient magnitude.

    Returns:
        Tensor: (N, C, H, W).
    """
    grad = image_gradient(image)
    return -image_gradient_adjoint(grad / torch.sqrt(grad.square().sum(2, keepdim=True) + eps * eps))


def check_problem(blurry: torch.Tensor, field) -> None:
    """Checks that ``blurry`` (N, C, H, W) and ``field`` describe one deconvolution problem.

    Raises:
        TypeError: ``field`` has no ``blur`` / ``adjoint``, or its dtype differs from the image's.
        ValueError: ``blurry`` is not 4-D, or its N, H, W differ from the field's.
    """
    if not isinstance(blurry, torch.Tensor) or blurry.dim() != 4:
        shape = tuple(blurry.shape) if isinstance(blurry, torch.Tensor) else type(blurry).__name__
        raise ValueError(f'blurry: expected (N, C, H, W), got {shape}')
    if not (callable(getattr(field, 'blur', None)) and callable(getattr(field, 'adjoint', None))):
        raise TypeError(f'field: expected a blur field with blur and adjoint (KernelField, BasisField, OffsetField), '
                        f'got {type(field).__name__}')
    size = (field.batch, field.height, field.width)
    if (blurry.shape[0], ) + tuple(blurry.shape[2:]) != size:
        raise ValueError(f'blurry: the field is for N, H, W = {size}, got an image of shape {tuple(blurry.shape)}; '
                         'estimate the field on this image, or resize the image to the field')
    if blurry.dtype != field.dtype:
        raise TypeError(f'blurry: expected dtype {field.dtype} like the field, got {blurry.dtype} '
                        '(convert one of them with .to(dtype))')


def richardson_lucy_tv(blurry: torch.Tensor,
                       field,
                       num_iter: int = 30,
                       tv_weight: float = 2e-3,
                       eps: float = 1e-6,
                       init: torch.Tensor = None,
                       clip: bool = True) -> torch.Tensor:
    """Restores a sharp image from a blurry one and its blur field (Richardson-Lucy + TV).

    Args:
        blurry (Tensor): (N, C, H, W) in [0, 1].
        field: blur field of the same N, H, W and dtype (any representation with ``blur`` and ``adjoint``).
        num_iter (int): iterations. Default: 30.
        tv_weight (float): lambda; 0 gives plain Richardson-Lucy. Keep ``lambda < 1/2`` so the denominator stays
            positive (it is also clamped). Default: 2e-3.
        eps (float): floor of the denominators. Default: 1e-6.
        init (Tensor, optional): (N, C, H, W) positive starting image; default the blurry image.
        clip (bool): clip the result to [0, 1] (the iterates themselves are only kept positive). Default: True.

    Returns:
        Tensor: (N, C, H, W), in [0, 1] when ``clip`` (else non-negative); computed without autograd.
    """
    check_problem(blurry, field)
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
    return estimate.clamp(0, 1) if clip else estimate


def image_gradient(image: torch.Tensor) -> torch.Tensor:
    """Forward differences ``D u`` with a zero difference past the last row / column (Neumann boundary).

    Shape: image (N, C, H, W) -> (N, C, 2, H, W) as (d/dx, d/dy).
    """
    dx = F.pad(image[..., :, 1:] - image[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(image[..., 1:, :] - image[..., :-1, :], (0, 0, 0, 1))
    return torch.stack((dx, dy), dim=2)


def image_gradient_adjoint(grad: torch.Tensor) -> torch.Tensor:
    """Exact transpose ``D^T`` of :func:`image_gradient` (minus the backward-difference divergence).

    Shape: grad (N, C, 2, H, W) -> (N, C, H, W).
    """
    px, py = grad[:, :, 0, :, :-1], grad[:, :, 1, :-1, :]
    out_x = F.pad(px, (1, 0, 0, 0)) - F.pad(px, (0, 1, 0, 0))
    out_y = F.pad(py, (0, 0, 1, 0)) - F.pad(py, (0, 0, 0, 1))
    return out_x + out_y


def weighted_laplacian(image: torch.Tensor, weight) -> torch.Tensor:
    """``D^T (weight * D u)`` without the (N, C, 2, H, W) gradient tensor, equal to
    ``image_gradient_adjoint(weight * image_gradient(image))``.

    Args:
        image (Tensor): (N, C, H, W).
        weight (float or Tensor): a float, or (N, C, 1, H, W) / (N, 1, 1, H, W) weights of both differences at a pixel.

    Returns:
        Tensor: (N, C, H, W).
    """
    if isinstance(weight, torch.Tensor):
        weight = weight[:, :, 0]
        flux_x = (image[..., :, 1:] - image[..., :, :-1]).mul_(weight[..., :, :-1])
        flux_y = (image[..., 1:, :] - image[..., :-1, :]).mul_(weight[..., :-1, :])
    else:
        flux_x = (image[..., :, 1:] - image[..., :, :-1]).mul_(weight)
        flux_y = (image[..., 1:, :] - image[..., :-1, :]).mul_(weight)
    out = torch.zeros_like(image)
    out[..., :, :-1] -= flux_x
    out[..., :, 1:] += flux_x
    out[..., :-1, :] -= flux_y
    out[..., 1:, :] += flux_y
    return out


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner products. Shape: (N, ...) x (N, ...) -> (N, 1, ..., 1) broadcastable against a."""
    count = a.shape[0]
    return torch.bmm(a.reshape(count, 1, -1), b.reshape(count, -1, 1)).view((-1, ) + (1, ) * (a.dim() - 1))


def conjugate_gradient(
    operator: Callable[[torch.Tensor], torch.Tensor],
    rhs: Optional[torch.Tensor],
    init: Optional[torch.Tensor] = None,
    max_iter: int = 50,
    tol: float = 1e-4,
    residual: Optional[torch.Tensor] = None,
    preconditioner: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
) -> Tuple[torch.Tensor, int, float, torch.Tensor]:
    """Solves ``operator(x) = rhs`` for a symmetric positive-definite linear ``operator``, one problem per sample.

    Every sample of the batch has its own step sizes (the samples are independent systems). Stops when every sample's
    relative residual ``||rhs - operator(x)|| / ||rhs||`` is below ``tol`` or after ``max_iter`` steps; with ``rhs``
    None (the caller passes ``init`` and its ``residual`` instead) when the residual's relative decrease
    ``||r|| / ||residual||`` is. Started from the blurry image, the first steps restore the strong (low-frequency)
    components first: stopping early also regularises. One operator application per step (plus one for the first
    residual unless it is given).

    Args:
        operator (callable): (N, ...) -> (N, ...), linear, symmetric positive definite per sample.
        rhs (Tensor, optional): (N, ...) right-hand side; None when ``init`` and ``residual`` are given.
        init (Tensor, optional): (N, ...) starting point; default zeros.
        max_iter (int): most steps. Default: 50.
        tol (float): relative-residual stopping tolerance. Default: 1e-4.
        residual (Tensor, optional): (N, ...) ``rhs - operator(init)`` when the caller already has it.
        preconditioner (callable, optional): (N, ...) -> (N, ...), ``M^-1`` of a symmetric positive-definite ``M``
            close to ``operator`` (preconditioned CG); default none.

    Returns:
        tuple: the solution (N, ...), the number of steps run, the largest relative residual reached and the final
        residual (N, ...) (recurrence-updated, equal to ``rhs - operator(x)`` up to rounding).
    """
    if int(max_iter) < 0 or not tol >= 0:
        raise ValueError(f'expected max_iter >= 0 and tol >= 0, got {max_iter} and {tol}')
    if rhs is None and (init is None or residual is None):
        raise ValueError('conjugate_gradient: without rhs, pass init and its residual rhs - operator(init)')
    x = torch.zeros_like(rhs) if init is None else init.clone()
    if residual is None:
        residual = rhs - operator(x) if init is not None else rhs.clone()
    else:
        residual = residual.clone()
    tiny = torch.finfo(x.dtype).tiny
    reference = residual if rhs is None else rhs
    rhs_norm = _batch_dot(reference, reference).sqrt().clamp_min(tiny)
    precondition = (lambda r: r) if preconditioner is None else preconditioner
    preconditioned = precondition(residual)
    direction = preconditioned.clone()
    rho = _batch_dot(residual, preconditioned)
    relative = float((_batch_dot(residual, residual).sqrt() / rhs_norm).max())
    steps = 0
    while steps < int(max_iter) and relative > tol:
        product = operator(direction)
        curvature = _batch_dot(direction, product)
        alpha = torch.where(curvature > 0, rho / curvature.clamp_min(tiny), 0)
        x.addcmul_(alpha.expand_as(x), direction)
        residual.addcmul_(alpha.expand_as(residual), product, value=-1)
        preconditioned = precondition(residual)
        rho_next = _batch_dot(residual, preconditioned)
        direction.mul_(torch.where(rho > 0, rho_next / rho.clamp_min(tiny), 0)).add_(preconditioned)
        rho = rho_next
        steps += 1
        relative = float((_batch_dot(residual, residual).sqrt() / rhs_norm).max())
    return x, steps, relative, residual


def circulant_preconditioner(field, num_points: int = 4) -> Callable[[torch.Tensor], Callable]:
    """``M^-1`` of the circulant (FFT-diagonal) approximation of ``A^T A + mu D^T D`` (T. Chan, 1988), for any ``mu``.

    ``A^T A`` is approximated by the convolution whose spectrum is the mean power spectrum ``mean_p |k_p^|^2`` of the
    field's kernels at a ``num_points x num_points`` grid of pixels (per sample), ``D^T D`` by the periodic Laplacian
    ``L^ = 4 sin^2(pi f_y) + 4 sin^2(pi f_x)``. Both are symmetric positive semi-definite and their sum is definite (the
    kernels sum to 1), so ``M^-1 v = IFFT(FFT(v) / (mean_p |k_p^|^2 + mu L^))`` is symmetric positive definite. An
    :class:`OffsetField` whose trajectories reach past the image is splatted into the largest odd square that fits.

    Args:
        field: blur field with ``kernels_at`` (KernelField, BasisField, OffsetField).
        num_points (int): grid side of the sampled kernels. Default: 4.

    Returns:
        callable: ``mu`` (N,) tensor (> 0) -> ``M^-1``, a callable (N, C, H, W) -> (N, C, H, W).
    """
    height, width, device = field.height, field.width, field.device
    rows = torch.linspace(0, height - 1, num_points, device=device).round().long()
    cols = torch.linspace(0, width - 1, num_points, device=device).round().long()
    grid = torch.stack(torch.meshgrid(rows, cols, indexing='ij'), -1).reshape(-1, 2)
    samples = torch.arange(field.batch, device=device).repeat_interleave(len(grid))[:, None]
    points = torch.cat([samples, grid.repeat(field.batch, 1)], 1)
    if callable(getattr(field, 'auto_kernel_size', None)):  # offset field: splat into at most the image's odd square
        largest = min(height, width) - 1 + min(height, width) % 2
        kernels = field.kernels_at(points, kernel_size=min(field.auto_kernel_size(), largest))
    else:
        kernels = field.kernels_at(points)
    power = torch.fft.rfft2(kernels, s=(height, width)).abs().square()
    power = power.view(field.batch, -1, height, width // 2 + 1).mean(1, keepdim=True)
    laplacian = _laplacian_spectrum(height, width, power)

    def inverse_for(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        inverse = 1 / (power + weight.view(-1, 1, 1, 1) * laplacian).clamp_min(torch.finfo(power.dtype).eps)
        return lambda image: torch.fft.irfft2(torch.fft.rfft2(image) * inverse, s=(height, width))

    return inverse_for


def _laplacian_spectrum(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Symbol ``4 sin^2(pi f_y) + 4 sin^2(pi f_x)`` of the periodic Laplacian ``D^T D``: (H, W // 2 + 1)."""
    freq_y = torch.arange(height, device=like.device, dtype=like.dtype)[:, None] / height
    freq_x = torch.arange(width // 2 + 1, device=like.device, dtype=like.dtype)[None] / width
    return 4 * torch.sin(torch.pi * freq_y).square() + 4 * torch.sin(torch.pi * freq_x).square()


def mixture_preconditioner(field) -> Callable[[torch.Tensor], Callable]:
    """``M^-1`` for a :class:`BasisField`: each basis kernel's own circulant inverse, weighted by its mixing map, on
    the channel mean; the other channel directions are left as they are.

    With ``S_b`` the spectrum of ``basis_b``, ``L^`` the periodic Laplacian's, ``R_b = diag(sqrt(mixing_b))`` and
    ``C_b^-1 = IFFT(. / (|S_b|^2 + mu L^)) FFT``, the mixture ``R = sum_b R_b C_b^-1 R_b`` is, where one kernel acts (a
    region), that kernel's Fourier inverse; it is symmetric positive definite because ``sum_b R_b^2 = I``. With
    ``u = 1 / sqrt(C)`` (C channels),

        M^-1 x = u R(u^T x) + (I - u u^T) x,

    symmetric positive definite (the two terms act on orthogonal channel directions). One FFT pair per basis kernel on
    one plane, against one per channel for :func:`circulant_preconditioner`: the per-kernel inverses, which fit
    region-wise fields, go where natural images keep their detail (the channel mean). A Fourier inverse on the other
    ``C - 1`` directions too (the mean power spectrum's) saved no steps on the bundled photos
    (``benchmarks/bench_deconvolution.py``) and cost ``C - 1`` more FFT pairs.

    Args:
        field: a :class:`BasisField` (``basis`` (N, B, K, K), ``mixing`` (N, B, H, W)).

    Returns:
        callable: ``mu`` (N,) tensor (> 0) -> ``M^-1``, a callable (N, C, H, W) -> (N, C, H, W).
    """
    height, width = field.height, field.width
    power = torch.fft.rfft2(field.basis, s=(height, width)).abs().square()  # (N, B, H, W // 2 + 1)
    roots = field.mixing.sqrt()
    laplacian = _laplacian_spectrum(height, width, power)

    def inverse_for(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        kernel_inverse = 1 / (power + weight.view(-1, 1, 1, 1) * laplacian).clamp_min(torch.finfo(power.dtype).eps)

        def apply(image: torch.Tensor) -> torch.Tensor:
            mean = image.mean(1, keepdim=True)  # u u^T x, the same on every channel
            mixture = torch.zeros_like(mean)  # R(mean): u R(u^T x) on every channel, R being linear
            for b in range(roots.shape[1]):  # one plane at a time (a batched inverse FFT is slower on CPU)
                root = roots[:, b, None]
                spectrum = torch.fft.rfft2(root * mean).mul_(kernel_inverse[:, b, None])
                mixture.addcmul_(root, torch.fft.irfft2(spectrum, s=(height, width)))
            return (image - mean).add_(mixture)

        return apply

    return inverse_for


def deconvolve_cg(blurry: torch.Tensor,
                  field,
                  prior: str = 'gradient',
                  weight: Optional[float] = None,
                  num_iter: int = 3,
                  cg_iter: Optional[int] = None,
                  tol: float = 1e-4,
                  tv_eps: float = 1e-2,
                  init: Optional[torch.Tensor] = None,
                  clip: bool = True,
                  precondition: Union[bool, str] = False) -> torch.Tensor:
    """Restores a sharp image with conjugate gradients on the normal equations (see the module docstring).

    ``prior='gradient'``: one CG solve of ``(A^T A + weight D^T D) u = A^T v`` with up to ``cg_iter`` steps
    (``num_iter`` and ``tv_eps`` are not used). ``prior='tv'``: ``num_iter`` half-quadratic rounds, each solving its
    weighted system with up to ``cg_iter`` CG steps started from the previous round's image.

    Args:
        blurry (Tensor): (N, C, H, W) in [0, 1].
        field: blur field of the same N, H, W and dtype (any representation with ``blur`` and ``adjoint``).
        prior (str): one of :data:`PRIORS`. Default: ``'gradient'``.
        weight (float, optional): lambda, the prior weight (> 0). Default: 4e-3 (gradient) or 1e-3 (TV), tuned on
            bundled photos with noise sigma 0.01 (``benchmarks/bench_deconvolution.py``).
        num_iter (int): half-quadratic rounds (TV prior). Default: 3.
        cg_iter (int, optional): CG steps per linear solve. Default: 12 (gradient) or 8 (TV).
        tol (float): tolerance of each CG solve on the relative decrease of its residual (from the starting image's).
            Default: 1e-4.
        tv_eps (float): smoothing of the TV norm (> 0; the weights are at most 1 / tv_eps). Default: 1e-2.
        init (Tensor, optional): (N, C, H, W) starting image; default the blurry image.
        clip (bool): clip the result to [0, 1]. Default: True.
        precondition (bool or str): preconditioned CG, one of :data:`PRECONDITIONERS`: ``'circulant'``
            (:func:`circulant_preconditioner`), ``'mixture'`` (:func:`mixture_preconditioner`, basis fields only);
            True picks ``'mixture'`` for a :class:`BasisField` and ``'circulant'`` otherwise; False, none. ``mu`` is the
            weight (gradient prior) or :data:`PRECONDITIONER_SCALE` times the mean TV weight of each round.
            Default: False.

    Returns:
        Tensor: (N, C, H, W), in [0, 1] when ``clip``; computed without autograd.
    """
    check_problem(blurry, field)
    if prior not in PRIORS:
        raise ValueError(f'prior: expected one of {PRIORS}, got {prior!r}')
    preconditioner = _pick_preconditioner(field, precondition)
    weight = (4e-3 if prior == 'gradient' else 1e-3) if weight is None else weight
    cg_iter = (12 if prior == 'gradient' else 8) if cg_iter is None else cg_iter
    if not weight > 0 or not tv_eps > 0 or int(num_iter) < 0 or int(cg_iter) < 0:
        raise ValueError(f'expected weight > 0, tv_eps > 0, num_iter >= 0 and cg_iter >= 0, got {weight}, {tv_eps}, '
                         f'{num_iter} and {cg_iter}')
    with torch.no_grad():
        estimate = blurry if init is None else init
        residual = field.adjoint(blurry - field.blur(estimate))  # A^T (v - A u_0): one blur and one adjoint
        inverse_for = preconditioner(field) if preconditioner is not None else None
        if prior == 'gradient':
            residual.sub_(weighted_laplacian(estimate, weight))
            operator = _normal_operator(field, weight)
            inverse = inverse_for(blurry.new_full((blurry.shape[0], ), weight)) if inverse_for else None
            return _finish(conjugate_gradient(operator, None, estimate, cg_iter, tol, residual, inverse)[0], clip)
        previous = 0.0
        for _ in range(int(num_iter)):
            grad = image_gradient(estimate)
            diffusivity = weight / (grad.square().sum(2, keepdim=True) + tv_eps * tv_eps).sqrt()
            # new weights, same A^T A u: A^T v - (A^T A + D^T W' D) u without another blur
            residual = residual + image_gradient_adjoint((previous - diffusivity) * grad)
            operator = _normal_operator(field, diffusivity)
            inverse = inverse_for(PRECONDITIONER_SCALE * diffusivity.flatten(1).mean(1)) if inverse_for else None
            estimate, _, _, residual = conjugate_gradient(operator, None, estimate, cg_iter, tol, residual, inverse)
            previous = diffusivity
    return _finish(estimate, clip)


def _pick_preconditioner(field, precondition: Union[bool, str]) -> Optional[Callable]:
    """The preconditioner factory that ``precondition`` names for ``field`` (see :func:`deconvolve_cg`), or None."""
    if not precondition:
        return None
    if precondition is True:
        precondition = 'mixture' if isinstance(field, BasisField) else 'circulant'
    if precondition not in PRECONDITIONERS:
        raise ValueError(f'precondition: expected True, False or one of {PRECONDITIONERS}, got {precondition!r}')
    if precondition == 'mixture' and not isinstance(field, BasisField):
        raise TypeError(f"precondition='mixture': expected a BasisField, got {type(field).__name__} "
                        "(use 'circulant')")
    return circulant_preconditioner if precondition == 'circulant' else mixture_preconditioner


def _finish(estimate: torch.Tensor, clip: bool) -> torch.Tensor:
    return estimate.clamp(0, 1) if clip else estimate


def _normal_operator(field, weight) -> Callable[[torch.Tensor], torch.Tensor]:
    """``u -> A^T A u + D^T (weight * D u)``, ``weight`` a float or a (N, C, 1, H, W) map.

    Shape: (N, C, H, W) -> (N, C, H, W).
    """
    return lambda image: field.adjoint(field.blur(image)).add_(weighted_laplacian(image, weight))
