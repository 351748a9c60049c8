"""Reference blur-field estimators shipped with the package, loadable by name (model cards: ``docs/estimation.md``).

A name such as ``ufpnet-ke-reference`` (UFPNet stage-II kernel estimator, Fang et al. eq. (4)-(6), K = 19),
``ufpnet-ke-cues-reference`` (the same network reading blur cues, ``input_cues='autocorrelation'``),
``ufpnet-ke-cues-long-reference`` (that one trained 3000 steps longer), ``ufpnet-ke-cues-long2-reference`` (8500
steps longer still), ``ufpnet-ke-cues-deadleaves-reference`` (6000 steps more on half dead-leaves crops: the best
estimator shipped), ``basis-kernels-reference`` (basis-kernel network, Carbajal et al. eq. (2)) or
``basis-kernels-cues-reference`` (the same network reading blur cues, trained on kernel L1) resolves to a small
``.pth`` under ``basicsr_blurfield/reference_models/``. Each file is a BasicSR-layout checkpoint (weights under
``params``) that also carries ``kind`` (``ufpnet`` | ``basis`` | ``offsets``), the ``network_g`` options that build
it, and ``meta`` (training options file, iterations, time, machine, benchmark figures), so any tool can rebuild the
network:

    net, kind = load_estimator('ufpnet-ke-reference')   # or a path to any of our / the published checkpoints
    field = net(blurry)                                 # (N, 3, H, W) -> KernelField / BasisField / OffsetField

:class:`AveragedEstimator` wraps any estimator so that its field is averaged over flipped / transposed inputs and over
neighbouring pixels (the scripts' ``--tta`` and ``--smooth-sigma``): our option, off by default.
:func:`export_reference` writes such a file from a training checkpoint and its options. Loading goes through the one
checkpoint loader, :func:`basicsr_blurfield.restoration.estimators.load_network`.
"""
import os
from typing import Optional, Tuple

import torch
import yaml
from torch import nn

__all__ = [
    'AveragedEstimator', 'KINDS', 'NETWORK_OF_KIND', 'REFERENCE_MODELS', 'TRANSFORM_COUNTS', 'averaged_estimator',
    'export_reference', 'load_estimator', 'reference_model_path', 'resolve_checkpoint'
]

KINDS = ('ufpnet', 'basis', 'offsets')
REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference_models')
REFERENCE_MODELS = {
    'ufpnet-ke-reference': 'ufpnet_ke_reference.pth',
    'ufpnet-ke-cues-reference': 'ufpnet_ke_cues_reference.pth',
    'ufpnet-ke-cues-long-reference': 'ufpnet_ke_cues_long_reference.pth',
    'ufpnet-ke-cues-long2-reference': 'ufpnet_ke_cues_long2_reference.pth',
    'ufpnet-ke-cues-deadleaves-reference': 'ufpnet_ke_cues_deadleaves_reference.pth',
    'basis-kernels-reference': 'basis_kernels_reference.pth',
    'basis-kernels-cues-reference': 'basis_kernels_cues_reference.pth',
}
NETWORK_OF_KIND = {'ufpnet': 'FlowKernelEstimator', 'basis': 'BasisKernelNet', 'offsets': 'MotionOffsetNet'}


def reference_model_path(name: str) -> str:
    """Path of a shipped reference model.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        FileNotFoundError: the name is known but its file is not in this installation.
    """
    if name not in REFERENCE_MODELS:
        raise KeyError(f'unknown reference model {name!r}; expected one of {sorted(REFERENCE_MODELS)} or a .pth path')
    path = os.path.join(REFERENCE_DIR, REFERENCE_MODELS[name])
    if not os.path.isfile(path):
        raise FileNotFoundError(f'reference model {name!r} is not shipped in this installation (missing {path})')
    return path


def resolve_checkpoint(name_or_path: str) -> str:
    """An existing checkpoint path as is, else the file of the reference model of that name."""
    if os.path.isfile(name_or_path):
        return name_or_path
    if name_or_path in REFERENCE_MODELS:
        return reference_model_path(name_or_path)
    raise FileNotFoundError(f'checkpoint {name_or_path!r}: no such file, and not a reference-model name (expected '
                            f'one of {sorted(REFERENCE_MODELS)})')


def load_estimator(name_or_path: str, kind: Optional[str] = None, opt_path: Optional[str] = None,
                   device: str = 'cpu') -> Tuple[nn.Module, str]:
    """Builds an estimator and loads its weights, in eval mode (deterministic), through
    :func:`basicsr_blurfield.restoration.estimators.load_network`.

    Network options come from, in order: ``opt_path`` (a training YAML's ``network_g``), the checkpoint's own
    ``network_g`` (reference models), the sizes read off the weights. Published checkpoints (UFPNet, the basis
    ``TwoHeadsNetwork``, Motion-ETR) are remapped to our names.

    Args:
        name_or_path (str): reference-model name or checkpoint path.
        kind (str, optional): ``'ufpnet'``, ``'basis'`` or ``'offsets'``: the kind the checkpoint must hold; default:
            whatever estimator it holds.
        opt_path (str, optional): options YAML with ``network_g``.
        device (str): where to put the network.

    Returns:
        tuple: (network, kind). ``network(lq)`` maps (N, 3, H, W) to a blur field.

    Raises:
        ValueError: an unknown ``kind``, a checkpoint of another kind or of no blur-field estimator, or weights that do
            not fit the network.
    """
    from basicsr_blurfield.restoration.estimators import load_network

    if kind is not None and kind not in KINDS:
        raise ValueError(f'kind: expected one of {KINDS}, got {kind!r}')
    network, net = load_network(name_or_path, device=device, opt_path=opt_path)
    found = {value: key for key, value in NETWORK_OF_KIND.items()}.get(network)
    if found is None or (kind is not None and found != kind):
        wanted = NETWORK_OF_KIND[kind] if kind else f'one of {sorted(NETWORK_OF_KIND.values())}'
        raise ValueError(f'{name_or_path}: holds a {network}; expected {wanted} (kind {kind or KINDS})')
    return net, found


