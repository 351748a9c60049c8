"""Self-supervised exposure-trajectory training of Zhang et al., §4.1, eq. (6)-(11).

The offset network (``network_g``, :class:`~basicsr_blurfield.archs.motion_offset_arch.MotionOffsetNet`) maps the
blurry image ``lq`` to an :class:`~basicsr_blurfield.fields.OffsetField`; the blur creation module (eq. 3-4, the
field's ``blur``) re-blurs the sharp image ``gt`` with it, and the loss of eq. (11) compares the result with ``lq``:

    L = ||B - B_hat||^2 (reblur_opt, ReblurLoss l2) + lambda_SSIM (1 - MS-SSIM) (msssim_opt, MSSSIMLoss)
        + lambda_reg L_reg (magnitude_opt, OffsetMagnitudeLoss) + lambda_tv L_tv (tv_opt, OffsetTVLoss).

No ground-truth motion is used for training. Validation reports (keys of ``val.metrics``, each with ``better``):
``reblur_psnr`` / ``reblur_ssim`` (``field.blur(gt)`` against ``lq``; SSIM per channel, 11x11 Gaussian window),
``identity_psnr`` / ``identity_ssim`` (the same for the identity field, ``gt`` against ``lq``: the baseline a useful
field must beat) and ``motion_error``, the paper's motion MSE (§6.3) against ground-truth offsets when the dataset
gives them (``SyntheticBlurDataset`` with ``field_representation: offset``): the motion of a pixel is the vector
from the first to the last instant (the paper's linear simplification), the error is the squared Euclidean distance
between predicted and true vectors averaged over pixels, taking per pixel the better of the two time directions
(a blur does not tell the direction of time, eq. 3 is symmetric in it). With ``save_img`` the predicted trajectories
are drawn over the blurry image (``draw_trajectories``, blue first instant to red last) and written atomically.

Reference: Zhang et al., eq. (6)-(11), §6.1, §6.3. The model only wires network, field and losses together.
"""
from collections import OrderedDict

import cv2
import torch

from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.fields import OffsetField, draw_trajectories
from basicsr_blurfield.losses.reblur_loss import reblur_psnr
from basicsr_blurfield.metrics.ssim import ssim_per_channel
from basicsr_blurfield.models.base import FieldEstimatorModel

__all__ = ['MotionOffsetModel', 'motion_error', 'VAL_METRICS']

VAL_METRICS = ('reblur_psnr', 'reblur_ssim', 'identity_psnr', 'identity_ssim', 'motion_error')
_LOSS_KEYS = ('reblur_opt', 'msssim_opt', 'tv_opt', 'magnitude_opt')


def motion_error(predicted: OffsetField, target: OffsetField) -> float:
    """Paper's motion MSE (§6.3): mean over pixels of ``min(|m - m*|^2, |m + m*|^2)``, m = last - first offset.

    Args:
        predicted (OffsetField): offsets (N, T, 2, H, W).
        target (OffsetField): offsets (N, T', 2, H, W), any T'.

    Returns:
        float: squared pixels.
    """
    if predicted.offsets.shape[-2:] != target.offsets.shape[-2:] or predicted.batch != target.batch:
        raise ValueError(f'motion_error: expected fields of one batch and size, got offsets '
                         f'{tuple(predicted.offsets.shape)} and {tuple(target.offsets.shape)}')
    motion = predicted.offsets[:, -1] - predicted.offsets[:, 0]
    true_motion = target.offsets[:, -1] - target.offsets[:, 0]
    forward = (motion - true_motion).pow(2).sum(1)
    backward = (motion + true_motion).pow(2).sum(1)
    return float(torch.minimum(forward, backward).mean())


def _ssim(image, reference) -> float:
    """Mean over the batch of the per-channel SSIM of (N, C, H, W) images in [0, 1] (clipped)."""
    image = image.detach().clamp(0, 1).permute(0, 2, 3, 1).double().cpu().numpy()
    reference = reference.detach().permute(0, 2, 3, 1).double().cpu().numpy()
    return sum(ssim_per_channel(a, b, data_range=1.0) for a, b in zip(image, reference)) / len(image)


