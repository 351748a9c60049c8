"""Encoded blur-kernel space of Tran et al. (CVPR 2021), eq. (3): kernel extractor k = G(x, y) and blur operator
family y = F(x, k), trained jointly by eq. (4) (see ``models/blur_operator_model.py``).

Symbols -> tensors: x = ``sharp`` (N, C, H, W), y = ``blurry`` (N, C, H, W), both in [0, 1]; k = ``code``, a spatial
map (N, D, H / M, W / M) with D = ``code_channels`` (512 published) and M = 4 * 2 ** num_down (128 published), i.e.
a 2 x 2 map at 256 px. The code is not a kernel in the gather-form sense of ``basicsr_blurfield.fields``: it is a
learned latent of the blur operator F(., k), which is non-linear and need not be a convolution.

Both networks start with the same feature extractor (3x3 conv, two stride-2 3x3 convs, each with LeakyReLU(0.1),
then residual blocks ``x + conv(relu(conv(x)))``), giving (N, num_feat, H / 4, W / 4). Published sizes by default:

* G (:class:`BlurKernelExtractor`): features of x and y concatenated (x first), reflect-padded 7x7 conv to 64, ReLU,
  five stride-2 3x3 convs up to 512 channels (64, 128, 256, 512, 512, 512), each with ReLU, four residual blocks with
  reflection padding (replication for maps too small to reflect, e.g. the 1 x 1 code of a 128 px image), no
  biases. The VAE variant (``vae=True``) keeps that map as the mean mu and adds a 1x1 head for
  sigma = softplus(head(mu-trunk)) (our choice; the published layout has no VAE checkpoint), so mean + sigma are
  2 * 512 channels; in training the code is mu + sigma * eps, in eval it is mu.
* F (:class:`BlurOperatorFamily`): F(x, k) = x + Recon(UNet(features(x), k)): a 5-level pix2pix U-Net (4x4 stride-2
  convs, LeakyReLU(0.2) before every down conv but the outermost, ReLU before every transposed conv, bias-free but
  the outermost, Tanh at the outermost) whose innermost level concatenates k to its down-sampled map, then 20
  residual blocks, two (conv to 4 * 64 channels, PixelShuffle(2), LeakyReLU(0.1)), a 3x3 conv + LeakyReLU(0.1) and a
  conv to C channels. The output is not clamped (it is a residual on x). Our initialisation zeroes that last conv,
  so an untrained F is the identity operator F(x, k) = x and training starts from the no-blur baseline (loaded
  weights replace it). In the published U-Net the LeakyReLU before
  a down conv runs in place, so each skip connection carries the LeakyReLU of the level's input; ours computes the
  same function without in-place aliasing.

Any image size: each network pads its inputs (reflection at the bottom / right, :func:`pad_to_multiple`) to its
multiple M and crops its output back; the released code only runs at 256 x 256 (its fixed 2 x 2 codes). A code
whose map does not match F's innermost grid for an image (made from a pair of another size) is fitted by
``code_mode``: ``'resample'`` (bilinear resampling of the map) or ``'global'`` (one code, the spatial mean, at every
cell). A code of batch 1 applies to every image of a batch.

The published ``KernelWizard`` checkpoint holds G and F with one shared feature extractor (49,205,187 parameters):
:func:`remap_extractor_keys` / :func:`remap_operator_keys` give each network its part (both get the features); in
joint training ``BlurOperatorModel`` ties the two feature extractors (``share_features``), so the pair has exactly the
published parameters. Note the released code's comments swap the names F and G; we follow the paper.

Reference: Tran et al., "Explore Image Deblurring via Encoded Blur Kernel Space", CVPR 2021, §3.1, §3.4, Fig. 2.
Written from the paper and the published parameter layout (``bks_kernelwizard_state_dict.json``).
"""
import re

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_to, pad_to_multiple
from basicsr_blurfield.archs.checkpoints import load_published_weights, unwrap_state_dict

__all__ = [
    'BlurKernelExtractor', 'BlurOperatorFamily', 'remap_extractor_keys', 'remap_operator_keys', 'fit_code',
    'load_frozen_blur_space'
]

CODE_MODES = ('resample', 'global')