TRANSFORM_COUNTS = (1, 2, 4, 8)
# (transpose, horizontal flip, vertical flip) of the input, in the order a count of 1, 2, 4 or 8 takes them
_TRANSFORMS = ((False, False, False), (False, True, False), (False, False, True), (False, True, True),
               (True, False, False), (True, True, False), (True, False, True), (True, True, True))


class AveragedEstimator(nn.Module):
    """An estimator whose per-pixel field is averaged over mirrored / transposed inputs and over neighbouring pixels.

    With ``transforms`` T, the network estimates the field of each of the first T of: the image, its horizontal,
    vertical and double flip, and the same four of its transpose; each field is mapped back to the image's frame
    (:meth:`~basicsr_blurfield.fields.KernelField.flipped`, :meth:`~basicsr_blurfield.fields.KernelField.transposed`)
    and the T kernel fields are averaged (test-time augmentation; the training options flip and rotate their crops,
    so the network's errors differ between the transforms while the true field maps exactly). Then, with
    ``smooth_sigma`` > 0, :meth:`~basicsr_blurfield.fields.KernelField.smoothed`. Ours, not in the papers; measured in
    docs/estimation.md. The result is a normalised :class:`~basicsr_blurfield.fields.KernelField`.

    Args:
        estimator (nn.Module): maps (N, 3, H, W) to any blur field.
        transforms (int): 1, 2, 4 or 8 (T network passes). Default: 1.
        smooth_sigma (float): spatial Gaussian in pixels, >= 0 (0: none). Default: 0.

    Shape:
        (N, 3, H, W) -> KernelField of the estimator's kernel size.
    """

    def __init__(self, estimator: nn.Module, transforms: int = 1, smooth_sigma: float = 0.0):
        super().__init__()
        if transforms not in TRANSFORM_COUNTS or isinstance(transforms, bool):
            raise ValueError(f'transforms: expected one of {TRANSFORM_COUNTS} (test-time flips / transposes), got '
                             f'{transforms!r}')
        if not isinstance(smooth_sigma, (int, float)) or not 0 <= smooth_sigma < float('inf'):
            raise ValueError(f'smooth sigma: expected a finite number of pixels >= 0 (0: off), got {smooth_sigma!r}')
        self.estimator, self.transforms, self.smooth_sigma = estimator, transforms, float(smooth_sigma)

    def forward(self, lq: torch.Tensor):
        from basicsr_blurfield.fields import KernelField

        total = None
        for transpose, horizontal, vertical in _TRANSFORMS[:self.transforms]:
            image = lq.mT if transpose else lq
            dims = ((-1, ) if horizontal else ()) + ((-2, ) if vertical else ())
            field = self.estimator(image.flip(dims) if dims else image).dense().flipped(horizontal, vertical)
            kernels = (field.transposed() if transpose else field).kernels
            total = kernels if total is None else total + kernels
        field = KernelField(total / self.transforms, field.padding, check=False)
        return field.smoothed(self.smooth_sigma)


def averaged_estimator(estimator: nn.Module, transforms: int = 1, smooth_sigma: float = 0.0) -> nn.Module:
    """``estimator`` itself when there is nothing to average (1 transform, sigma 0), else :class:`AveragedEstimator`
    (whose constructor checks both values in either case)."""
    averaged = AveragedEstimator(estimator, transforms, smooth_sigma)
    return estimator if (transforms, smooth_sigma) == (1, 0) else averaged


def export_reference(checkpoint: str, opt_path: str, destination: str, kind: str, meta: dict) -> None:
    """Writes a reference-model file: ``params`` (from a training checkpoint), ``kind``, ``network_g``, ``meta``.

    Args:
        checkpoint (str): a ``net_g_*.pth`` written by training.
        opt_path (str): the training options YAML (its ``network_g`` is stored).
        destination (str): output ``.pth`` (written atomically).
        kind (str): one of :data:`KINDS`.
        meta (dict): model-card facts (plain YAML/JSON values).
    """
    from basicsr_blurfield.archs.checkpoints import unwrap_state_dict
    from basicsr_blurfield.atomic import torch_save

    if kind not in KINDS:
        raise ValueError(f'kind: expected one of {KINDS}, got {kind!r}')
    with open(opt_path) as handle:
        net_opt = yaml.safe_load(handle)['network_g']
    state = unwrap_state_dict(torch.load(checkpoint, map_location='cpu', weights_only=True))
    torch_save({'params': state, 'kind': kind, 'network_g': net_opt, 'meta': meta}, destination)
