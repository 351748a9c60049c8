"""GoPro / HIDE leaderboard metrics on saved uint8 RGB results, registered in BasicSR's METRIC_REGISTRY.

The published protocol (MPRNet's MATLAB script, reused by NAFNet and UFPNet, Fang et al. CVPR 2023 Table 1):
PSNR and SSIM between the saved 8-bit result and the 8-bit ground truth, all three colour channels, no border crop,
no Y channel.

* PSNR = 10 log10(255^2 / MSE), MSE over all H * W * 3 entries in float64 (:func:`calculate_psnr_uint8_rgb`).
* SSIM (published default) = MATLAB's volumetric SSIM over the H x W x 3 array (:func:`calculate_ssim_matlab3d`,
  see ``ssim.py``). The per-channel 2-D SSIM most Python code computes is offered as
  :func:`calculate_ssim_per_channel`; it gives lower numbers on the same pair.

BasicSR calls these as ``calculate_metric(dict(img=restored, img2=gt), opt)`` with the uint8 HWC BGR arrays of
``tensor2img``. Every quantity here is invariant to the channel order, so BGR and RGB give identical values.
YAML::

    val:
      metrics:
        psnr: {type: calculate_psnr_uint8_rgb}
        ssim: {type: calculate_ssim_matlab3d}
"""
import numpy as np

from basicsr.utils.registry import METRIC_REGISTRY
from basicsr_blurfield.metrics.ssim import ssim_per_channel, ssim_volumetric

_INPUT_ORDERS = ('HWC', 'CHW')


def prepare_uint8_pair(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, input_order: str = 'HWC') -> tuple:
    """Checks two uint8 images, brings them to HWC and crops ``crop_border`` pixels from every edge.

    Args:
        img (ndarray): restored image, uint8, (H, W, C) or (C, H, W) as given by ``input_order``, or (H, W).
        img2 (ndarray): ground truth, same shape and dtype.
        crop_border (int): pixels removed at each edge (0 for the leaderboards). Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        tuple[ndarray, ndarray]: the two (H', W', C) uint8 arrays (C = 1 for grey input).

    Raises:
        TypeError: when an image is not uint8 (the protocol scores the saved 8-bit files).
        ValueError: on a shape mismatch, an unknown ``input_order`` or a crop larger than the image.
    """
    if input_order not in _INPUT_ORDERS:
        raise ValueError(f'input_order: expected one of {_INPUT_ORDERS}, got {input_order!r}')
    for name, array in (('img', img), ('img2', img2)):
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
            kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise TypeError(f'{name}: expected a uint8 numpy array (the saved 8-bit image, e.g. from tensor2img), '
                            f'got {kind}')
    if img.shape != img2.shape:
        raise ValueError(f'img and img2 must have the same shape, got {img.shape} and {img2.shape}')
    if img.ndim == 2:
        img, img2 = img[..., None], img2[..., None]
    elif img.ndim != 3:
        raise ValueError(f'expected (H, W, C), (C, H, W) or (H, W) images, got shape {img.shape}')
    elif input_order == 'CHW':
        img, img2 = img.transpose(1, 2, 0), img2.transpose(1, 2, 0)
    crop_border = int(crop_border)
    if crop_border < 0 or 2 * crop_border >= min(img.shape[:2]):
        raise ValueError(f'crop_border: expected 0 <= crop_border < {min(img.shape[:2]) // 2 + 1} for an image of '
                         f'size {img.shape[:2]}, got {crop_border}')
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    return img, img2


def psnr_uint8(img: np.ndarray, img2: np.ndarray) -> float:
    """PSNR of two uint8 arrays, 10 log10(255^2 / MSE) with the MSE over every entry in float64.

    Args:
        img (ndarray): uint8, any shape.
        img2 (ndarray): uint8, same shape.

    Returns:
        float: PSNR in dB; ``inf`` for identical images.
    """
    mse = np.mean((img.astype(np.float64) - img2.astype(np.float64))**2)
    return float('inf') if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


@METRIC_REGISTRY.register()
def calculate_psnr_uint8_rgb(img: np.ndarray,
                             img2: np.ndarray,
                             crop_border: int = 0,
                             input_order: str = 'HWC',
                             **kwargs) -> float:
    """GoPro / HIDE PSNR: 10 log10(255^2 / MSE) over all pixels and the three channels of the uint8 images.

    Args:
        img (ndarray): restored image, uint8, (H, W, 3) BGR or RGB (the value does not depend on the order).
        img2 (ndarray): ground truth, same shape and dtype.
        crop_border (int): pixels removed at each edge; the leaderboards use 0. Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        float: PSNR in dB (``inf`` when the images are identical).
    """
    return psnr_uint8(*prepare_uint8_pair(img, img2, crop_border, input_order))


@METRIC_REGISTRY.register()
def calculate_ssim_matlab3d(img: np.ndarray,
                            img2: np.ndarray,
                            crop_border: int = 0,
                            input_order: str = 'HWC',
                            **kwargs) -> float:
    """GoPro / HIDE SSIM as published: MATLAB ``ssim`` on the RGB volume (11 x 11 x 11 Gaussian, sigma 1.5).

    Args:
        img (ndarray): restored image, uint8, (H, W, 3) BGR or RGB (the value does not depend on the order).
        img2 (ndarray): ground truth, same shape and dtype.
        crop_border (int): pixels removed at each edge; the leaderboards use 0. Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        float: mean of the volumetric SSIM map, L = 255.
    """
    return ssim_volumetric(*prepare_uint8_pair(img, img2, crop_border, input_order), data_range=255.0)


@METRIC_REGISTRY.register()
def calculate_ssim_per_channel(img: np.ndarray,
                               img2: np.ndarray,
                               crop_border: int = 0,
                               input_order: str = 'HWC',
                               **kwargs) -> float:
    """Per-channel 2-D SSIM (valid 11 x 11 Gaussian windows, sigma 1.5), averaged over the channels.

    The common Python SSIM (BasicSR's ``calculate_ssim`` without Y channel); not the published GoPro/HIDE SSIM,
    which is :func:`calculate_ssim_matlab3d` and comes out higher.

    Args:
        img (ndarray): restored image, uint8, (H, W, 3) BGR or RGB (the value does not depend on the order).
        img2 (ndarray): ground truth, same shape and dtype.
        crop_border (int): pixels removed at each edge. Default: 0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        float: mean SSIM, L = 255.
    """
    return ssim_per_channel(*prepare_uint8_pair(img, img2, crop_border, input_order), data_range=255.0)
