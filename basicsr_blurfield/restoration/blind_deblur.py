"""Blind deblurring in the encoded blur-kernel space: Algorithm 1 and eq. (5)-(7) of Tran et al. (CVPR 2021).

With a learned, frozen blur operator family ``F`` (:class:`~basicsr_blurfield.archs.blur_kernel_space_arch.
BlurOperatorFamily`, ``F(x, k)`` -> blurry), the sharp image ``x`` and the kernel code ``k`` of one blurry image ``y``
are both reparameterised by deep image priors (eq. 7): ``x = G^x(z_x)`` (an encoder-decoder with skip connections,
sigmoid output) and ``k = G^k(z_k)`` (a code map (1, D, h, w) from a noise map), ``z ~ N(0, I)`` fixed. Eq. (6):

    L(theta_x, theta_k) = rho(y, F(x, k)) + lambda ||k||_2 + gamma mean_p (g_u(x)^2 + g_v(x)^2)^(alpha / 2),

``rho`` the Charbonnier distance ``mean sqrt(d^2 + 1e-6)`` (a mean, not the training loss's sum, so the weights do not
depend on the image size), ``||k||_2`` the root-mean-square of the code, and the hyper-Laplacian prior on the forward
differences of :func:`~basicsr_blurfield.restoration.deconvolution.image_gradient`.

Two schedules (``mode``):
- ``'alternating'`` (Algorithm 1): every outer step first optimises theta_k with Adam until the loss stops falling
  (at most ``kernel_iter`` steps; ``reinit_kernel=True`` re-samples z_k and re-initialises G^k first, as written in
  the algorithm; the default keeps G^k warm, far cheaper), then takes one Adam step on theta_x.
- ``'joint'`` (the authors' released code): one Adam step on both generators per iteration, loss ``(1 - SSIM(F(x, k),
  y))`` (pytorch-msssim) plus a perceptual term only when the caller supplies one (e.g. :func:`vgg_perceptual` with
  weights the user has; nothing is downloaded), plus the two regularisers of eq. (6); Charbonnier by option.
Both start with ``warmup_iter`` steps fitting G^x to the blurry image (mean squared error; the released code also
warms up, for 300 steps), use Adam with the released learning rate 5e-4 decayed by 0.7 every 1000 steps, show a tqdm
progress bar with the loss, are reproducible from ``seed`` (the generators are initialised inside a forked RNG; the
global RNG is left untouched) and stop early when the loss has not improved by ``tol`` (relative) for ``patience``
steps. Any image size: the image prior runs on a size padded to its multiple (at least twice it) and is cropped
back; the code grid is ``F.code_size(H, W)``.

Our options, off by default, against the trivial solution (an image as blurry as y and a code F maps to near identity):
``init_code`` starts G^k at a typical training code, ``code_prior=(mean, std)`` adds the code's negative
log-likelihood under a diagonal Gaussian fitted to F's training codes, ``sparsity_weight`` adds the L1/L2 gradient
ratio of Krishnan et al. (CVPR 2011), which rises with blur.

Reference: Tran, Tran, Phung, Hoai, "Explore Image Deblurring via Encoded Blur Kernel Space", CVPR 2021, §3.2,
Alg. 1, eq. (5)-(7); Ulyanov et al., "Deep Image Prior", CVPR 2018. Written from the papers and DESIGN.md.
"""
import math
from dataclasses import dataclass, field as dataclass_field
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from basicsr_blurfield.archs.arch_util import crop_to
from basicsr_blurfield.restoration.deconvolution import image_gradient

__all__ = [
    'BLIND_MODES', 'BlindDeblurResult', 'blind_deblur', 'charbonnier', 'hyper_laplacian', 'normalized_sparsity',
    'vgg_perceptual'
]