class _ResidualBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))``, 3x3 convs with biases and zero padding. Shape: (N, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding on all sides; replication where the map is too small to reflect (codes of 1 x 1)."""
    mode = 'reflect' if min(x.shape[-2:]) > pad else 'replicate'
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


class _ReflectResidualBlock(nn.Module):
    """``x + conv2(pad(relu(conv1(pad(x)))))``, bias-free 3x3 convs with reflection padding 1 (G's trunk)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.conv1(_reflect_pad(x, 1)))
        return x + self.conv2(_reflect_pad(hidden, 1))


class _Features(nn.Module):
    """Shared feature extractor: (N, C, H, W) -> (N, num_feat, ceil(H / 4), ceil(W / 4))."""

    def __init__(self, num_in_ch: int, num_feat: int, num_block: int):
        super().__init__()
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.down1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.down2 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.body = nn.Sequential(*[_ResidualBlock(num_feat) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv_first(x), 0.1)
        x = F.leaky_relu(self.down1(x), 0.1)
        x = F.leaky_relu(self.down2(x), 0.1)
        return self.body(x)


class _UNetLevel(nn.Module):
    """One pix2pix U-Net level; the innermost one concatenates the code to its down-sampled map.

    Shape: x (N, outer, h, w), code (N, D, h / 2**depth, w / 2**depth) -> (N, outer, h, w) for the outermost level
    (after Tanh), (N, 2 * outer, h, w) = cat(up, leaky_relu(x)) for the others.
    """

    def __init__(self, outer: int, inner: int, inner_level=None, code_channels: int = 0, outermost: bool = False):
        super().__init__()
        self.outermost = outermost
        self.down = nn.Conv2d(outer, inner, 4, 2, 1, bias=False)
        self.inner = inner_level
        up_in = 2 * inner if inner_level is not None else inner + code_channels
        self.up = nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=outermost)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        skip = x if self.outermost else F.leaky_relu(x, 0.2)
        hidden = self.down(skip)
        hidden = self.inner(hidden, code) if self.inner is not None else torch.cat((hidden, code), dim=1)
        out = self.up(F.relu(hidden))
        return torch.tanh(out) if self.outermost else torch.cat((out, skip), dim=1)


class _Reconstruction(nn.Module):
    """Residual blocks then two x2 PixelShuffle up-samplings: (N, num_feat, h, w) -> (N, num_out_ch, 4h, 4w)."""

    def __init__(self, num_feat: int, num_out_ch: int, num_block: int):
        super().__init__()
        self.body = nn.Sequential(*[_ResidualBlock(num_feat) for _ in range(num_block)])
        self.up1 = nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1)
        self.up2 = nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        x = F.leaky_relu(F.pixel_shuffle(self.up1(x), 2), 0.1)
        x = F.leaky_relu(F.pixel_shuffle(self.up2(x), 2), 0.1)
        return self.conv_last(F.leaky_relu(self.conv_hr(x), 0.1))


def _check_image(name: str, x: torch.Tensor, channels: int) -> None:
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f'{name}: expected an (N, {channels}, H, W) tensor, got {shape}')


def fit_code(code: torch.Tensor, size: tuple, mode: str = 'resample') -> torch.Tensor:
    """Fits a code map to a grid size: unchanged when it matches, else resampled or pooled to one global code.

    Args:
        code (Tensor): (N, D, h, w).
        size (tuple): target (h', w').
        mode (str): ``'resample'`` (bilinear, align_corners False) or ``'global'`` (spatial mean broadcast).

    Returns:
        Tensor: (N, D, h', w').
    """
    if mode not in CODE_MODES:
        raise ValueError(f'code_mode: invalid {mode!r}; expected one of {CODE_MODES}')
    size = tuple(int(s) for s in size)
    if tuple(code.shape[-2:]) == size:
        return code
    if mode == 'global':
        return code.mean(dim=(2, 3), keepdim=True).expand(-1, -1, *size)
    return F.interpolate(code, size=size, mode='bilinear', align_corners=False)


