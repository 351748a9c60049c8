"""MIMO-UNet and MIMO-UNet+ of Cho et al., ICCV 2021, "Rethinking Coarse-to-Fine Approach in Single Image
Deblurring" (§3, Fig. 3).

One U-Net with multiple inputs and outputs. The blurry image x (N, C, H, W) and its nearest-neighbour down-samplings
x_2 (1/2) and x_4 (1/4) enter at the three encoder levels: each small image goes through a shallow convolutional
module (SCM, §3.1: convs to out-3 channels, concatenated with the image, 1x1 conv) and is merged with the strided
features by a feature attention module (FAM, §3.1: F + conv3x3(F * SCM(x_s))). Asymmetric feature fusion (AFF, §3.2)
concatenates the encoder features of all three levels (resized to the level) and fuses them (1x1 + 3x3 conv) into
the skip of decoder levels 1 and 2. Each decoder level emits an image: ``[S_4 + x_4, S_2 + x_2, S_1 + x]``, ordered
coarse to fine, trained with a multi-scale content + frequency loss (eq. 5-7).

**The final restored image is the last element** (full resolution); elements 0 and 1 are the 1/4 and 1/2 scale
predictions. With ``return_list=False`` the network returns the last element only.

Encoder/decoder levels are ``num_res`` residual blocks (conv-ReLU-conv + skip) of 32, 64, 128 channels: 8 blocks
for MIMO-UNet (6.8 M parameters), 20 for MIMO-UNet+ (16.1 M), which also applies 2-D dropout (p = 0.1, training
only) to the two AFF outputs. H and W must be divisible by 4: inputs are padded (reflection) to a multiple of 4 and
the outputs cropped back to ceil(H / s) x ceil(W / s) at scale 1/s, so any size works.

Attribute names are those of the published checkpoints (``MIMO-UNet.pkl`` / ``MIMO-UNetPlus.pkl``:
``{'model': state_dict}``), so they load by name through :func:`remap_official_keys`.

Reference: Cho et al., ICCV 2021, §3.1-3.3. Written from the paper and the published parameter layout.
"""

import torch
import torch.nn.functional as F
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_scaled, crop_to, pad_to_multiple
from basicsr_blurfield.archs.checkpoints import unwrap_state_dict

__all__ = ['MIMOUNet', 'MIMOUNetPlus', 'remap_official_keys']


