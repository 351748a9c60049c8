"""MPRNet of Zamir et al., CVPR 2021, "Multi-Stage Progressive Image Restoration", deblurring configuration (§3).

Three stages on a pyramid of patches of the blurry input x (N, C, H, W):

* stage 1 splits x into 4 non-overlapping quarters, each through shallow features (conv + CAB) and a shared
  encoder-decoder U-Net of channel attention blocks (CAB: conv-PReLU-conv + channel attention + residual);
  encoder features of neighbouring quarters are concatenated along the width before the decoder.
* stage 2 works on the 2 halves (top/bottom); its encoder receives the stage-1 encoder and decoder features through
  1x1 convs (cross-stage feature fusion, CSFF, §3.3) and the stage-1 supervised-attention features (SAM, §3.2).
* stage 3 works at full resolution with an original-resolution subnetwork (ORSNet: 3 ORBs of ``num_cab`` CABs),
  fed with the stage-2 features.

Each supervised attention module (SAM) predicts a stage image ``img_s = conv2(F) + x_s`` and gates the features with
``sigmoid(conv3(img_s))``. The network returns ``[x + tail(F_3), img_2, img_1]`` (eq. 1 of the paper sums the
Charbonnier and edge losses over the three stages): **element 0 is the final restored image**; 1 and 2 are the
stage-2 and stage-1 predictions, all full resolution. With ``return_list=False`` it returns element 0 only.

The quarter split needs H and W divisible by 8 (2 splits x 2 down-samplings); inputs are padded to a multiple of 8
(reflection, as in the authors' demo) and the outputs cropped back, so any size works. As published, one PReLU
(a single slope) is shared by every CAB: ``parameters()`` counts it once, ``state_dict()`` lists it under each of
its 55 paths (identical values), and strict loading requires all of them.

Attribute names are those of the published checkpoint (``model_deblurring.pth``: ``{'state_dict': ...}``, possibly
with ``module.`` prefixes), so it loads by name through :func:`remap_official_keys`.

Reference: Zamir et al., CVPR 2021, §3.1-3.3, Fig. 2. Written from the paper and the published parameter layout.
"""
import torch
from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY
from basicsr_blurfield.archs.arch_util import crop_to, pad_to_multiple
from basicsr_blurfield.archs.checkpoints import unwrap_state_dict

__all__ = ['MPRNet', 'remap_official_keys']


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class _CALayer(nn.Module):
    """Channel attention: x * sigmoid(W2 relu(W1 avgpool(x))), W1: C -> C / reduction."""

    def __init__(self, channel: int, reduction: int, bias: bool):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, bias=bias), nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, bias=bias), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class _CAB(nn.Module):
    """Channel attention block: x + CA(conv(act(conv(x))))."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        self.CA = _CALayer(n_feat, reduction, bias)
        self.body = nn.Sequential(
            _conv(n_feat, n_feat, kernel_size, bias), act, _conv(n_feat, n_feat, kernel_size, bias))

    accepts_branch_input = True  # MPRNetKE's kernel attention sits inside the block (KernelGuidedMixin)

    def forward(self, x: torch.Tensor, branch: 'torch.Tensor | None' = None) -> torch.Tensor:
        """x + CA(body(branch)), with ``branch`` = x unless given (the kernel attention's output in MPRNetKE)."""
        return self.CA(self.body(x if branch is None else branch)) + x


def _cabs(count: int, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(*[_CAB(n_feat, kernel_size, reduction, bias, act) for _ in range(count)])


class _SAM(nn.Module):
    """Supervised attention module: returns (F + conv1(F) * sigmoid(conv3(img)), img = conv2(F) + x_img)."""

    def __init__(self, n_feat: int, kernel_size: int, bias: bool, img_channel: int):
        super().__init__()
        self.conv1 = _conv(n_feat, n_feat, kernel_size, bias)
        self.conv2 = _conv(n_feat, img_channel, kernel_size, bias)
        self.conv3 = _conv(img_channel, n_feat, kernel_size, bias)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor) -> tuple:
        img = self.conv2(x) + x_img
        return self.conv1(x) * torch.sigmoid(self.conv3(img)) + x, img


class _DownSample(nn.Module):
    """Bilinear 1/2 down-sampling + bias-free 1x1 conv, C -> C + s_factor."""

    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode='bilinear', align_corners=False),
            nn.Conv2d(in_channels, in_channels + s_factor, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class _UpSample(nn.Module):
    """Bilinear x2 up-sampling + bias-free 1x1 conv, C + s_factor -> C; with a skip, adds it."""

    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
            nn.Conv2d(in_channels + s_factor, in_channels, 1, bias=False))

    def forward(self, x: torch.Tensor, skip: torch.Tensor = None) -> torch.Tensor:
        x = self.up(x)
        return x if skip is None else x + skip


