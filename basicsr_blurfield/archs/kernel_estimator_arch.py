"""Uncertain per-pixel kernel estimation in the flow's latent space, stage II of UFPNet (Fang et al., CVPR 2023).

A small U-Net G (three widths F, 2F, 4F; two down/up levels) predicts from the blurry image y, at every pixel i, a
latent code ``z_i`` (L = K*K channels: a softmax over the L entries, then standardised over them with the unbiased
std and no epsilon, as published, so that it follows N(0, I)) and a standard deviation ``sigma_i`` (sigmoid of a
second head, averaged over the L channels: one sigma per pixel). Eq. (5)-(6):

    z_hat_i = sqrt(1 - sigma_i^2) * z_i + n_i,    n_i = sigma_i * eps_i,  eps_i ~ N(0, I)

during training; at test time the noise is left out by default (``z_hat_i = sqrt(1 - sigma_i^2) * z_i``, the mean
and mode of z_hat_i), so results do not depend on a seed (the published code keeps adding noise at test time).
``sample`` switches this per call and ``sample_at_test`` per network; noise comes from an explicit
``torch.Generator`` when one is given.
The kernels ``k_i = f_theta(z_hat_i)`` are decoded by the frozen :class:`KernelFlowPrior` (eq. (3)) and returned as a
:class:`~basicsr_blurfield.fields.KernelField` (gather form, each kernel non-negative and summing to 1). With
``lazy=True`` the field is a :class:`LatentKernelField`: the U-Net trunk runs once and the code heads and the flow
run only where kernels are asked for (``kernels_at``: a kernel loss on sampled pixels costs the trunk plus those
pixels, not a decode of every pixel with autograd, which is 90 % of a training step at 64 x 64); ``blur`` or
``kernels`` decode the whole image once. The stage-II
loss is the re-blur L1 of eq. (4), ``||blur(x, field) - y||_1``. The U-Net's ReLUs sit where the published code has
them: an encoding block is head conv, two residual blocks, ReLU (the skip), stride-2 conv without activation; a
decoding block is transposed conv, concatenation with the skip, head conv, two residual blocks, ReLU.

Module names (``kernel_extra.Encoding_Block1 ... Conv_tail.{mean,var}`` and ``flow.*``) equal the published UFPNet
layout, so the estimator's weights load into and out of :class:`~basicsr_blurfield.archs.ufpnet_arch.UFPNet` by name.

Reference: Fang et al., CVPR 2023, §3.1-3.2, eq. (4)-(6). Written from the paper and DESIGN.md.
"""
import math
from typing import Optional

import torch
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import channels_last_on_cpu, crop_to, pad_to_multiple
from basicsr_blurfield.archs.blur_cues import DerivativeAutocorrelation
from basicsr_blurfield.archs.flow_prior_arch import KernelFlowPrior
from basicsr_blurfield.fields import KernelField
from basicsr_blurfield.fields.base import BlurField
from basicsr_blurfield.fields._common import check_points

__all__ = ['INPUT_CUES', 'FlowKernelEstimator', 'LatentKernelEstimation', 'LatentKernelField', 'resample_codes']

INPUT_CUES = (None, 'autocorrelation')  # what G may read besides the image (FlowKernelEstimator's input_cues)
_DECODE_PIXELS = 1024  # pixels decoded at a time without autograd: (L, 1024) floats stay in cache


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


