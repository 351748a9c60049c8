"""Slow, obvious references for the blur-field operators: explicit loops over pixels, written from the definitions.

Nothing here is shared with the library: padding is an explicit index rule, bilinear interpolation reads four
pixels, and the deformable convolution follows the DCN definition (a sample at or beyond one pixel outside reads 0).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def padded_index(p: int, size: int, padding: str):
    """Image index read by position ``p`` (any int) under ``padding``; None means the value 0."""
    if 0 <= p < size:
        return p
    if padding == 'zeros':
        return None
    if padding == 'replicate':
        return min(max(p, 0), size - 1)
    while not 0 <= p < size:
        p = -p if p < 0 else 2 * (size - 1) - p
    return p


def read(image: torch.Tensor, y: int, x: int, padding: str) -> torch.Tensor:
    """``image[..., y, x]`` of a (C, H, W) image with out-of-range positions read through ``padding``."""
    yy, xx = padded_index(y, image.shape[-2], padding), padded_index(x, image.shape[-1], padding)
    if yy is None or xx is None:
        return image.new_zeros(image.shape[:-2])
    return image[..., yy, xx]


def per_pixel_blur(sharp: torch.Tensor, kernels: torch.Tensor, padding: str) -> torch.Tensor:
    """Gather form, loops over pixels: sharp (N, C, H, W), kernels (N, K, K, H, W) -> (N, C, H, W)."""
    num, _, height, width = sharp.shape
    size = kernels.shape[1]
    radius = size // 2
    out = torch.zeros_like(sharp)
    for n in range(num):
        for y in range(height):
            for x in range(width):
                for i in range(size):
                    for j in range(size):
                        value = read(sharp[n], y + i - radius, x + j - radius, padding)
                        out[n, :, y, x] += kernels[n, i, j, y, x] * value
    return out


def unfold_blur(sharp: torch.Tensor, kernels: torch.Tensor, padding: str) -> torch.Tensor:
    """The published ``F.unfold`` formulation (K*K-times-image memory): kernels (N, K*K, H, W)."""
    num, channels, height, width = sharp.shape
    size = math.isqrt(kernels.shape[1])
    radius = size // 2
    mode = 'constant' if padding == 'zeros' else padding
    columns = F.unfold(F.pad(sharp, (radius, ) * 4, mode=mode), size).view(num, channels, size * size, height, width)
    return (columns * kernels[:, None]).sum(2)


def bilinear_read(image: torch.Tensor, y: float, x: float, padding: str) -> torch.Tensor:
    """Bilinear interpolation of the padded (C, H, W) image at real position (y, x)."""
    y0, x0 = math.floor(y), math.floor(x)
    fy, fx = y - y0, x - x0
    top = (1 - fx) * read(image, y0, x0, padding) + fx * read(image, y0, x0 + 1, padding)
    bottom = (1 - fx) * read(image, y0 + 1, x0, padding) + fx * read(image, y0 + 1, x0 + 1, padding)
    return (1 - fy) * top + fy * bottom


def offset_blur(sharp: torch.Tensor, offsets: torch.Tensor, padding: str) -> torch.Tensor:
    """Eq. (3)-(4) of Zhang et al., loops over pixels: offsets (N, T, 2, H, W) as (dx, dy)."""
    num, _, height, width = sharp.shape
    steps = offsets.shape[1]
    out = torch.zeros_like(sharp)
    for n in range(num):
        for y in range(height):
            for x in range(width):
                for t in range(steps):
                    dx, dy = offsets[n, t, 0, y, x].item(), offsets[n, t, 1, y, x].item()
                    out[n, :, y, x] += bilinear_read(sharp[n], y + dy, x + dx, padding) / steps
    return out


def dcn_sample(image: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """DCN bilinear sampling of a (C, H, W) image: 0 at or beyond one pixel outside, missing corners read 0."""
    height, width = image.shape[-2:]
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return image.new_zeros(image.shape[0])
    return bilinear_read(image, y, x, 'zeros')


def deform_conv_reference(inp, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """Modulated deformable convolution by its definition, loops over output pixels and taps."""
    num, in_channels, height, width = inp.shape
    out_channels, group_channels, kh, kw = weight.shape
    groups = in_channels // group_channels
    out_h, out_w = offset.shape[2:]
    offset_groups = offset.shape[1] // (2 * kh * kw)
    per_offset_group = in_channels // offset_groups
    out = inp.new_zeros(num, out_channels, out_h, out_w)
    for n in range(num):
        for oy in range(out_h):
            for ox in range(out_w):
                columns = inp.new_zeros(in_channels, kh, kw)
                for g in range(offset_groups):
                    for i in range(kh):
                        for j in range(kw):
                            tap = g * kh * kw + i * kw + j
                            y = oy * stride - padding + i * dilation + offset[n, 2 * tap, oy, ox].item()
                            x = ox * stride - padding + j * dilation + offset[n, 2 * tap + 1, oy, ox].item()
                            channels = slice(g * per_offset_group, (g + 1) * per_offset_group)
                            value = dcn_sample(inp[n, channels], y, x)
                            if mask is not None:
                                value = value * mask[n, tap, oy, ox]
                            columns[channels, i, j] = value
                for o in range(out_channels):
                    g = o // (out_channels // groups)
                    out[n, o, oy, ox] = (weight[o] * columns[g * group_channels:(g + 1) * group_channels]).sum()
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def real_image(channels: int, size=(14, 13), dtype=torch.float64) -> torch.Tensor:
    """A small crop of a bundled scikit-image photo: (1, C, H, W) in [0, 1]."""
    from skimage import data as skimage_data

    photo = skimage_data.astronaut() if channels == 3 else skimage_data.camera()[..., None]
    crop = photo[180:180 + 8 * size[0]:8, 200:200 + 8 * size[1]:8].astype(np.float64) / 255
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].to(dtype)