class _Encoder(nn.Module):
    """Three-level CAB encoder; with ``csff`` it adds 1x1-projected encoder/decoder features of the previous stage."""

    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.encoder_level1 = _cabs(2, widths[0], kernel_size, reduction, bias, act)
        self.encoder_level2 = _cabs(2, widths[1], kernel_size, reduction, bias, act)
        self.encoder_level3 = _cabs(2, widths[2], kernel_size, reduction, bias, act)
        self.down12 = _DownSample(widths[0], scale_unetfeats)
        self.down23 = _DownSample(widths[1], scale_unetfeats)
        self.csff = csff
        if csff:
            for i, width in enumerate(widths, start=1):
                setattr(self, f'csff_enc{i}', nn.Conv2d(width, width, 1, bias=bias))
            for i, width in enumerate(widths, start=1):
                setattr(self, f'csff_dec{i}', nn.Conv2d(width, width, 1, bias=bias))

    def forward(self, x: torch.Tensor, encoder_outs: list = None, decoder_outs: list = None) -> list:
        outs = []
        levels = (self.encoder_level1, self.encoder_level2, self.encoder_level3)
        downs = (self.down12, self.down23, None)
        for i, (level, down) in enumerate(zip(levels, downs)):
            x = level(x)
            if self.csff and encoder_outs is not None:
                x = (
                    x + getattr(self, f'csff_enc{i + 1}')(encoder_outs[i]) +
                    getattr(self, f'csff_dec{i + 1}')(decoder_outs[i]))
            outs.append(x)
            if down is not None:
                x = down(x)
        return outs


