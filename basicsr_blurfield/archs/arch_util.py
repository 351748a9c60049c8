"""Shared helpers for networks that need input sizes divisible by a multiple (U-Nets): pad, then crop back.

Padding uses reflection where the image is large enough and replication otherwise, so any size (even smaller than
the pad) works; the network's output is cropped back to the input size.
"""
import math

import torch
import torch.nn.functional as F

__all__ = ['pad_to_multiple', 'crop_to', 'crop_scaled', 'channels_last_on_cpu']


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = 'reflect') -> tuple:
    """Pads the bottom and right of ``x`` so that H and W are multiples of ``multiple``.

    Args:
        x (Tensor): (N, C, H, W).
        multiple (int): positive size multiple (e.g. 2**levels of a U-Net).
        mode (str): 'reflect' (falls back to 'replicate' when the pad exceeds the image), 'replicate' or 'constant'.

    Returns:
        tuple: the padded tensor (N, C, H', W') and the original size ``(H, W)`` for :func:`crop_to`.
    """
    if x.dim() != 4:
        raise ValueError(f'pad_to_multiple: expected a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}')
    if int(multiple) < 1:
        raise ValueError(f'pad_to_multiple: multiple must be a positive integer, got {multiple}')
    if mode not in ('reflect', 'replicate', 'constant'):
        raise ValueError(f"pad_to_multiple: invalid mode {mode!r}; expected one of 'reflect', 'replicate', 'constant'")
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (height, width)
    if mode == 'reflect' and (pad_h >= height or pad_w >= width):
        mode = 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (height, width)


def crop_to(x: torch.Tensor, size: tuple) -> torch.Tensor:
    """Crops the top-left ``size = (H, W)`` of ``x`` (N, C, H', W'), undoing :func:`pad_to_multiple`."""
    height, width = size
    return x[..., :height, :width]


def crop_scaled(output, size: tuple, padded_height: int):
    """Crops network output(s) back to the input size, at each output's own scale.

    Args:
        output (Tensor | list | tuple): (N, C, h, w) at scale ``h / padded_height`` of the padded input, or a
            list / tuple of such tensors (multi-scale networks).
        size (tuple): (H, W) of the unpadded input.
        padded_height (int): H of the padded input.

    Returns:
        The same structure, each tensor cropped to ``(ceil(H * s), ceil(W * s))`` at its scale ``s``.
    """
    if torch.is_tensor(output):
        scale = output.shape[-2] / padded_height
        return crop_to(output, (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))
    return type(output)(crop_scaled(item, size, padded_height) for item in output)


def channels_last_on_cpu(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) in channels-last memory format on CPU (unchanged elsewhere).

    On CPU, oneDNN's convolutions are faster in channels-last (measured on this project's networks: 2x for 3x3 convs
    at 64 channels, 3x for depth-wise ones, 2-5x for the 361-channel convs of the kernel-guided networks), and the
    format propagates through the convs and element-wise ops that follow. Values are unchanged.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == 'cpu' else x