@MODEL_REGISTRY.register()
class MotionOffsetModel(FieldEstimatorModel):
    """Offset-network training by re-blurring, eq. (11).

    Options: ``network_g`` (returns an OffsetField), ``path.pretrain_network_g``; ``train.reblur_opt``,
    ``train.msssim_opt``, ``train.tv_opt``, ``train.magnitude_opt`` (any subset with a reblur or MS-SSIM term),
    ``train.optim_g``, ``train.scheduler``, ``train.use_grad_clip``; ``val.metrics`` with keys among
    :data:`VAL_METRICS`; ``val.trajectory_step`` (pixels between drawn trajectories, default 16) and
    ``val.trajectory_scale`` (drawn length magnification, default 1).
    """

    option_keys = {'train': _LOSS_KEYS, 'val': ('trajectory_step', 'trajectory_scale')}
    VAL_METRICS = VAL_METRICS
    GT_FIELD_KEYS = ('field_offsets', )
    MISSING_FIGURE_HINT = 'gt for the PSNR / SSIM figures, ground-truth offsets (field_offsets) for motion_error'

    def __init__(self, opt):
        super().__init__(opt)
        self.net_g = self.build_generator()
        self.check_val_metrics()
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        for key in _LOSS_KEYS:
            setattr(self, f'cri_{key[:-4]}', build_loss(train_opt[key]).to(self.device) if train_opt.get(key) else None)
        if self.cri_reblur is None and self.cri_msssim is None:
            raise ValueError('MotionOffsetModel needs train.reblur_opt and/or train.msssim_opt (the cyclic reblur '
                             'loss of eq. 6); both are missing')
        self.setup_optimizer_g(self.net_g)

    def compute_losses(self, field: OffsetField, current_iter=None) -> tuple:
        """Loss terms of eq. (11) for a predicted field. Returns (total, OrderedDict of named terms for the log)."""
        if self.gt is None:
            raise ValueError('MotionOffsetModel trains by re-blurring the sharp image: expected a dataset with gt')
        reblurred = field.blur(self.gt)
        loss_dict = OrderedDict()
        if self.cri_reblur is not None:
            loss_dict['l_reblur'] = self.cri_reblur.from_reblurred(reblurred, self.lq, self.weight)
        if self.cri_msssim is not None:
            loss_dict['l_msssim'] = self.cri_msssim(reblurred, self.lq)
        if self.cri_tv is not None:
            loss_dict['l_tv'] = self.cri_tv(field)
        if self.cri_magnitude is not None:
            loss_dict['l_magnitude'] = self.cri_magnitude(field)
        return sum(loss_dict.values()), loss_dict

    def evaluate_current(self) -> dict:
        """Validation figures of the current batch and field (see the module docstring)."""
        with torch.no_grad():
            values = {}
            if self.gt is not None:
                reblurred = self.field.blur(self.gt)
                values['reblur_psnr'] = reblur_psnr(reblurred, self.lq)
                values['reblur_ssim'] = _ssim(reblurred, self.lq)
                values['identity_psnr'] = reblur_psnr(self.gt, self.lq)
                values['identity_ssim'] = _ssim(self.gt, self.lq)
            if self.gt_field is not None:
                values['motion_error'] = motion_error(self.field, self.gt_field)
        return values

    def save_validation_visual(self, val_data, index, current_iter, dataset_name):
        """Writes the predicted trajectories drawn over the blurry image (first sample of the batch), atomically."""
        path = self.validation_visual_path(val_data, index, current_iter, dataset_name, 'trajectories')
        val_opt = self.opt['val']
        step, scale = int(val_opt.get('trajectory_step', 16)), float(val_opt.get('trajectory_scale', 1.0))
        picture = draw_trajectories(self.lq[0].cpu(), self.field.to('cpu'), step=step, scale=scale)
        imwrite(path, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