class _Decoder(nn.Module):
    """Three-level CAB decoder with CAB-refined skips; returns the features of every level, top first."""

    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.decoder_level1 = _cabs(2, widths[0], kernel_size, reduction, bias, act)
        self.decoder_level2 = _cabs(2, widths[1], kernel_size, reduction, bias, act)
        self.decoder_level3 = _cabs(2, widths[2], kernel_size, reduction, bias, act)
        self.skip_attn1 = _CAB(widths[0], kernel_size, reduction, bias, act)
        self.skip_attn2 = _CAB(widths[1], kernel_size, reduction, bias, act)
        self.up21 = _UpSample(widths[0], scale_unetfeats)
        self.up32 = _UpSample(widths[1], scale_unetfeats)

    def forward(self, outs: list) -> list:
        enc1, enc2, enc3 = outs
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class _ORB(nn.Module):
    """Original-resolution block: x + conv(CAB^num_cab(x))."""

    def __init__(self, n_feat, kernel_size, reduction, act, bias, num_cab):
        super().__init__()
        blocks = [_CAB(n_feat, kernel_size, reduction, bias, act) for _ in range(num_cab)]
        self.body = nn.Sequential(*blocks, _conv(n_feat, n_feat, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class _ORSNet(nn.Module):
    """Stage-3 subnetwork: 3 ORBs; after ORB i, the stage-2 level-i encoder/decoder features are up-sampled to full
    resolution and added through 1x1 convs."""

    def __init__(self, n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias, scale_unetfeats, num_cab):
        super().__init__()
        width = n_feat + scale_orsnetfeats
        self.orb1 = _ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.orb2 = _ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.orb3 = _ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.up_enc1 = _UpSample(n_feat, scale_unetfeats)
        self.up_dec1 = _UpSample(n_feat, scale_unetfeats)
        self.up_enc2 = nn.Sequential(
            _UpSample(n_feat + scale_unetfeats, scale_unetfeats), _UpSample(n_feat, scale_unetfeats))
        self.up_dec2 = nn.Sequential(
            _UpSample(n_feat + scale_unetfeats, scale_unetfeats), _UpSample(n_feat, scale_unetfeats))
        for name in ('conv_enc1', 'conv_enc2', 'conv_enc3', 'conv_dec1', 'conv_dec2', 'conv_dec3'):
            setattr(self, name, nn.Conv2d(n_feat, width, 1, bias=bias))

    def forward(self, x: torch.Tensor, encoder_outs: list, decoder_outs: list) -> torch.Tensor:
        x = self.orb1(x) + self.conv_enc1(encoder_outs[0]) + self.conv_dec1(decoder_outs[0])
        x = self.orb2(x) + self.conv_enc2(self.up_enc1(encoder_outs[1])) + self.conv_dec2(self.up_dec1(decoder_outs[1]))
        return self.orb3(x) + self.conv_enc3(self.up_enc2(encoder_outs[2])) + self.conv_dec3(
            self.up_dec2(decoder_outs[2]))


def _cat_features(first: list, second: list, dim: int) -> list:
    return [torch.cat((a, b), dim) for a, b in zip(first, second)]


@ARCH_REGISTRY.register()
class MPRNet(nn.Module):
    """MPRNet for deblurring (module docstring). Defaults are the published GoPro configuration (20.1 M parameters).

    Args:
        in_c (int): input channels. Default: 3.
        out_c (int): output channels (stage images are ``in_c``; equal in the published model). Default: 3.
        n_feat (int): channels of the first U-Net level. Default: 96.
        scale_unetfeats (int): channels added per U-Net level. Default: 48.
        scale_orsnetfeats (int): channels added in ORSNet (n_feat + this). Default: 32.
        num_cab (int): CABs per ORB. Default: 8.
        kernel_size (int): convolution size. Default: 3.
        reduction (int): channel-attention reduction. Default: 4.
        bias (bool): convolution biases. Default: False.
        return_list (bool): return ``[final, stage2, stage1]``; False returns the final image only. Default: True.

    Attributes:
        size_multiple (int): 8; inputs are padded to it internally, so any size works.

    Shape:
        (N, in_c, H, W) -> list of 3 tensors (N, out_c, H, W), or one such tensor with ``return_list=False``.
    """

    size_multiple = 8

    def __init__(self,
                 in_c: int = 3,
                 out_c: int = 3,
                 n_feat: int = 96,
                 scale_unetfeats: int = 48,
                 scale_orsnetfeats: int = 32,
                 num_cab: int = 8,
                 kernel_size: int = 3,
                 reduction: int = 4,
                 bias: bool = False,
                 return_list: bool = True):
        super().__init__()
        self.return_list = bool(return_list)
        act = nn.PReLU()
        unet_args = (n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        for i in (1, 2, 3):
            setattr(
                self, f'shallow_feat{i}',
                nn.Sequential(_conv(in_c, n_feat, kernel_size, bias), _CAB(n_feat, kernel_size, reduction, bias, act)))
        self.stage1_encoder = _Encoder(*unet_args, csff=False)
        self.stage1_decoder = _Decoder(*unet_args)
        self.stage2_encoder = _Encoder(*unet_args, csff=True)
        self.stage2_decoder = _Decoder(*unet_args)
        self.stage3_orsnet = _ORSNet(n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias, scale_unetfeats,
                                     num_cab)
        self.sam12 = _SAM(n_feat, 1, bias, in_c)
        self.sam23 = _SAM(n_feat, 1, bias, in_c)
        self.concat12 = _conv(n_feat * 2, n_feat, kernel_size, bias)
        self.concat23 = _conv(n_feat * 2, n_feat + scale_orsnetfeats, kernel_size, bias)
        self.tail = _conv(n_feat + scale_orsnetfeats, out_c, kernel_size, bias)

    def _forward_padded(self, x3_img: torch.Tensor) -> list:
        height, width = x3_img.shape[-2:]
        half_h, half_w = height // 2, width // 2
        x2_imgs = [x3_img[..., :half_h, :], x3_img[..., half_h:, :]]
        # Stage 1: four quarters (left/right of each half) through one encoder, joined along the width.
        feat1, res1, sam_feats, stage1_imgs = [], [], [], []
        for x2_img in x2_imgs:
            quarters = [
                self.stage1_encoder(self.shallow_feat1(x2_img[..., :half_w])),
                self.stage1_encoder(self.shallow_feat1(x2_img[..., half_w:]))
            ]
            feat = _cat_features(quarters[0], quarters[1], dim=3)
            res = self.stage1_decoder(feat)
            sam_feat, stage1_img = self.sam12(res[0], x2_img)
            feat1.append(feat)
            res1.append(res)
            sam_feats.append(sam_feat)
            stage1_imgs.append(stage1_img)
        # Stage 2: two halves, with cross-stage feature fusion from stage 1, joined along the height.
        feat2 = []
        for x2_img, sam_feat, feat, res in zip(x2_imgs, sam_feats, feat1, res1):
            x2_cat = self.concat12(torch.cat([self.shallow_feat2(x2_img), sam_feat], 1))
            feat2.append(self.stage2_encoder(x2_cat, feat, res))
        feat2 = _cat_features(feat2[0], feat2[1], dim=2)
        res2 = self.stage2_decoder(feat2)
        x3_samfeats, stage2_img = self.sam23(res2[0], x3_img)
        # Stage 3: full resolution.
        x3_cat = self.concat23(torch.cat([self.shallow_feat3(x3_img), x3_samfeats], 1))
        stage3_img = self.tail(self.stage3_orsnet(x3_cat, feat2, res2)) + x3_img
        return [stage3_img, stage2_img, torch.cat(stage1_imgs, 2)]

    def forward(self, x: torch.Tensor) -> 'torch.Tensor | list':
        if x.dim() != 4:
            raise ValueError(f'MPRNet: expected (N, C, H, W), got shape {tuple(x.shape)}')
        padded, size = pad_to_multiple(x, self.size_multiple)
        outputs = [crop_to(image, size) for image in self._forward_padded(padded)]
        return outputs if self.return_list else outputs[0]


def remap_official_keys(state: dict) -> dict:
    """Maps a published MPRNet checkpoint to our names (identical; the ``state_dict`` wrapper and ``module.`` prefix
    are removed).

    Args:
        state (dict): ``{'state_dict': ..., 'epoch': ..., 'optimizer': ...}`` or a bare state dict.

    Returns:
        dict: parameter name -> tensor, including all 55 aliases of the shared PReLU slope.
    """
    return unwrap_state_dict(state)
