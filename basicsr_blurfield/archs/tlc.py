"""Test-time local statistics (TLC) of Chu et al., ECCV 2022, "Improving Image Restoration by Revisiting Global
Information Aggregation", §3: replace global average pooling by local average pooling at test time.

A network trained on ``train_size`` crops (H_t, W_t) computes its channel statistics (e.g. NAFNet's simplified
channel attention) over the whole crop. On a full-resolution test image, global pooling would aggregate over a much
larger area than in training. TLC keeps the statistics local: every ``nn.AdaptiveAvgPool2d(1)`` becomes a sliding
box mean whose window covers ``base_size`` (H_b, W_b) *image* pixels. For a pooling layer that saw a (h_t, w_t)
feature map at training size, the window is

    k_h = h_t * H_b // H_t,    k_w = w_t * W_b // W_t,

so it scales with the layer's stride. For a (h, w) feature map at test time:

* if k_h >= h and k_w >= w, the result is the global mean (identical to the original network);
* otherwise, with k1 = min(h, k_h), k2 = min(w, k_w), out[y, x] is the mean of the k1 x k2 window with rows
  y0 .. y0 + k1 - 1, y0 = clamp(y - (k1 - 1) // 2, 0, h - k1) (the same along columns): a centred window (one more
  row below/right for even k) shifted to stay inside the feature map. It is computed from an integral image in
  O(h * w) independent of the window size.

``fast_imp=True`` evaluates the box mean on a grid subsampled by r in (5, 4, 3, 2, 1) (the largest dividing the size,
at most ``max(1, 5 * h_t // H_t)``) and upsamples by repetition: faster, approximate (piecewise constant over r
pixels; not bit-identical to the published fast path, whose windows and rounding differ slightly).

The window sizes are calibrated once, when the layers are replaced, by running the module on a ``train_size`` input
on the meta device (no computation); a module that cannot run on meta tensors is run once on zeros instead.

Reference: Chu et al., ECCV 2022 (TLC); NAFNet's published ``NAFNetLocal`` (train_size (1, 3, 256, 256), base_size
1.5 x train size). Written from the paper's description.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = ['LocalAvgPool2d', 'replace_global_pooling', 'local_average_pool']

_SUBSAMPLING_FACTORS = (5, 4, 3, 2, 1)


def _box_mean_valid(x: torch.Tensor, k1: int, k2: int) -> torch.Tensor:
    """Means of all k1 x k2 windows fully inside ``x`` (N, C, h, w) -> (N, C, h - k1 + 1, w - k2 + 1)."""
    integral = F.pad(x.cumsum(dim=-1).cumsum(dim=-2), (1, 0, 1, 0))
    total = (integral[..., k1:, k2:] - integral[..., :-k1, k2:] - integral[..., k1:, :-k2] + integral[..., :-k1, :-k2])
    return total / (k1 * k2)


def _pad_to_size(out: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Replicate-pads the valid box means back to (height, width), window centred, extra row/column below/right."""
    dh, dw = height - out.shape[-2], width - out.shape[-1]
    if dh == 0 and dw == 0:
        return out
    return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode='replicate')