BLIND_MODES = ('alternating', 'joint')
_VGG19_FEATURES = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512,
                   'M')


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Charbonnier distance ``mean sqrt((pred - target)^2 + eps)``: rho of eq. (4)-(6).

    Shape: pred, target (N, C, H, W) -> () scalar.
    """
    return torch.sqrt((pred - target).square() + eps).mean()


def hyper_laplacian(image: torch.Tensor, alpha: float = 0.8, eps: float = 1e-6) -> torch.Tensor:
    """Hyper-Laplacian gradient prior of eq. (5), ``mean_p (g_u^2 + g_v^2 + eps)^(alpha / 2)``.

    Args:
        image (Tensor): (N, C, H, W).
        alpha (float): exponent, 0 < alpha <= 2 (below 1 favours sparse gradients). Default: 0.8.
        eps (float): smoothing that keeps the gradient finite at flat pixels. Default: 1e-6.

    Returns:
        Tensor: () scalar.
    """
    return (image_gradient(image).square().sum(2) + eps).pow(alpha / 2).mean()


def normalized_sparsity(image: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Krishnan et al.'s scale-invariant sparsity ``||g||_1 / (sqrt(n) ||g||_2)`` of the forward differences ``g``
    (n entries), in (0, 1]: blur spreads an edge's gradient over several pixels, so it grows with blur, whereas the
    hyper-Laplacian is lower for a blurred photo than for the sharp one when blur removes many small texture gradients
    (the trivial solution of blind deconvolution, Levin et al., CVPR 2009). Not always: dense texture (fur) can lower
    the ratio under blur.

    Shape: image (N, C, H, W) -> () scalar.
    """
    gradient = image_gradient(image).flatten()
    return gradient.abs().sum() / (gradient.numel()**0.5 * gradient.square().sum().add(eps).sqrt())


