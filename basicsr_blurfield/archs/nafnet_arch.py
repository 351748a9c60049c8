"""NAFNet of Chen et al., ECCV 2022, "Simple Baselines for Image Restoration" (§3, Fig. 3c), and its TLC variant.

NAFBlock (nonlinear-activation-free block), for an input x with c channels:

    y = x + beta * conv3(SCA(SG(dwconv3x3(conv1(LN(x))))))      SG(a) = a_1 * a_2 (the two channel halves)
    out = y + gamma * conv5(SG(conv4(LN(y))))                    SCA(a) = a * conv1x1(avgpool(a))

with LN a layer norm over channels at each pixel (eps 1e-6), conv1: c -> DW_Expand * c, conv4: c -> FFN_Expand * c,
and beta, gamma learnable (1, c, 1, 1) scales initialised to 0. NAFNet is a U-Net of NAFBlocks: a 3x3 intro conv,
encoder levels (``enc_blk_nums`` blocks each) joined by stride-2 2x2 convs that double the width, ``middle_blk_num``
blocks, decoder levels whose up-sampling is a bias-free 1x1 conv + PixelShuffle(2), additive skips, a 3x3 ending
conv and a global residual (output = ending + input). The input is zero-padded at the bottom/right to a multiple of
2 ** len(enc_blk_nums) and the output cropped back.

Attribute names (``intro``, ``encoders``, ``middle_blks``, ``decoders``, ``ups``, ``downs``, ``ending``, block
``norm1``, ``conv1`` .. ``conv5``, ``sca.1``, ``beta``, ``gamma``) are those of the published checkpoints, so
official state dicts load by name (``NAFNet-GoPro-width64.pth``: ``params``; see :func:`remap_official_keys`).

``NAFNetLocal`` is NAFNet with test-time local statistics (:mod:`basicsr_blurfield.archs.tlc`), as used for the
published GoPro numbers (``train_size=(1, 3, 256, 256)``, base size 384).

Reference: Chen et al., ECCV 2022, §3.3-3.4; Chu et al., ECCV 2022 (TLC). Written from the papers.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import channels_last_on_cpu, crop_to, pad_to_multiple
from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
from basicsr_blurfield.archs.tlc import replace_global_pooling

__all__ = ['NAFBlock', 'NAFNet', 'NAFNetLocal', 'remap_official_keys']


class _LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel: (x - mean_c) / sqrt(var_c + eps) * weight + bias.

    Shape: (N, C, H, W) -> (N, C, H, W); ``weight`` and ``bias`` are (C,).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm over the last dim of the channels-last view: the same maths, one pass, no copy when x is
        # channels-last (7x faster than var_mean over dim 1 on CPU)
        return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1], ), self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class _PointwiseConv(nn.Conv2d):
    """1x1 convolution (an ``nn.Conv2d``, same parameters and state dict) that uses oneDNN on CPU in every case.

    PyTorch sends 1x1 convs of a batch below 16 on one thread to its native im2col path, which measured 1.8-2.3x
    slower than oneDNN on the NAFBlock shapes here (e.g. 512 -> 1024 channels at 32x32: 44 ms vs 20-25 ms); with
    more threads or larger batches PyTorch already picks oneDNN. Same values up to float rounding, with autograd.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == 'cpu' and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.mkldnn_convolution(x, self.weight, self.bias, (0, 0), (1, 1), (1, 1), 1)
        return super().forward(x)


def _simple_gate(x: torch.Tensor) -> torch.Tensor:
    """SimpleGate: splits the channels in two halves and multiplies them, (N, 2C, H, W) -> (N, C, H, W)."""
    first, second = x.chunk(2, dim=1)
    return first * second