@ARCH_REGISTRY.register()
class BlurKernelExtractor(nn.Module):
    """Kernel extractor G of Tran et al.: (sharp, blurry) -> code map, eq. (3).

    Args:
        num_in_ch (int): image channels C. Default: 3.
        num_feat (int): feature-extractor width. Default: 64.
        num_front_block (int): feature-extractor residual blocks. Default: 10.
        enc_feat (int): width after the 7x7 conv; doubles at each down-sampling up to ``code_channels``. Default: 64.
        num_down (int): stride-2 convs after the 7x7 conv. Default: 5.
        code_channels (int): D. Default: 512.
        num_block (int): residual blocks at the code resolution. Default: 4.
        vae (bool): also predict sigma (mean + sigma); sample mu + sigma * eps in training. Default: False.

    Shape:
        sharp, blurry: (N, C, H, W), any H, W -> code (N, D, ceil(H / M), ceil(W / M)), M = :attr:`size_multiple`.
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_feat: int = 64,
                 num_front_block: int = 10,
                 enc_feat: int = 64,
                 num_down: int = 5,
                 code_channels: int = 512,
                 num_block: int = 4,
                 vae: bool = False):
        super().__init__()
        self.num_in_ch, self.code_channels, self.vae = num_in_ch, code_channels, bool(vae)
        self.size_multiple = 4 * 2**num_down
        self.features = _Features(num_in_ch, num_feat, num_front_block)
        self.conv_first = nn.Conv2d(2 * num_feat, enc_feat, 7, bias=False)
        widths = [min(enc_feat * 2**i, code_channels) for i in range(num_down)] + [code_channels]
        self.downs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1, bias=False) for i in range(num_down))
        self.body = nn.Sequential(*[_ReflectResidualBlock(code_channels) for _ in range(num_block)])
        self.sigma_head = nn.Conv2d(code_channels, code_channels, 1) if self.vae else None

    def encode(self, sharp: torch.Tensor, blurry: torch.Tensor) -> tuple:
        """The code distribution: (mu, sigma), each (N, D, h, w); sigma is None unless ``vae``."""
        _check_image('sharp', sharp, self.num_in_ch)
        _check_image('blurry', blurry, self.num_in_ch)
        if sharp.shape != blurry.shape:
            raise ValueError(f'sharp and blurry must have one shape (one pair), got {tuple(sharp.shape)} and '
                             f'{tuple(blurry.shape)}')
        sharp, _ = pad_to_multiple(sharp, self.size_multiple)
        blurry, _ = pad_to_multiple(blurry, self.size_multiple)
        x = torch.cat((self.features(sharp), self.features(blurry)), dim=1)
        x = F.relu(self.conv_first(_reflect_pad(x, 3)))
        for down in self.downs:
            x = F.relu(down(x))
        mu = self.body(x)
        return mu, (F.softplus(self.sigma_head(mu)) if self.vae else None)

    def forward(self, sharp: torch.Tensor, blurry: torch.Tensor, return_stats: bool = False):
        """The code k = G(x, y): mu, or mu + sigma * eps for a VAE in training mode.

        Returns:
            Tensor: code (N, D, h, w); with ``return_stats``, the tuple (code, mu, sigma or None).
        """
        mu, sigma = self.encode(sharp, blurry)
        code = mu + sigma * torch.randn_like(mu) if self.vae and self.training else mu
        return (code, mu, sigma) if return_stats else code


@ARCH_REGISTRY.register()
class BlurOperatorFamily(nn.Module):
    """Blur operator family F of Tran et al.: (sharp, code) -> blurry, eq. (3); ``F(x, G(x', y'))`` transfers blur.

    Args:
        num_in_ch (int): image channels C. Default: 3.
        num_feat (int): feature-extractor and reconstruction width. Default: 64.
        num_front_block (int): feature-extractor residual blocks. Default: 10.
        num_back_block (int): reconstruction residual blocks. Default: 20.
        unet_feat (int): U-Net base width; level l has min(2 ** (l - 1), 8) * unet_feat channels. Default: 64.
        num_levels (int): U-Net levels. Default: 5.
        code_channels (int): D. Default: 512.
        code_mode (str): how a code of another grid size is fitted, ``'resample'`` or ``'global'`` (see
            :func:`fit_code`). Default: 'resample'.

    Shape:
        sharp: (N, C, H, W), any H, W; code: (N or 1, D, h, w) -> blurry (N, C, H, W), not clamped. The code grid that
        needs no fitting is (ceil(H / M), ceil(W / M)), M = :attr:`size_multiple` (:meth:`code_size`).
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_feat: int = 64,
                 num_front_block: int = 10,
                 num_back_block: int = 20,
                 unet_feat: int = 64,
                 num_levels: int = 5,
                 code_channels: int = 512,
                 code_mode: str = 'resample'):
        super().__init__()
        if code_mode not in CODE_MODES:
            raise ValueError(f'code_mode: invalid {code_mode!r}; expected one of {CODE_MODES}')
        if num_levels < 1:
            raise ValueError(f'num_levels: expected a positive int, got {num_levels}')
        self.num_in_ch, self.code_channels, self.code_mode = num_in_ch, code_channels, code_mode
        self.size_multiple = 4 * 2**num_levels
        self.features = _Features(num_in_ch, num_feat, num_front_block)
        widths = [num_feat] + [unet_feat * min(2**level, 8) for level in range(num_levels)]
        level = None
        for depth in reversed(range(num_levels)):
            level = _UNetLevel(widths[depth], widths[depth + 1], level, code_channels, outermost=depth == 0)
        self.unet = level
        self.recon = _Reconstruction(num_feat, num_in_ch, num_back_block)
        nn.init.zeros_(self.recon.conv_last.weight)
        nn.init.zeros_(self.recon.conv_last.bias)

    def code_size(self, height: int, width: int) -> tuple:
        """The code grid (h, w) of an H x W image: (ceil(H / M), ceil(W / M))."""
        return -(-int(height) // self.size_multiple), -(-int(width) // self.size_multiple)

    def random_code(self,
                    num: int,
                    height: int,
                    width: int,
                    generator: torch.Generator = None,
                    device=None) -> torch.Tensor:
        """Codes drawn from the VAE prior N(0, I) for H x W images: (num, D, h, w) (random blur synthesis)."""
        return torch.randn((int(num), self.code_channels, *self.code_size(height, width)),
                           generator=generator,
                           device=device)

    def forward(self, sharp: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        _check_image('sharp', sharp, self.num_in_ch)
        if not torch.is_tensor(code) or code.dim() != 4 or code.shape[1] != self.code_channels:
            shape = tuple(code.shape) if torch.is_tensor(code) else type(code).__name__
            raise ValueError(f'code: expected an (N, {self.code_channels}, h, w) tensor, got {shape}')
        if code.shape[0] not in (1, sharp.shape[0]):
            raise ValueError(f'code: batch {code.shape[0]} does not match sharp batch {sharp.shape[0]} (use one code '
                             'per image, or a code of batch 1 for all)')
        padded, size = pad_to_multiple(sharp, self.size_multiple)
        grid = (padded.shape[-2] // self.size_multiple, padded.shape[-1] // self.size_multiple)
        code = fit_code(code, grid, self.code_mode).expand(sharp.shape[0], -1, -1, -1)
        out = self.recon(self.unet(self.features(padded), code)) + padded
        return crop_to(out, size)


_FEATURE_NAMES = {0: 'conv_first', 2: 'down1', 4: 'down2'}
_OPERATOR_ONLY = ('adapter.', 'recon_trunk.')


def _remap_features(key: str) -> str:
    """feature_extractor.{0,2,4,6+i.conv*} -> features.{conv_first,down1,down2,body.i.conv*}."""
    match = re.fullmatch(r'feature_extractor\.(\d+)\.(.+)', key)
    index, rest = int(match.group(1)), match.group(2)
    return f'features.{_FEATURE_NAMES[index]}.{rest}' if index < 6 else f'features.body.{index - 6}.{rest}'


def remap_extractor_keys(state: dict) -> dict:
    """The G part of a published ``KernelWizard`` state dict, in :class:`BlurKernelExtractor`'s names.

    Keys outside the published names (a checkpoint of ours) are kept unchanged, and F's published keys (``adapter``,
    ``recon_trunk``) are dropped, so :func:`~basicsr_blurfield.archs.checkpoints.load_published_weights` loads the
    authors' file and ours alike.

    Args:
        state (dict): a checkpoint (wrappers and the ``module.`` prefix are removed first).

    Returns:
        dict: ``features.*``, ``conv_first.weight``, ``downs.i.weight``, ``body.i.conv{1,2}.weight``.
    """
    state = unwrap_state_dict(state)
    out = {}
    for key, value in state.items():
        if key.startswith(_OPERATOR_ONLY):
            continue
        if key.startswith('feature_extractor.'):
            out[_remap_features(key)] = value
        elif not key.startswith('kernel_extractor.model.'):
            out[key] = value
        else:
            match = re.fullmatch(r'kernel_extractor\.model\.(\d+)\.(?:conv_block\.(\d+)\.)?weight', key)
            index, inner = int(match.group(1)), match.group(2)
            if inner is not None:
                out[f'body.{index - 19}.conv{1 if inner == "1" else 2}.weight'] = value
            elif index == 1:
                out['conv_first.weight'] = value
            else:
                out[f'downs.{(index - 4) // 3}.weight'] = value
    return out


def remap_operator_keys(state: dict) -> dict:
    """The F part of a published ``KernelWizard`` state dict, in :class:`BlurOperatorFamily`'s names (G's
    published keys dropped, keys of ours kept unchanged, as :func:`remap_extractor_keys`).

    Returns:
        dict: ``features.*``, ``unet(.inner)*.{down,up}.*``, ``recon.{body.i.conv*,up1,up2,conv_hr,conv_last}.*``.
    """
    state = unwrap_state_dict(state)
    recon_names = {20: 'up1', 23: 'up2', 26: 'conv_hr', 28: 'conv_last'}
    out = {}
    for key, value in state.items():
        if key.startswith('kernel_extractor.'):
            continue
        if key.startswith('feature_extractor.'):
            out[_remap_features(key)] = value
        elif key.startswith('adapter.model.'):
            name = 'unet.' + key[len('adapter.model.'):].replace('submodule.', 'inner.')
            out[re.sub(r'\.(down|up)\.\d+\.', r'.\1.', name)] = value
        elif key.startswith('recon_trunk.'):
            index, rest = key[len('recon_trunk.'):].split('.', 1)
            index = int(index)
            out[f'recon.body.{index}.{rest}' if index < 20 else f'recon.{recon_names[index]}.{rest}'] = value
        else:
            out[key] = value
    return out


REMAP_BY_ARCH = {'BlurKernelExtractor': remap_extractor_keys, 'BlurOperatorFamily': remap_operator_keys}


def load_frozen_blur_space(extractor_opt: dict = None,
                           operator_opt: dict = None,
                           extractor_path: str = None,
                           operator_path: str = None,
                           strict: bool = True) -> tuple:
    """Builds G and F from option dicts (published sizes when None), loads their checkpoints and freezes them.

    Args:
        extractor_opt (dict | None): ``network_g`` options (``type`` optional, must be ``BlurKernelExtractor``).
        operator_opt (dict | None): ``network_f`` options (``type`` optional, must be ``BlurOperatorFamily``).
        extractor_path (str | None): checkpoint of G: ours (``params``) or the authors' ``KernelWizard`` file.
        operator_path (str | None): checkpoint of F (the same ``KernelWizard`` file works for both).
        strict (bool): strict loading. Default: True.

    Returns:
        tuple: (extractor, operator), in eval mode without gradients, on CPU.
    """
    nets = []
    for cls, opt, path in ((BlurKernelExtractor, extractor_opt, extractor_path), (BlurOperatorFamily, operator_opt,
                                                                                  operator_path)):
        opt = dict(opt or {})
        kind = opt.pop('type', cls.__name__)
        if kind != cls.__name__:
            raise ValueError(f'expected a {cls.__name__} option dict, got type {kind!r}')
        net = cls(**opt)
        if path is not None:
            load_published_weights(net, str(path), arch=cls.__name__, strict=strict)
        nets.append(net.eval().requires_grad_(False))
    if nets[0].code_channels != nets[1].code_channels:
        raise ValueError(f'code_channels differ: extractor {nets[0].code_channels}, operator {nets[1].code_channels}')
    return tuple(nets)