class _BasicConv(nn.Module):
    """Conv (or stride-2 transposed conv of even size) with bias and optional ReLU, as ``main`` Sequential."""

    def __init__(self,
                 in_channel: int,
                 out_channel: int,
                 kernel_size: int,
                 stride: int = 1,
                 relu: bool = True,
                 transpose: bool = False):
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(in_channel, out_channel, kernel_size, stride=stride, padding=kernel_size // 2 - 1)
        else:
            conv = nn.Conv2d(in_channel, out_channel, kernel_size, stride=stride, padding=kernel_size // 2)
        self.main = nn.Sequential(conv, nn.ReLU(inplace=True)) if relu else nn.Sequential(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class _ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x)))."""

    def __init__(self, channel: int):
        super().__init__()
        self.main = nn.Sequential(
            _BasicConv(channel, channel, 3, relu=True), _BasicConv(channel, channel, 3, relu=False))

    accepts_branch_input = True  # MIMOUNetKE's kernel attention sits inside the block (KernelGuidedMixin)

    def forward(self, x: torch.Tensor, branch: 'torch.Tensor | None' = None) -> torch.Tensor:
        """x + main(branch), with ``branch`` = x unless given (the kernel attention's output in MIMOUNetKE)."""
        return self.main(x if branch is None else branch) + x


class _ResStack(nn.Module):
    """``num_res`` residual blocks (an encoder or decoder level)."""

    def __init__(self, channel: int, num_res: int):
        super().__init__()
        self.layers = nn.Sequential(*[_ResBlock(channel) for _ in range(num_res)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _AFF(nn.Module):
    """Asymmetric feature fusion: conv3x3(relu(conv1x1(cat(x1, x2, x4))))."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        self.conv = nn.Sequential(
            _BasicConv(in_channel, out_channel, 1, relu=True), _BasicConv(out_channel, out_channel, 3, relu=False))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x4: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x1, x2, x4], dim=1))


class _SCM(nn.Module):
    """Shallow convolutional module: conv1x1(cat(x, convs(x))) with out_plane channels."""

    def __init__(self, out_plane: int, img_channel: int):
        super().__init__()
        self.main = nn.Sequential(
            _BasicConv(img_channel, out_plane // 4, 3, relu=True),
            _BasicConv(out_plane // 4, out_plane // 2, 1, relu=True),
            _BasicConv(out_plane // 2, out_plane // 2, 3, relu=True),
            _BasicConv(out_plane // 2, out_plane - img_channel, 1, relu=True))
        self.conv = _BasicConv(out_plane, out_plane, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, self.main(x)], dim=1))


class _FAM(nn.Module):
    """Feature attention module: x1 + conv3x3(x1 * x2)."""

    def __init__(self, channel: int):
        super().__init__()
        self.merge = _BasicConv(channel, channel, 3, relu=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x1 + self.merge(x1 * x2)


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode='nearest')


@ARCH_REGISTRY.register()
class MIMOUNet(nn.Module):
    """MIMO-UNet (module docstring). Defaults are the published configuration (6,807,171 parameters).

    Args:
        num_res (int): residual blocks per encoder/decoder level. Default: 8.
        base_channel (int): channels of the first level (x2, x4 below); published 32. Default: 32.
        img_channel (int): image channels. Default: 3.
        drop_rate (float): 2-D dropout on the AFF outputs during training (MIMO-UNet+ uses 0.1). Default: 0.
        return_list (bool): return ``[out_1/4, out_1/2, out_full]``; False returns ``out_full`` only. Default: True.

    Attributes:
        size_multiple (int): 4; inputs are padded to it internally, so any size works.

    Shape:
        (N, img_channel, H, W) -> list of (N, img_channel, ceil(H/4), ceil(W/4)), (N, img_channel, ceil(H/2),
        ceil(W/2)), (N, img_channel, H, W); or the last one alone with ``return_list=False``.
    """

    size_multiple = 4

    def __init__(self,
                 num_res: int = 8,
                 base_channel: int = 32,
                 img_channel: int = 3,
                 drop_rate: float = 0.,
                 return_list: bool = True):
        super().__init__()
        c = base_channel
        self.return_list = bool(return_list)
        self.Encoder = nn.ModuleList([_ResStack(c, num_res), _ResStack(c * 2, num_res), _ResStack(c * 4, num_res)])
        self.feat_extract = nn.ModuleList([
            _BasicConv(img_channel, c, 3, relu=True),
            _BasicConv(c, c * 2, 3, stride=2, relu=True),
            _BasicConv(c * 2, c * 4, 3, stride=2, relu=True),
            _BasicConv(c * 4, c * 2, 4, stride=2, relu=True, transpose=True),
            _BasicConv(c * 2, c, 4, stride=2, relu=True, transpose=True),
            _BasicConv(c, img_channel, 3, relu=False)
        ])
        self.Decoder = nn.ModuleList([_ResStack(c * 4, num_res), _ResStack(c * 2, num_res), _ResStack(c, num_res)])
        self.Convs = nn.ModuleList([_BasicConv(c * 4, c * 2, 1, relu=True), _BasicConv(c * 2, c, 1, relu=True)])
        self.ConvsOut = nn.ModuleList(
            [_BasicConv(c * 4, img_channel, 3, relu=False),
             _BasicConv(c * 2, img_channel, 3, relu=False)])
        self.AFFs = nn.ModuleList([_AFF(c * 7, c), _AFF(c * 7, c * 2)])
        self.FAM1 = _FAM(c * 4)
        self.SCM1 = _SCM(c * 4, img_channel)
        self.FAM2 = _FAM(c * 2)
        self.SCM2 = _SCM(c * 2, img_channel)
        self.drop1 = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.drop2 = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()

    def _forward_padded(self, x: torch.Tensor) -> list:
        x_2 = _resize(x, 0.5)
        x_4 = _resize(x_2, 0.5)
        z2 = self.SCM2(x_2)
        z4 = self.SCM1(x_4)
        res1 = self.Encoder[0](self.feat_extract[0](x))
        res2 = self.Encoder[1](self.FAM2(self.feat_extract[1](res1), z2))
        z = self.Encoder[2](self.FAM1(self.feat_extract[2](res2), z4))
        z42 = _resize(z, 2)
        fused2 = self.drop2(self.AFFs[1](_resize(res1, 0.5), res2, z42))
        fused1 = self.drop1(self.AFFs[0](res1, _resize(res2, 2), _resize(z42, 2)))
        outputs = []
        z = self.Decoder[0](z)
        outputs.append(self.ConvsOut[0](z) + x_4)
        z = self.Decoder[1](self.Convs[0](torch.cat([self.feat_extract[3](z), fused2], dim=1)))
        outputs.append(self.ConvsOut[1](z) + x_2)
        z = self.Decoder[2](self.Convs[1](torch.cat([self.feat_extract[4](z), fused1], dim=1)))
        outputs.append(self.feat_extract[5](z) + x)
        return outputs

    def forward(self, x: torch.Tensor) -> 'torch.Tensor | list':
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__}: expected (N, C, H, W), got shape {tuple(x.shape)}')
        padded, (height, width) = pad_to_multiple(x, self.size_multiple)
        outputs = self._forward_padded(padded)
        if not self.return_list:
            return crop_to(outputs[-1], (height, width))
        return crop_scaled(list(outputs), (height, width), padded.shape[-2])


@ARCH_REGISTRY.register()
class MIMOUNetPlus(MIMOUNet):
    """MIMO-UNet+: 20 residual blocks per level and dropout 0.1 on the AFF outputs (16,107,651 parameters).

    Args: as :class:`MIMOUNet`, with defaults ``num_res=20``, ``drop_rate=0.1``.

    Shape: as :class:`MIMOUNet`.
    """

    def __init__(self,
                 num_res: int = 20,
                 base_channel: int = 32,
                 img_channel: int = 3,
                 drop_rate: float = 0.1,
                 return_list: bool = True):
        super().__init__(num_res, base_channel, img_channel, drop_rate, return_list)


def remap_official_keys(state: dict) -> dict:
    """Maps a published MIMO-UNet / MIMO-UNet+ checkpoint to our names (identical; the ``model`` wrapper is removed).

    Args:
        state (dict): ``{'model': ..., 'optimizer': ..., ...}`` or a bare state dict.

    Returns:
        dict: parameter name -> tensor.
    """
    return unwrap_state_dict(state)