class NAFBlock(nn.Module):
    """One NAFBlock (module docstring, §3.4 of the paper).

    Args:
        c (int): number of channels.
        DW_Expand (int): expansion of the depth-wise branch (conv1 gives DW_Expand * c channels). Default: 2.
        FFN_Expand (int): expansion of the feed-forward branch (conv4 gives FFN_Expand * c channels). Default: 2.
        drop_out_rate (float): dropout after each branch; 0 disables it. Default: 0.

    Shape:
        (N, c, H, W) -> (N, c, H, W).
    """

    def __init__(self, c: int, DW_Expand: int = 2, FFN_Expand: int = 2, drop_out_rate: float = 0.):
        super().__init__()
        dw_channel = c * DW_Expand
        ffn_channel = c * FFN_Expand
        self.conv1 = _PointwiseConv(c, dw_channel)
        self.conv2 = nn.Conv2d(dw_channel, dw_channel, 3, padding=1, groups=dw_channel)
        self.conv3 = _PointwiseConv(dw_channel // 2, c)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), _PointwiseConv(dw_channel // 2, dw_channel // 2))
        self.conv4 = _PointwiseConv(c, ffn_channel)
        self.conv5 = _PointwiseConv(ffn_channel // 2, c)
        self.norm1 = _LayerNorm2d(c)
        self.norm2 = _LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.gamma = nn.Parameter(torch.zeros((1, c, 1, 1)))

    # kernel-guided networks may hand the first branch other features than the residual (KernelGuidedMixin)
    accepts_branch_input = True

    def forward(self, inp: torch.Tensor, branch: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Runs the block; ``branch`` (N, c, H, W), if given, feeds the first branch instead of ``inp`` while the
        first residual stays on ``inp``: ``y = inp + beta * conv3(SCA(SG(dwconv(conv1(LN(branch))))))`` (UFPNet's
        kernel block, where ``branch`` is the kernel attention's output)."""
        x = _simple_gate(self.conv2(self.conv1(self.norm1(inp if branch is None else branch))))
        x = self.conv3(x * self.sca(x))
        y = inp + self.dropout1(x) * self.beta
        x = self.conv5(_simple_gate(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma


@ARCH_REGISTRY.register()
class NAFNet(nn.Module):
    """NAFNet U-Net (module docstring). The published GoPro model is width 64, enc_blk_nums (1, 1, 1, 28).

    Args:
        img_channel (int): input and output channels. Default: 3.
        width (int): channels of the first level (doubled at each encoder level). Default: 16.
        middle_blk_num (int): NAFBlocks at the bottleneck. Default: 1.
        enc_blk_nums (tuple): NAFBlocks per encoder level, top to bottom. Default: (1, 1, 1, 28).
        dec_blk_nums (tuple): NAFBlocks per decoder level, bottom to top; same length. Default: (1, 1, 1, 1).

    Attributes:
        padder_size (int): 2 ** len(enc_blk_nums); inputs are padded to a multiple of it internally.
        size_multiple (int): the same number, read by the models (any input size works anyway).

    Shape:
        (N, img_channel, H, W) -> (N, img_channel, H, W), any H and W.
    """

    def __init__(self,
                 img_channel: int = 3,
                 width: int = 16,
                 middle_blk_num: int = 1,
                 enc_blk_nums: tuple = (1, 1, 1, 28),
                 dec_blk_nums: tuple = (1, 1, 1, 1)):
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f'enc_blk_nums and dec_blk_nums must have the same length (one entry per level), got '
                             f'{tuple(enc_blk_nums)} and {tuple(dec_blk_nums)}')
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.Sequential()  # filled below; declared here to keep the published state-dict order
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blk_num)])
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(_PointwiseConv(chan, chan * 2, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
        self.padder_size = 2**len(self.encoders)

    @property
    def size_multiple(self) -> int:
        return self.padder_size

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        if inp.dim() != 4:
            raise ValueError(f'{type(self).__name__}: expected (N, C, H, W), got shape {tuple(inp.shape)}')
        padded, size = pad_to_multiple(inp, self.padder_size, mode='constant')
        padded = channels_last_on_cpu(padded)
        x = self.intro(padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        return crop_to(self.ending(x) + padded, size).contiguous()


@ARCH_REGISTRY.register()
class NAFNetLocal(NAFNet):
    """NAFNet with test-time local statistics (TLC): the SCA global pools become local box means.

    Its parameters and state dict are exactly NAFNet's, so NAFNet checkpoints load unchanged. On images not larger
    than ``base_size`` (after padding to ``size_multiple``) it equals NAFNet.

    Args:
        img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums: as :class:`NAFNet`.
        train_size (tuple): (N, C, H_t, W_t) training crop size. Default: (1, 3, 256, 256).
        base_size (int | tuple | None): window in image pixels; None means 1.5 x train size (384). Default: None.
        fast_imp (bool): subsampled approximation of the local means. Default: False.

    Shape:
        (N, img_channel, H, W) -> (N, img_channel, H, W).
    """

    def __init__(self,
                 img_channel: int = 3,
                 width: int = 16,
                 middle_blk_num: int = 1,
                 enc_blk_nums: tuple = (1, 1, 1, 28),
                 dec_blk_nums: tuple = (1, 1, 1, 1),
                 train_size: tuple = (1, 3, 256, 256),
                 base_size=None,
                 fast_imp: bool = False):
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)
        replace_global_pooling(self, base_size=base_size, train_size=train_size, fast_imp=fast_imp)


def remap_official_keys(state: dict) -> dict:
    """Maps a published NAFNet / NAFNetLocal checkpoint to our names (identical: only the wrapper is removed).

    Args:
        state (dict): a state dict, or a checkpoint holding it under ``params`` (BasicSR) or another wrapper key.

    Returns:
        dict: parameter name -> tensor, without a ``module.`` prefix.
    """
    return unwrap_state_dict(state)