def vgg_perceptual(weights_path: str, num_layers: int = 18) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A VGG-19 feature distance ``mean |phi(a) - phi(b)|`` with the caller's own weights (nothing is downloaded).

    Args:
        weights_path (str): a torchvision ``vgg19`` state dict (``features.<i>.weight`` / ``.bias``; a ``params`` or
            ``state_dict`` wrapper is accepted). Only the layers used are read.
        num_layers (int): how many modules of ``vgg19().features`` to keep (18: up to relu3_4). Default: 18.

    Returns:
        callable: ``(pred, target)`` (N, 3, H, W) in [0, 1] -> () scalar; ImageNet normalisation applied inside.

    Raises:
        ValueError: when the file lacks the VGG-19 feature weights of the kept layers.
    """
    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict

    layers, in_ch = [], 3
    for width in _VGG19_FEATURES:
        if width == 'M':
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = width
        if len(layers) >= num_layers:
            break
    features = nn.Sequential(*layers[:num_layers])  # the module indices of torchvision's vgg19().features
    state = unwrap_state_dict(torch.load(weights_path, map_location='cpu', weights_only=True))
    wanted = {key: value for key, value in state.items() if key.startswith('features.')}
    wanted = {key[len('features.'):]: value for key, value in wanted.items()}
    expected = set(features.state_dict())
    missing = sorted(expected - set(wanted))
    if missing:
        raise ValueError(f'{weights_path}: expected torchvision vgg19 weights (features.<i>.weight/bias), missing '
                         f'{["features." + key for key in missing[:4]]} (found {len(state)} keys)')
    features.load_state_dict({key: wanted[key] for key in expected})
    features.requires_grad_(False).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = features.to(pred.device)
        scale, shift = std.to(pred), mean.to(pred)
        return (net((pred - shift) / scale) - net((target - shift) / scale)).abs().mean()

    return distance


def _conv_block(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> List[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, padding_mode='reflect'),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True)
    ]


class _SkipLevel(nn.Module):
    """One level of the image prior: stride-2 down path, a 1x1 skip branch, the inner level, bilinear up path."""

    def __init__(self, in_ch: int, num_feat: int, num_skip: int, inner: Optional[nn.Module]):
        super().__init__()
        self.skip = nn.Sequential(*_conv_block(in_ch, num_skip, 1)) if num_skip else None
        self.down = nn.Sequential(*_conv_block(in_ch, num_feat, 3, 2), *_conv_block(num_feat, num_feat, 3))
        self.inner = inner
        self.up = nn.Sequential(
            nn.BatchNorm2d(num_feat + num_skip), *_conv_block(num_feat + num_skip, num_feat, 3),
            *_conv_block(num_feat, num_feat, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        deep = nn.functional.interpolate(deep, scale_factor=2, mode='bilinear', align_corners=False)
        if self.skip is not None:
            deep = torch.cat([self.skip(x), deep], 1)
        return self.up(deep)


class _ImagePrior(nn.Module):
    """G^x of eq. (7): noise (1, Z, H', W') -> image (1, C, H', W') in (0, 1), H', W' multiples of 2**L."""

    def __init__(self, noise_channels: int, out_ch: int, num_feat: int, num_skip: int, num_levels: int):
        super().__init__()
        level = None
        for depth in reversed(range(num_levels)):
            level = _SkipLevel(noise_channels if depth == 0 else num_feat, num_feat, num_skip, level)
        self.body = level
        self.out = nn.Conv2d(num_feat, out_ch, 1)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.body(noise)))


class _CodeGenerator(nn.Module):
    """G^k of eq. (7): noise (1, Z, h, w) -> code (1, D, h, w) by 1x1 convolutions (one code vector per cell)."""

    def __init__(self, noise_channels: int, code_channels: int, num_feat: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(noise_channels, num_feat, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(num_feat, num_feat, 1),
            nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(num_feat, code_channels, 1))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.body(noise)


@dataclass
class BlindDeblurResult:
    """What :func:`blind_deblur` returns.

    Attributes:
        image (Tensor): (1, C, H, W) in [0, 1], the restored sharp image.
        code (Tensor): (1, D, h, w), the kernel code with ``F(image, code) ~ blurry``.
        reblurred (Tensor): (1, C, H, W), ``F(image, code)`` clamped to [0, 1].
        losses (list[float]): the objective after every outer step (warm-up excluded).
        steps (int): outer steps run.
        stopped_early (bool): whether the early-stopping rule ended the run.
    """
    image: torch.Tensor
    code: torch.Tensor
    reblurred: torch.Tensor
    losses: List[float] = dataclass_field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False


class _Objective:
    """The loss of eq. (6) (``'alternating'``) or of the released code (``'joint'``) for one blurry image."""

    def __init__(self, operator: nn.Module, blurry: torch.Tensor, mode: str, kernel_weight: float, prior_weight: float,
                 alpha: float, charbonnier_weight: float, ssim_weight: float, perceptual, perceptual_weight: float,
                 code_prior, code_prior_weight: float, sparsity_weight: float):
        self.operator, self.blurry, self.mode = operator, blurry, mode
        self.code_prior, self.code_prior_weight = code_prior, code_prior_weight
        self.sparsity_weight = sparsity_weight
        self.kernel_weight, self.prior_weight, self.alpha = kernel_weight, prior_weight, alpha
        self.charbonnier_weight, self.ssim_weight = charbonnier_weight, ssim_weight
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight

    def __call__(self, image: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        reblurred = self.operator(image, code)
        loss = self.charbonnier_weight * charbonnier(reblurred, self.blurry)
        if self.mode == 'joint':
            from pytorch_msssim import ssim

            loss = loss + self.ssim_weight * (1 - ssim(reblurred, self.blurry, data_range=1.0))
            if self.perceptual is not None:
                loss = loss + self.perceptual_weight * self.perceptual(reblurred, self.blurry)
        loss = loss + self.kernel_weight * code.square().mean().sqrt()
        if self.code_prior is not None:
            mean, std = self.code_prior
            loss = loss + self.code_prior_weight * ((code - mean) / std).square().mean()
        if self.sparsity_weight:
            loss = loss + self.sparsity_weight * normalized_sparsity(image)
        return loss + self.prior_weight * hyper_laplacian(image, self.alpha)


def _check_inputs(blurry: torch.Tensor, operator, mode: str) -> None:
    if mode not in BLIND_MODES:
        raise ValueError(f'mode: expected one of {BLIND_MODES}, got {mode!r}')
    if not isinstance(blurry, torch.Tensor) or blurry.dim() != 4 or blurry.shape[0] != 1:
        shape = tuple(blurry.shape) if isinstance(blurry, torch.Tensor) else type(blurry).__name__
        raise ValueError(f'blurry: expected one image (1, C, H, W) in [0, 1] (call once per image), got {shape}')
    if not (isinstance(operator, nn.Module) and callable(getattr(operator, 'code_size', None))
            and hasattr(operator, 'code_channels')):
        raise TypeError(f'operator: expected a BlurOperatorFamily (an nn.Module F(sharp, code) with code_size and '
                        f'code_channels), got {type(operator).__name__}')
    if getattr(operator, 'num_in_ch', blurry.shape[1]) != blurry.shape[1]:
        raise ValueError(f'blurry: the operator takes {operator.num_in_ch}-channel images, got {blurry.shape[1]}')


def _check_code_prior(code_prior, code_channels: int, code_grid: tuple, device, dtype) -> tuple:
    """``(mean, std)`` of a diagonal code Gaussian, checked and broadcast to (1, D, h, w) on ``device``."""
    expected = [(1, code_channels, 1, 1), (1, code_channels) + code_grid]
    if not isinstance(code_prior, (tuple, list)) or len(code_prior) != 2:
        raise ValueError(f'code_prior: expected (mean, std), two tensors of shape {expected[0]} or {expected[1]}, got '
                         f'{type(code_prior).__name__}')
    checked = []
    for name, value in zip(('mean', 'std'), code_prior):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) not in expected:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f'code_prior {name}: expected shape {expected[0]} or {expected[1]} (this image\'s code '
                             f'grid), got {shape}')
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f'code_prior {name}: holds NaN or infinite values')
        checked.append(value.detach().to(device, dtype).expand(expected[1]))
    if not bool((checked[1] > 0).all()):
        raise ValueError('code_prior std: every entry must be > 0 (a channel with zero spread: add a floor, e.g. '
                         'std.clamp_min(1e-3))')
    return tuple(checked)


def blind_deblur(blurry: torch.Tensor,
                 operator: nn.Module,
                 mode: str = 'alternating',
                 num_iter: int = 1000,
                 kernel_iter: int = 5,
                 reinit_kernel: bool = False,
                 warmup_iter: int = 100,
                 init_code: Optional[torch.Tensor] = None,
                 code_prior: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 code_prior_weight: float = 1e-2,
                 lr: float = 5e-4,
                 kernel_weight: float = 1e-3,
                 prior_weight: float = 2e-3,
                 alpha: float = 0.8,
                 sparsity_weight: float = 0.0,
                 charbonnier_weight: Optional[float] = None,
                 ssim_weight: float = 1.0,
                 perceptual: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
                 perceptual_weight: float = 1.0,
                 patience: int = 200,
                 tol: float = 1e-3,
                 num_feat: int = 128,
                 num_skip: int = 16,
                 num_levels: int = 5,
                 noise_channels: int = 8,
                 code_noise_channels: int = 64,
                 seed: int = 0,
                 progress: bool = True) -> BlindDeblurResult:
    """Restores one blurry image with a frozen blur operator family ``F`` (see the module docstring).

    Args:
        blurry (Tensor): (1, C, H, W) in [0, 1], any H, W.
        operator (nn.Module): ``F(sharp, code) -> blurry`` with ``code_size(H, W)`` and ``code_channels`` (a
            :class:`BlurOperatorFamily`); kept frozen (eval mode, no parameter gradients) and restored afterwards.
        mode (str): ``'alternating'`` (Algorithm 1) or ``'joint'`` (released code). Default: 'alternating'.
        num_iter (int): most outer steps (image updates). Default: 1000.
        kernel_iter (int): most code steps per outer step (``'alternating'``). Default: 5.
        reinit_kernel (bool): re-sample z_k and re-initialise G^k before every code loop, as Algorithm 1 writes it
            (``'alternating'``). Default: False (warm start).
        warmup_iter (int): steps fitting G^x to the blurry image first. Default: 100.
        init_code (Tensor, optional): (1, D, 1, 1) or (1, D, h, w) on the code grid: a code G^k is fitted to (mean
            squared error) during the same warm-up steps, e.g. the mean code of training pairs (a typical blur of the
            kernel space), so that the image steps start against real blur instead of G^k's random output (near the
            code 0; the blurry image itself then fits almost exactly, the trivial solution x = y). Ours, not in the
            paper. With ``reinit_kernel`` only the first G^k starts there. Default: None (G^k as initialised).
        code_prior (tuple of Tensor, optional): ``(mean, std)``, each (1, D, 1, 1) or (1, D, h, w), std > 0: a
            diagonal Gaussian over the codes of F's training pairs (per channel, e.g. over G's codes of training-like
            pairs). Adds ``code_prior_weight * mean(((k - mean) / std)^2)`` to the objective (the code's Gaussian
            negative log-likelihood, up to a constant and a factor), which keeps k among the blurs F was trained on
            instead of codes F never saw (those can reproduce y from an image as blurry as y). Ours, not in the paper
            (whose lambda ||k|| assumes codes centred at 0). Default: None.
        code_prior_weight (float): its weight. Default: 1e-2.
        lr (float): Adam learning rate of both generators (decayed by 0.7 every 1000 steps). Default: 5e-4.
        kernel_weight (float): lambda of eq. (6), on the code's root-mean-square. Default: 1e-3.
        prior_weight (float): gamma of eq. (6), on the hyper-Laplacian prior. Default: 2e-3.
        alpha (float): exponent of the hyper-Laplacian prior. Default: 0.8.
        sparsity_weight (float): weight of :func:`normalized_sparsity` of the image, a prior that favours sharp
            images over blurry ones (Krishnan et al., CVPR 2011). Ours, not in the paper. Default: 0 (off).
        charbonnier_weight (float, optional): weight of rho; default 1 for ``'alternating'`` and 0 for ``'joint'``.
        ssim_weight (float): weight of ``1 - SSIM`` (``'joint'``). Default: 1.
        perceptual (callable, optional): ``(pred, target) -> scalar`` feature distance (``'joint'``), e.g.
            :func:`vgg_perceptual`; None leaves the term out. Default: None.
        perceptual_weight (float): its weight. Default: 1.
        patience (int): stop when the loss has not improved by ``tol`` (relative) for this many steps. Default: 200.
        tol (float): relative improvement that counts. Default: 1e-3.
        num_feat (int): width of every image-prior level (released: 128). Default: 128.
        num_skip (int): skip-branch width of the image prior (0: no skips). Default: 16.
        num_levels (int): image-prior levels; the image is padded to a multiple of ``2**num_levels``. Default: 5.
        noise_channels (int): channels of z_x (released: 8). Default: 8.
        code_noise_channels (int): channels of z_k. Default: 64.
        seed (int): seeds the noise maps and the generators' initial weights. Default: 0.
        progress (bool): show a tqdm bar with the loss. Default: True.

    Returns:
        BlindDeblurResult: the image (1, C, H, W) in [0, 1], the code, the reblurred image and the loss history.

    Raises:
        ValueError / TypeError: a batch of images, an unknown mode, an operator that is not a blur operator family,
            an ``init_code`` or ``code_prior`` that does not fit the code grid, a ``code_prior`` std that is not
            positive.
    """
    from tqdm import tqdm

    _check_inputs(blurry, operator, mode)
    if charbonnier_weight is None:
        charbonnier_weight = 1.0 if mode == 'alternating' else 0.0
    device, dtype = blurry.device, blurry.dtype
    _, channels, height, width = blurry.shape
    multiple = 2**int(num_levels)
    # the deepest level gets at least 2 x 2 pixels (its reflect padding needs them)
    padded = tuple(max(math.ceil(size / multiple), 2) * multiple for size in (height, width))
    code_grid = tuple(operator.code_size(height, width))
    if init_code is not None:
        expected = [(1, operator.code_channels, 1, 1), (1, operator.code_channels) + code_grid]
        if not isinstance(init_code, torch.Tensor) or tuple(init_code.shape) not in expected:
            shape = tuple(init_code.shape) if isinstance(init_code, torch.Tensor) else type(init_code).__name__
            raise ValueError(f'init_code: expected a code of shape {expected[0]} or {expected[1]} (this image\'s code '
                             f'grid), got {shape}')
        init_code = init_code.detach().to(device, dtype).expand((1, operator.code_channels) + code_grid)
    if code_prior is not None:
        code_prior = _check_code_prior(code_prior, operator.code_channels, code_grid, device, dtype)
    generator = torch.Generator().manual_seed(int(seed))
    noise_x = torch.randn((1, noise_channels) + padded, generator=generator).to(device, dtype)

    def new_code_net():
        noise = torch.randn((1, code_noise_channels) + code_grid, generator=generator).to(device, dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1, ), generator=generator)))
            net = _CodeGenerator(code_noise_channels, operator.code_channels, 256)
        return noise, net.to(device, dtype)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        image_prior = _ImagePrior(noise_channels, channels, num_feat, num_skip, num_levels).to(device, dtype)
    noise_k, code_net = new_code_net()
    was_training = operator.training
    flags = [param.requires_grad for param in operator.parameters()]
    operator.eval().requires_grad_(False)
    objective = _Objective(operator, blurry, mode, kernel_weight, prior_weight, alpha, charbonnier_weight, ssim_weight,
                           perceptual, perceptual_weight, code_prior, code_prior_weight, sparsity_weight)

    def adam(net):
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1000, 0.7)

    def image():
        return crop_to(image_prior(noise_x), (height, width))

    result = BlindDeblurResult(
        image=blurry, code=blurry.new_zeros((1, operator.code_channels) + code_grid), reblurred=blurry)
    try:
        image_opt, image_sched = adam(image_prior)
        code_opt, code_sched = adam(code_net)
        for _ in range(int(warmup_iter)):
            image_opt.zero_grad()
            (image() - blurry).square().mean().backward()
            image_opt.step()
            if init_code is not None:
                code_opt.zero_grad()
                (code_net(noise_k) - init_code).square().mean().backward()
                code_opt.step()
        image_opt, image_sched = adam(image_prior)
        code_opt, code_sched = adam(code_net)
        best, since_best = math.inf, 0
        bar = tqdm(range(int(num_iter)), desc=f'blind deblur ({mode})', disable=not progress, leave=False)
        for _ in bar:
            if mode == 'alternating':
                if reinit_kernel:
                    noise_k, code_net = new_code_net()
                    code_opt, code_sched = adam(code_net)
                fixed_image, previous = image().detach(), math.inf
                for _ in range(int(kernel_iter)):
                    code_opt.zero_grad()
                    loss = objective(fixed_image, code_net(noise_k))
                    loss.backward()
                    code_opt.step()
                    if previous - float(loss.detach()) < tol * abs(previous):
                        break
                    previous = float(loss.detach())
                image_opt.zero_grad()
                loss = objective(image(), code_net(noise_k).detach())
                loss.backward()
                image_opt.step()
            else:
                image_opt.zero_grad()
                code_opt.zero_grad()
                loss = objective(image(), code_net(noise_k))
                loss.backward()
                image_opt.step()
                code_opt.step()
            image_sched.step()
            code_sched.step()
            value = float(loss.detach())
            result.losses.append(value)
            result.steps += 1
            bar.set_postfix(loss=f'{value:.5f}')
            if value < best * (1 - tol):
                best, since_best = value, 0
            else:
                since_best += 1
                if since_best >= int(patience):
                    result.stopped_early = True
                    break
        bar.close()
        with torch.no_grad():
            result.image = image().clamp(0, 1)
            result.code = code_net(noise_k)
            result.reblurred = operator(result.image, result.code).clamp(0, 1)
    finally:
        operator.train(was_training)
        for param, flag in zip(operator.parameters(), flags):
            param.requires_grad_(flag)
    return result
