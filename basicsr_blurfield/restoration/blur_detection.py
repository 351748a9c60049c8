"""Blur detection from an estimated blur field, §4.2 of Carbajal et al.

A kernel with a low L2 norm spreads its energy over many taps (a delta has norm 1, a uniform kernel over n taps has
norm 1/sqrt(n)), so blurred pixels are those whose kernels are spread. For a basis field the score of pixel p is the
total mixing weight of the basis kernels whose L2 norm is below a threshold (0.25 in the paper):
``s[p] = sum_{b : ||k^b||_2 < t} m_b[p]``, in [0, 1]; other fields score a pixel 1 when its own kernel's norm is below
the threshold. The binary mask is ``s >= 0.5``.

Evaluation follows the CUHK blur detection protocol used by the paper (after Alvarez-Gila et al.): the average
precision of the per-pixel scores against the binary ground-truth mask of each image, averaged over the images (mAP).

Reference: Carbajal et al., §4.2 and Table 4. Written from the paper.
"""
import os
from typing import Callable, Dict, Optional

import cv2
import numpy as np
import torch

from basicsr_blurfield.data.paired_blur_dataset import IMAGE_EXTENSIONS

__all__ = ['basis_blur_score', 'blur_score', 'blur_mask', 'average_precision', 'evaluate_blur_detection']


def basis_blur_score(basis: torch.Tensor, mixing: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """Total mixing weight of the spread basis kernels (L2 norm below ``threshold``).

    Args:
        basis (Tensor): (N, B, K, K) basis kernels.
        mixing (Tensor): (N, B, H, W) mixing maps, summing to 1 over B.
        threshold (float): L2-norm threshold. Default: 0.25.

    Returns:
        Tensor: (N, 1, H, W) scores in [0, 1].
    """
    if basis.dim() != 4 or mixing.dim() != 4 or basis.shape[:2] != mixing.shape[:2]:
        raise ValueError(f'expected basis (N, B, K, K) and mixing (N, B, H, W) with the same N and B, '
                         f'got {tuple(basis.shape)} and {tuple(mixing.shape)}')
    spread = (basis.flatten(2).norm(dim=2) < threshold).to(mixing.dtype)
    return torch.einsum('nb,nbhw->nhw', spread, mixing).unsqueeze(1)


def blur_score(field, threshold: float = 0.25, tile_size: int = 16384) -> torch.Tensor:
    """Per-pixel blur score of any blur field.

    A field with ``basis`` and ``mixing`` tensors (``BasisField``) uses :func:`basis_blur_score`; any other field
    scores 1 where its per-pixel kernel (read in tiles through ``kernels_at``) has an L2 norm below ``threshold``.

    Args:
        field: blur field of N samples of size H x W.
        threshold (float): L2-norm threshold. Default: 0.25.
        tile_size (int): pixels whose kernels are expanded at once (non-basis fields). Default: 16384.

    Returns:
        Tensor: (N, 1, H, W) scores in [0, 1].
    """
    basis, mixing = getattr(field, 'basis', None), getattr(field, 'mixing', None)
    if torch.is_tensor(basis) and torch.is_tensor(mixing):
        return basis_blur_score(basis, mixing, threshold)
    if not hasattr(field, 'kernels_at'):
        raise TypeError(f'expected a blur field (KernelField, BasisField or OffsetField), got {type(field).__name__}')
    batch, height, width = field.batch, field.height, field.width
    n, y, x = torch.meshgrid(torch.arange(batch), torch.arange(height), torch.arange(width), indexing='ij')
    points = torch.stack([n.flatten(), y.flatten(), x.flatten()], 1).to(field.device)
    norms = torch.cat([field.kernels_at(tile).flatten(1).norm(dim=1) for tile in points.split(tile_size)])
    return (norms < threshold).to(field.dtype).view(batch, 1, height, width)


def blur_mask(field, threshold: float = 0.25) -> torch.Tensor:
    """Binary blur mask ``blur_score(field, threshold) >= 0.5``. Shape: (N, 1, H, W), bool."""
    return blur_score(field, threshold) >= 0.5


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of scores against binary labels: ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    Tied scores form one threshold (the convention of scikit-learn's ``average_precision_score``).

    Args:
        scores (ndarray): any shape, higher means more likely positive.
        labels (ndarray): same shape, binary (non-zero is positive).

    Returns:
        float: AP in [0, 1]; NaN when there is no positive label.
    """
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel() != 0
    if scores.shape != labels.shape:
        raise ValueError(f'scores and labels: expected the same number of elements, got {scores.size} and '
                         f'{labels.size}')
    positives = labels.sum()
    if positives == 0:
        return float('nan')
    order = np.argsort(-scores, kind='mergesort')
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(labels)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0, true_pos]) / positives
    return float((recall_gain * precision).sum())


def _read_gt_mask(path: str, invert: bool) -> np.ndarray:
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f'could not read the ground-truth mask {path!r}')
    blurred = mask >= 128
    return ~blurred if invert else blurred


def evaluate_blur_detection(image_dir: str,
                            gt_dir: str,
                            estimate_field: Callable[[torch.Tensor], object],
                            threshold: float = 0.25,
                            invert_gt: bool = False,
                            device: Optional[str] = None) -> Dict[str, object]:
    """Mean average precision of blur detection over a folder (CUHK protocol).

    Images and masks are matched by file stem (``motion0001.jpg`` with ``motion0001.png``). A mask pixel >= 128
    marks a blurred pixel (the CUHK convention); ``invert_gt`` flips that.

    Args:
        image_dir (str): folder of blurry images.
        gt_dir (str): folder of binary ground-truth masks.
        estimate_field (callable): ``estimate_field(image) -> field`` with image (1, 3, H, W) RGB in [0, 1], e.g. a
            :class:`BasisKernelNet` in eval mode.
        threshold (float): kernel L2-norm threshold. Default: 0.25.
        invert_gt (bool): masks mark the sharp pixels instead. Default: False.
        device (str, optional): device of the image tensors.

    Returns:
        dict: ``'ap'`` (dict stem -> AP of each image with a blurred pixel) and ``'map'`` (their mean).
    """
    masks = {os.path.splitext(name)[0]: name for name in os.listdir(gt_dir) if name.lower().endswith(IMAGE_EXTENSIONS)}
    names = sorted(name for name in os.listdir(image_dir) if name.lower().endswith(IMAGE_EXTENSIONS))
    missing = [name for name in names if os.path.splitext(name)[0] not in masks]
    if not names or missing:
        raise ValueError(f'expected one mask in {gt_dir!r} per image in {image_dir!r} (matched by file stem); '
                         f'found {len(names)} images, no mask for {missing[:5]}')
    ap = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        bgr = cv2.imread(os.path.join(image_dir, name), cv2.IMREAD_COLOR)
        image = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))).float().div(255)
        with torch.no_grad():
            field = estimate_field(image.unsqueeze(0).to(device or 'cpu'))
            score = blur_score(field, threshold)[0, 0].cpu().numpy()
        gt = _read_gt_mask(os.path.join(gt_dir, masks[stem]), invert_gt)
        if gt.shape != score.shape:
            raise ValueError(f'{stem}: mask size {gt.shape} differs from the image size {score.shape}')
        if gt.any():
            ap[stem] = average_precision(score, gt)
    return {'ap': ap, 'map': float(np.mean(list(ap.values()))) if ap else float('nan')}