def local_average_pool(x: torch.Tensor,
                       kernel_size: tuple,
                       fast_imp: bool = False,
                       max_r: tuple = (1, 1)) -> torch.Tensor:
    """Local average pooling of TLC (see the module docstring for the window rule).

    Args:
        x (Tensor): (N, C, h, w) feature map.
        kernel_size (tuple): window (k_h, k_w) in feature pixels.
        fast_imp (bool): approximate on a subsampled grid. Default: False.
        max_r (tuple): largest subsampling (r_h, r_w) allowed by ``fast_imp``. Default: (1, 1).

    Returns:
        Tensor: (N, C, 1, 1) when the window covers the whole map, else (N, C, h, w).
    """
    height, width = x.shape[-2:]
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    if kh >= height and kw >= width:
        return F.adaptive_avg_pool2d(x, 1)
    if not fast_imp:
        return _pad_to_size(_box_mean_valid(x, min(height, kh), min(width, kw)), height, width)
    r1 = min(next(r for r in _SUBSAMPLING_FACTORS if height % r == 0), max_r[0])
    r2 = min(next(r for r in _SUBSAMPLING_FACTORS if width % r == 0), max_r[1])
    sub = x[..., ::r1, ::r2]
    k1 = max(1, min(sub.shape[-2], kh // r1))
    k2 = max(1, min(sub.shape[-1], kw // r2))
    out = _box_mean_valid(sub, k1, k2).repeat_interleave(r1, dim=-2).repeat_interleave(r2, dim=-1)
    return _pad_to_size(out, height, width)


class LocalAvgPool2d(nn.Module):
    """Drop-in replacement of ``nn.AdaptiveAvgPool2d(1)`` with TLC local statistics.

    Args:
        base_size (tuple): (H_b, W_b) window in image pixels.
        train_size (tuple): (N, C, H_t, W_t) training input size.
        fast_imp (bool): subsampled approximation. Default: False.

    Attributes:
        kernel_size (tuple | None): (k_h, k_w) in feature pixels, set by calibration; None means global pooling.

    Shape:
        x (N, C, h, w) -> (N, C, 1, 1) or (N, C, h, w); broadcasting against x gives the same result either way.
    """

    def __init__(self, base_size: tuple, train_size: tuple, fast_imp: bool = False):
        super().__init__()
        self.base_size = tuple(int(s) for s in base_size)
        self.train_size = tuple(int(s) for s in train_size)
        self.fast_imp = bool(fast_imp)
        self.kernel_size = None
        self.max_r = (1, 1)
        self._calibrating = False

    def calibrate(self, feature_size: tuple) -> None:
        """Sets the window from the (h_t, w_t) feature size this layer sees on a training-size input."""
        ht, wt = int(feature_size[0]), int(feature_size[1])
        train_h, train_w = self.train_size[-2:]
        self.kernel_size = (ht * self.base_size[0] // train_h, wt * self.base_size[1] // train_w)
        self.max_r = (max(1, _SUBSAMPLING_FACTORS[0] * ht // train_h), max(1, _SUBSAMPLING_FACTORS[0] * wt // train_w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._calibrating:
            self.calibrate(x.shape[-2:])
        if self.kernel_size is None:
            return F.adaptive_avg_pool2d(x, 1)
        return local_average_pool(x, self.kernel_size, self.fast_imp, self.max_r)

    def extra_repr(self) -> str:
        return f'kernel_size={self.kernel_size}, base_size={self.base_size}, fast_imp={self.fast_imp}'


def _is_global_pool(module: nn.Module) -> bool:
    if not isinstance(module, nn.AdaptiveAvgPool2d):
        return False
    size = module.output_size
    return size == 1 if isinstance(size, int) else tuple(size) == (1, 1)


def _swap_pools(module: nn.Module, base_size: tuple, train_size: tuple, fast_imp: bool) -> list:
    pools = []
    for name, child in module.named_children():
        if _is_global_pool(child):
            pool = LocalAvgPool2d(base_size, train_size, fast_imp)
            setattr(module, name, pool)
            pools.append(pool)
        else:
            pools.extend(_swap_pools(child, base_size, train_size, fast_imp))
    return pools


def _calibrate(module: nn.Module, pools: list, train_size: tuple) -> None:
    """Runs ``module`` once on a ``train_size`` input so each pool records its feature size (meta device first)."""
    was_training = module.training
    module.eval()
    for pool in pools:
        pool._calibrating = True
    try:
        state = {
            name: torch.empty_like(t, device='meta')
            for name, t in module.named_parameters(remove_duplicate=False)
        }
        state.update({name: torch.empty_like(t, device='meta') for name, t in module.named_buffers()})
        try:
            functional_call(module, state, (torch.empty(train_size, device='meta'), ), tie_weights=False)
        except (NotImplementedError, RuntimeError, TypeError, ValueError):
            reference = next(module.parameters(), None)
            device = reference.device if reference is not None else 'cpu'
            dtype = reference.dtype if reference is not None else torch.float32
            with torch.no_grad():
                module(torch.zeros(train_size, device=device, dtype=dtype))
    finally:
        for pool in pools:
            pool._calibrating = False
        module.train(was_training)
    missing = [pool for pool in pools if pool.kernel_size is None]
    if missing:
        raise ValueError(f'replace_global_pooling: {len(missing)} of {len(pools)} pooling layers were not reached by '
                         f'a forward pass on a {tuple(train_size)} input, so their window cannot be calibrated')


def replace_global_pooling(module: nn.Module,
                           base_size=None,
                           train_size: tuple = (1, 3, 256, 256),
                           fast_imp: bool = False) -> nn.Module:
    """Replaces every ``nn.AdaptiveAvgPool2d(1)`` inside ``module`` by TLC local pooling (in place) and calibrates.

    Args:
        module (nn.Module): network whose ``forward`` takes one (N, C, H, W) image.
        base_size (int | tuple | None): window (H_b, W_b) in image pixels; an int means square; None means
            (int(1.5 * H_t), int(1.5 * W_t)) as published. Default: None.
        train_size (tuple): (N, C, H_t, W_t) training input size. Default: (1, 3, 256, 256).
        fast_imp (bool): subsampled approximation. Default: False.

    Returns:
        nn.Module: ``module`` itself, with its pooling layers replaced.

    Raises:
        ValueError: when ``train_size`` is not 4 positive ints, ``base_size`` is malformed, or a replaced layer is
            not reached by the calibration pass.
    """
    train_size = tuple(int(s) for s in train_size)
    if len(train_size) != 4 or min(train_size) < 1:
        raise ValueError(f'train_size: expected (N, C, H, W) of positive ints, got {train_size}')
    if base_size is None:
        base_size = (int(train_size[2] * 1.5), int(train_size[3] * 1.5))
    elif isinstance(base_size, int):
        base_size = (base_size, base_size)
    base_size = tuple(int(s) for s in base_size)
    if len(base_size) != 2 or min(base_size) < 1:
        raise ValueError(f'base_size: expected an int or (H, W) of positive ints, got {base_size}')
    pools = _swap_pools(module, base_size, train_size, fast_imp)
    if pools:
        _calibrate(module, pools, train_size)
    return module