class _ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), _conv3x3(num_feat, num_feat), nn.ReLU(), _conv3x3(num_feat, num_feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _EncodingBlock(nn.Module):
    """Conv, two residual blocks and a ReLU (the skip), then a stride-2 conv without activation (published order).

    Shape: (N, C_in, H, W) -> skip (N, C, H, W), down (N, C, H/2, W/2).
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.Conv_head = _conv3x3(in_ch, out_ch)
        self.ResBlock1 = _ResBlock(out_ch)
        self.ResBlock2 = _ResBlock(out_ch)
        self.downsample = _conv3x3(out_ch, out_ch, stride=2)

    def forward(self, x: torch.Tensor) -> tuple:
        skip = torch.relu(self.ResBlock2(self.ResBlock1(self.Conv_head(x))))
        return skip, self.downsample(skip)


class _DecodingBlock(nn.Module):
    """Stride-2 transposed conv, concatenation with the skip, conv, two residual blocks and a ReLU (published order).

    Shape: x (N, C_in, h, w), skip (N, C, 2h, 2w) -> (N, C, 2h, 2w).
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.Conv_t = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)
        self.Conv_head = _conv3x3(2 * out_ch, out_ch)
        self.ResBlock1 = _ResBlock(out_ch)
        self.ResBlock2 = _ResBlock(out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        merged = self.Conv_head(torch.cat([self.Conv_t(x), skip], dim=1))
        return torch.relu(self.ResBlock2(self.ResBlock1(merged)))


class _ConvStack(nn.Module):
    """Five 3x3 convs with ReLU between them (the U-Net bottleneck)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        layers = [_conv3x3(in_ch, out_ch)]
        for _ in range(4):
            layers += [nn.ReLU(), _conv3x3(out_ch, out_ch)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x))


class _LatentCodeNet(nn.Module):
    """G of eq. (4): the U-Net trunk, image (N, C, H, W) -> features (N, F, H, W), H, W % 4 == 0, and two heads
    ``Conv_tail['mean']`` (raw code) and ``Conv_tail['var']`` (sigma logits), each features -> (N, L, H, W)."""

    def __init__(self, img_channel: int, num_feat: int, code_channels: int):
        super().__init__()
        self.Encoding_Block1 = _EncodingBlock(img_channel, num_feat)
        self.Encoding_Block2 = _EncodingBlock(num_feat, 2 * num_feat)
        self.Conv_mid = _ConvStack(2 * num_feat, 4 * num_feat)
        self.Decoding_Block1 = _DecodingBlock(4 * num_feat, 2 * num_feat)
        self.Decoding_Block2 = _DecodingBlock(2 * num_feat, num_feat)
        self.Conv_tail = nn.ModuleDict({
            name: nn.Sequential(_conv3x3(num_feat, num_feat), nn.ReLU(), _conv3x3(num_feat, code_channels))
            for name in ('mean', 'var')
        })

    def forward(self, x: torch.Tensor) -> tuple:
        skip1, x = self.Encoding_Block1(x)
        skip2, x = self.Encoding_Block2(x)
        return self.Decoding_Block2(self.Decoding_Block1(self.Conv_mid(x), skip2), skip1)


def resample_codes(z: torch.Tensor,
                   sigma: torch.Tensor,
                   sample: bool,
                   generator: Optional[torch.Generator] = None,
                   noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Uncertainty resampling of eq. (5)-(6): ``z * sqrt(1 - sigma^2) + eps * sigma`` (eps left out if not ``sample``).

    Args:
        z (Tensor): (N, L, H, W) standardised codes (or any layout with sigma broadcasting against it).
        sigma (Tensor): (N, 1, H, W) in (0, 1).
        sample (bool): add the noise term.
        generator (torch.Generator, optional): source of eps (on z's device).
        noise (Tensor, optional): eps itself, shaped like z, instead of drawing it (used when ``sample``).

    Returns:
        Tensor: (N, L, H, W) codes z_hat.
    """
    # the floor keeps the gradient finite when sigma saturates at 1 (sqrt'(0) = inf, times sigmoid'(inf) = 0: NaN)
    z_hat = z * torch.sqrt((1 - sigma * sigma).clamp_min(1e-12))
    if not sample:
        return z_hat
    if noise is None:
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return z_hat + noise * sigma


def _conv_at(conv: nn.Conv2d, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """A 3x3, stride-1, padding-1 convolution evaluated only at ``points``: features (N, C, H, W), points (P, 3) long
    as (n, y, x) -> (P, C_out), equal to ``conv(features)[n, :, y, x]``."""
    padded = nn.functional.pad(features, (1, 1, 1, 1))
    n, y, x = points.unbind(1)
    patches = torch.stack([padded[n, :, y + dy, x + dx] for dy in range(3) for dx in range(3)], 2)  # (P, C, 9)
    return torch.addmm(conv.bias, patches.flatten(1), conv.weight.flatten(1).T)


class LatentKernelField(KernelField):
    """The kernel field of a :class:`LatentKernelEstimation` network, decoded on demand (same values as the eager
    :class:`KernelField` of ``estimate_field``).

    Holds the U-Net trunk's features; ``kernels_at(points)`` runs the two heads and the flow at those pixels only
    (differentiably), ``kernels`` (and so ``blur``, ``adjoint``, ``dense``) decodes every pixel once and keeps it.
    ``dtype`` and ``device`` are the features' (reading them decodes nothing). With
    ``sample`` the noise of eq. (6) is drawn per call (from the global generator, or ``generator``), so two calls see
    different draws, as two training steps would.

    Args:
        estimator (LatentKernelEstimation): the network whose heads and flow decode the features.
        features (Tensor): (N, F, H', W') trunk output on the padded image, H' >= H, W' >= W.
        size (tuple): (H, W) of the image.
        sample (bool): add the uncertainty noise.
        generator (torch.Generator, optional): source of the noise.
    """

    def __init__(self, estimator: 'LatentKernelEstimation', features: torch.Tensor, size: tuple, sample: bool,
                 generator: Optional[torch.Generator] = None):
        BlurField.__init__(self, estimator.field_padding, int(features.shape[0]), int(size[0]), int(size[1]))
        self.kernel_size = estimator.flow.size
        self._estimator, self._features, self._sample, self._generator = estimator, features, sample, generator
        self._kernels = None

    @property
    def kernels(self) -> torch.Tensor:
        """(N, K*K, H, W): every pixel's kernel, decoded at the first access."""
        if self._kernels is None:
            kernels, _ = self._estimator._decode_features(self._features, (self.height, self.width), self._sample,
                                                          self._generator)
            self._kernels = kernels.contiguous()  # decoded channels-last; the tap engines want one plane per tap
        return self._kernels

    def kernels_at(self, points: torch.Tensor) -> torch.Tensor:
        """Kernels at ``points`` (P, 3) long as (n, y, x) -> (P, K, K), decoding only those pixels. Without autograd a
        field decoded already is read instead; with it the points are always decoded afresh, so that a checkpointed
        loss recomputes the same graph whatever was decoded in between."""
        if self._kernels is not None and not torch.is_grad_enabled():
            return super().kernels_at(points)
        points = check_points(points, self.batch, self.height, self.width).to(self._features.device)
        kernels, _ = self._estimator._decode_features(self._features, (self.height, self.width), self._sample,
                                                      self._generator, points=points)
        return kernels.reshape(-1, self.kernel_size, self.kernel_size)

    @property
    def dtype(self):
        return self._features.dtype

    @property
    def device(self):
        return self._features.device

    def to(self, *args, **kwargs) -> KernelField:
        return KernelField(self.kernels.to(*args, **kwargs), self.padding, check=False)

    def detach(self) -> KernelField:
        return KernelField(self.kernels.detach(), self.padding, check=False)


class LatentKernelEstimation:
    """Mixin giving an ``nn.Module`` the estimator ``kernel_extra`` (G) and the prior ``flow`` (f_theta) at its top.

    Used by :class:`FlowKernelEstimator` and by the kernel-guided deblurring networks, so that all of them keep the
    published parameter names (``kernel_extra.*``, ``flow.*``) and share one implementation of eq. (4)-(6).
    """

    def _build_kernel_estimation(self, img_channel: int, kernel_size: int, num_feat: int, flow_num_block: int,
                                 flow_hidden_size: int, sample_at_test: bool, freeze_prior: bool,
                                 padding: str, input_cues: Optional[str] = None) -> None:
        """Adds ``flow`` (:class:`KernelFlowPrior`), ``kernel_extra`` (the U-Net G) and, with ``input_cues``, the
        cue module ``cues``; arguments as in :class:`FlowKernelEstimator` (``num_feat`` is G's width)."""
        if input_cues not in INPUT_CUES:
            raise ValueError(f'input_cues: expected one of {INPUT_CUES}, got {input_cues!r}')
        self.cues = DerivativeAutocorrelation() if input_cues == 'autocorrelation' else None
        cue_channels = 0 if self.cues is None else self.cues.channels
        self.flow = KernelFlowPrior(kernel_size=kernel_size, num_block=flow_num_block, hidden_size=flow_hidden_size)
        self.kernel_extra = _LatentCodeNet(img_channel + cue_channels, num_feat, int(kernel_size)**2)
        self.sample_at_test = bool(sample_at_test)
        self.freeze_prior = bool(freeze_prior)
        self.field_padding = padding
        if self.freeze_prior:
            self.flow.requires_grad_(False)
            self.flow.eval()

    def train(self, mode: bool = True):
        """Sets the training mode; a frozen prior stays in eval mode (its batch-norm statistics are fixed)."""
        super().train(mode)
        if self.freeze_prior:
            self.flow.eval()
        return self

    def estimate_kernels(self, lq: torch.Tensor, sample: Optional[bool] = None,
                         generator: Optional[torch.Generator] = None, normalize: bool = True) -> tuple:
        """Per-pixel kernels and uncertainty of a blurry image, eq. (4)-(6).

        The raw code goes through a softmax over its L channels and is then standardised at each pixel with the
        unbiased standard deviation and no epsilon (as published), giving z; then z_hat = resample(z, sigma) and
        k = f_theta(z_hat).

        Args:
            lq (Tensor): (N, C, H, W) blurry image, any H, W.
            sample (bool, optional): add the uncertainty noise; None means "while training, or if sample_at_test".
            generator (torch.Generator, optional): source of the noise (on lq's device).
            normalize (bool): project the decoded kernels onto the simplex (non-negative, sum 1). False gives the
                flow's raw output, which the published network feeds to its attention modules. Default: True.

        Returns:
            tuple: kernels (N, K*K, H, W) (gather form; non-negative, summing to 1 over dim 1 when ``normalize``)
            and sigma (N, 1, H, W) in (0, 1).
        """
        features, size = self._trunk(lq)
        return self._decode_features(features, size, self._sampling(sample), generator, normalize)

    def _sampling(self, sample: Optional[bool]) -> bool:
        """``sample``, or when it is None: while training, or if ``sample_at_test``."""
        return (self.training or self.sample_at_test) if sample is None else sample

    def _trunk(self, lq: torch.Tensor) -> tuple:
        """The U-Net trunk of G on ``lq`` (N, C, H, W), any H, W, reflection-padded to a multiple of 4.

        Returns:
            tuple: features (N, F, H', W') on the padded image (the heads' 3x3 convs read across the crop line, so
            cropping to (H, W) comes after them) and the size (H, W).
        """
        if lq.dim() != 4:
            raise ValueError(f'lq: expected (N, C, H, W), got shape {tuple(lq.shape)}')
        padded, size = pad_to_multiple(lq, 4)
        if self.cues is not None:
            padded = torch.cat([padded, self.cues(padded)], 1)
        return self.kernel_extra(channels_last_on_cpu(padded)), size

    def _decode_features(self, features: torch.Tensor, size: tuple, sample: bool,
                         generator: Optional[torch.Generator] = None, normalize: bool = True,
                         points: Optional[torch.Tensor] = None) -> tuple:
        """Trunk features -> kernels and sigma: the two heads, the noise of eq. (6) if ``sample``, then the decode.

        Args:
            features (Tensor): (N, F, H', W') from :meth:`_trunk`; the results take its dtype and device.
            size (tuple): (H, W) of the image, H <= H', W <= W'.
            sample (bool): add the uncertainty noise (drawn in the code's layout: (N, L, H, W), or (P, L) at points).
            generator (torch.Generator, optional): source of the noise (on the features' device).
            normalize (bool): as in :meth:`estimate_kernels`. Default: True.
            points (Tensor, optional): (P, 3) long as (n, y, x), inside (N, H, W): decode those pixels only.

        Returns:
            tuple: kernels (N, K*K, H, W) and sigma (N, 1, H, W); with ``points``, kernels (P, K*K) and sigma (P, 1).
        """
        code, sigma = self._heads(features, size) if points is None else self._heads_at(features, points)
        noise = torch.randn(code.shape, generator=generator, device=code.device, dtype=code.dtype) if sample else None
        if points is None:
            return self._decode_codes(code, sigma, noise, normalize), sigma
        noise = None if noise is None else noise.T
        return self._decode_columns(code.T, sigma.T, noise, normalize).T, sigma

    def _heads(self, features: torch.Tensor, size: tuple) -> tuple:
        """Raw code (N, L, H, W) and sigma (N, 1, H, W) = mean over L of sigmoid(logits), cropped to ``size``.

        The uncertainty head runs first and is reduced to sigma (in place when no gradient is needed) before the code
        head runs, so one (N, L, H, W) map exists at a time (1.3 GB each at 720p).
        """
        logits = crop_to(self.kernel_extra.Conv_tail['var'](features), size)
        in_place = not (torch.is_grad_enabled() and logits.requires_grad)
        sigma = (logits.sigmoid_() if in_place else torch.sigmoid(logits)).mean(dim=1, keepdim=True)
        del logits
        return crop_to(self.kernel_extra.Conv_tail['mean'](features), size), sigma

    def _heads_at(self, features: torch.Tensor, points: torch.Tensor) -> tuple:
        """:meth:`_heads` at ``points`` (P, 3) long as (n, y, x) only: raw code (P, L) and sigma (P, 1)."""
        heads = self.kernel_extra.Conv_tail
        code, logits = (_conv_at(heads[name][2], torch.relu(heads[name][0](features)), points)
                        for name in ('mean', 'var'))
        return code, torch.sigmoid(logits).mean(1, keepdim=True)

    def _decode_codes(self, code: torch.Tensor, sigma: torch.Tensor, noise: Optional[torch.Tensor],
                      normalize: bool) -> torch.Tensor:
        """Raw codes (N, L, H, W) -> kernels (N, L, H, W), channels-last: softmax, standardisation, resampling and the
        flow, per pixel. Without autograd it runs in cache-sized blocks of pixels and writes the kernels over the
        codes (no (N, L, H, W) temporaries); with it, one sample at a time."""
        if code.is_meta:  # shape-only pass (TLC calibration): the kernels have the codes' shape
            return code
        num, taps, height, width = code.shape
        rows = code.permute(0, 2, 3, 1).reshape(num, height * width, taps)  # a row per pixel (a view if channels-last)
        sigma_rows = sigma.reshape(num, height * width, 1)
        noise_rows = None if noise is None else noise.permute(0, 2, 3, 1).reshape(num, height * width, taps)
        needs_grad = torch.is_grad_enabled() and (code.requires_grad or sigma.requires_grad or any(
            p.requires_grad for p in self.flow.parameters()))
        step = height * width if needs_grad else _DECODE_PIXELS
        decoded = []
        for index in range(num):
            for start in range(0, height * width, step):
                block = slice(start, start + step)
                kernels = self._decode_columns(rows[index, block].T, sigma_rows[index, block].T,
                                               None if noise is None else noise_rows[index, block].T, normalize).T
                if needs_grad:
                    decoded.append(kernels)
                else:
                    rows[index, block] = kernels
        if needs_grad:
            rows = torch.stack(decoded)
        return rows.reshape(num, height, width, taps).permute(0, 3, 1, 2)

    def _decode_columns(self, code: torch.Tensor, sigma: torch.Tensor, noise: Optional[torch.Tensor],
                        normalize: bool) -> torch.Tensor:
        """code (L, P) raw, sigma (1, P), noise (L, P) or None -> kernels (L, P): eq. (5)-(6), then the flow."""
        code = torch.softmax(code, dim=0)
        centred = code - code.mean(dim=0, keepdim=True)
        # unbiased std, no epsilon (published); as a norm: one fast pass (torch.std_mean over dim 0 is 50x slower)
        std = torch.linalg.vector_norm(centred, dim=0, keepdim=True) / math.sqrt(code.shape[0] - 1)
        z_hat = resample_codes(centred / std, sigma, noise is not None, noise=noise)
        return self.flow.decode_columns(z_hat, normalize=normalize)

    def estimate_field(self, lq: torch.Tensor, sample: Optional[bool] = None,
                       generator: Optional[torch.Generator] = None, lazy: bool = False) -> KernelField:
        """The blur field of ``lq`` (N, C, H, W): a :class:`KernelField` of (N, K*K, H, W) kernels, or with ``lazy``
        a :class:`LatentKernelField` that decodes only the pixels asked for."""
        features, size = self._trunk(lq)
        sample = self._sampling(sample)
        if lazy:
            return LatentKernelField(self, features, size, sample, generator)
        kernels, _ = self._decode_features(features, size, sample, generator)
        return KernelField(kernels, padding=self.field_padding, check=False)  # normalised by the flow's decode


@ARCH_REGISTRY.register()
class FlowKernelEstimator(LatentKernelEstimation, nn.Module):
    """UFPNet's kernel-estimation network (KE-Net): latent code + uncertainty, decoded by a frozen flow prior.

    Args:
        img_channel (int): input channels. Default: 3.
        kernel_size (int): K of the kernels and of the flow prior. Default: 19.
        num_feat (int): U-Net width F (levels F, 2F, 4F). Default: 64 (published).
        flow_num_block (int): blocks of the flow prior. Default: 5.
        flow_hidden_size (int): hidden width of the flow's MLPs. Default: 25.
        sample_at_test (bool): keep the uncertainty noise in eval mode (published behaviour). Default: False.
        freeze_prior (bool): keep the flow fixed (no gradients, eval-mode statistics). Default: True.
        padding (str): boundary mode of the returned field ('replicate', 'reflect', 'zeros'). Default: 'replicate'.
        input_cues (str, optional): ``'autocorrelation'`` feeds G the image concatenated with its
            :class:`~basicsr_blurfield.archs.blur_cues.DerivativeAutocorrelation` cues (ours, not published: G's first
            conv then takes ``C + 177`` channels, so published weights do not load). Default: None (published).

    Shape:
        ``forward(lq)``: (N, C, H, W) -> KernelField with kernels (N, K*K, H, W).
    """

    def __init__(self,
                 img_channel: int = 3,
                 kernel_size: int = 19,
                 num_feat: int = 64,
                 flow_num_block: int = 5,
                 flow_hidden_size: int = 25,
                 sample_at_test: bool = False,
                 freeze_prior: bool = True,
                 padding: str = 'replicate',
                 input_cues: Optional[str] = None):
        super().__init__()
        self._build_kernel_estimation(img_channel, kernel_size, num_feat, flow_num_block, flow_hidden_size,
                                      sample_at_test, freeze_prior, padding, input_cues)

    def forward(self, lq: torch.Tensor, sample: Optional[bool] = None,
                generator: Optional[torch.Generator] = None, lazy: bool = False) -> KernelField:
        """Estimates the blur field of ``lq``; see :meth:`LatentKernelEstimation.estimate_field`."""
        return self.estimate_field(lq, sample, generator, lazy)
