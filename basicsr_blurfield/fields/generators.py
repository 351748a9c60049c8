"""Random blur kernels and blur fields for synthetic training data.

Kernels (gather / correlation form, as everywhere in ``basicsr_blurfield.fields``: with ``r = K // 2``,
``blurry[y, x] = sum_{i,j} k[i, j] * sharp[y + i - r, x + j - r]``) are non-negative, sum to 1, fit in K x K and
are centred: their centre of mass is the centre tap ``(r, r)`` (bilinear splatting keeps first moments exactly, so
centring the splatted points centres the kernel).

* Camera shake (the physiological hand-tremor model behind §3.3 of Carbajal et al., after Boracchi & Foi): a random
  walk with inertia. The velocity ``v_t`` keeps a constant speed; each step adds an impulsive shake (probability
  ``shake_freq * anxiety``, turning the motion back by about 180 degrees), a Gaussian jitter and a centripetal pull
  towards the start: ``v_{t+1} ~ v_t + impulse + anxiety * (g * n_t - c * z_t) * step``. The first ``exposure``
  fraction of the path is splatted bilinearly at sub-pixel precision into the K x K grid.
* Linear motion: a segment of a given length and angle through the centre.
* Region-wise fields (Carbajal et al. §3.3): a background plus up to three regions, each with its own kernel; each
  hard mask is blurred by its own kernel and the blurred masks are renormalised to sum to 1, giving the mixing maps of
  a basis field (eq. 2: ``v_p = sum_b m_b[p] (k_b * u)[p]``). Per-pixel loss weights are the inverse area of the
  region a pixel belongs to (eq. 3-4 weights ``w_ij``), scaled to have mean 1.
* Smoothly varying fields: camera rotation / zoom about a point plus translation (and a linear motion-flow variant):
  every pixel gets its own trajectory, returned as time-ordered offsets ``(T, 2, H, W)`` in ``(dx, dy)`` order
  passing through ``(0, 0)`` at the middle step (an ``OffsetField``), or as a basis field whose basis kernels are the
  exact kernels at a grid of anchor pixels and whose mixing maps are bilinear (tent) interpolation weights.

Every function takes a ``numpy.random.Generator`` (or a seed, turned into one by :func:`as_rng`). Pure numpy; no
torch and no BasicSR import.

Kernel lengths: :func:`kernel_length` measures ``sqrt(12 * lambda_max)`` of a kernel's spatial covariance (the
length of a uniform segment with the same spread). With the defaults and K = 33, camera-shake kernels span about
1.5 to 40 px (10th to 90th percentile 4 to 32 px; curled paths reaching the corners exceed K) and linear kernels 1
to 32 px; at K = 19 shake kernels span about 1 to 24 px. ``tests/fields/test_generators.py`` checks that the span
reaches below K / 4 and above K / 2 for both kinds at K = 33 and K = 19.

Reference: Carbajal et al., *Single Image Non-uniform Blur Kernel Estimation via Adaptive Basis Decomposition*, §3.3;
Boracchi & Foi, *Modeling the Performance of Image Restoration From Motion Blur*, TIP 2012 (trajectory model).
Written from the papers and DESIGN.md.
"""
import math
from typing import Callable, Dict, Optional, Tuple, Union

import cv2
import numpy as np

RngLike = Union[np.random.Generator, int, None]
_REFERENCE_STEPS = 2000
_REFERENCE_LENGTH = 60.0


def as_rng(rng: RngLike) -> np.random.Generator:
    """Returns ``rng`` if it is a ``numpy.random.Generator``, else ``numpy.random.default_rng(rng)`` (int seed)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f'rng: expected a numpy.random.Generator, an int seed or None, got {type(rng).__name__}')


def _check_kernel_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f'kernel_size: expected a positive odd int, got {size!r}')
    return int(size)


def splat_points(points: np.ndarray, size: int) -> np.ndarray:
    """Splats points bilinearly into a K x K grid, each point with the same mass.

    Args:
        points (ndarray): (P, 2) positions ``(x, y)`` in grid pixels (``(0, 0)`` is the top-left tap). Points outside
            ``[0, K-1]`` lose the mass that falls outside the grid.
        size (int): K.

    Returns:
        ndarray: (K, K) float64, non-negative, not normalised (sums to P when all points are inside).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f'points: expected (P, 2) as (x, y), got {points.shape}')
    grid = np.zeros((size + 1, size + 1), dtype=np.float64)
    x0 = np.floor(points[:, 0])
    y0 = np.floor(points[:, 1])
    fx = points[:, 0] - x0
    fy = points[:, 1] - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
        np.add.at(grid, (yy[inside], xx[inside]), w[inside])
    return grid[:size, :size]


def _normalise(kernel: np.ndarray) -> np.ndarray:
    kernel = np.clip(kernel, 0.0, None)
    total = kernel.sum()
    if total <= 0:
        raise ValueError('kernel: expected positive mass to normalise, got an all-zero kernel')
    return kernel / total


def kernel_from_points(points: np.ndarray, size: int) -> np.ndarray:
    """Kernel of a motion path: centres the points on their mean, shrinks them to fit, splats and normalises.

    Args:
        points (ndarray): (P, 2) positions ``(x, y)`` in pixels (any origin).
        size (int): K, odd.

    Returns:
        ndarray: (K, K) float32, non-negative, sums to 1, centre of mass at ``(K // 2, K // 2)``.
    """
    size = _check_kernel_size(size)
    r = size // 2
    points = np.asarray(points, dtype=np.float64)
    points = points - points.mean(axis=0, keepdims=True)
    extent = np.abs(points).max() if points.size else 0.0
    if extent > r:
        points = points * (r / extent)
    return _normalise(splat_points(points + r, size)).astype(np.float32)


def camera_shake_trajectory(rng: RngLike,
                            num_steps: int = 512,
                            length: float = 30.0,
                            anxiety: Optional[float] = None,
                            centripetal: Optional[float] = None,
                            gaussian_term: Optional[float] = None,
                            shake_freq: Optional[float] = None) -> np.ndarray:
    """Random camera-shake path: a constant-speed random walk with inertia, impulsive shakes and centripetal pull.

    Parameters left as None are drawn from ``rng``: ``anxiety ~ U(0, 0.005)``, ``centripetal ~ U(0, 0.7)``,
    ``gaussian_term ~ U(0, 10)``, ``shake_freq ~ U(0, 0.2)`` (the ranges of the Boracchi-Foi model).

    Args:
        rng (Generator | int): randomness.
        num_steps (int): T, number of path samples.
        length (float): total path length in pixels (T - 1 steps of equal length). The walk is simulated at the
            reference scale (60 px, 2000 steps) and scaled, so shapes do not depend on ``length`` or ``num_steps``.
        anxiety (float, optional): strength of the jitter and of the impulsive shakes.
        centripetal (float, optional): pull back towards the start point.
        gaussian_term (float, optional): amplitude of the Gaussian jitter.
        shake_freq (float, optional): frequency of impulsive shakes (per-step probability ``shake_freq * anxiety`` at
            the reference sampling of 2000 steps).

    Returns:
        ndarray: (T, 2) float64 positions ``(x, y)`` in pixels, starting at ``(0, 0)``.
    """
    rng = as_rng(rng)
    if num_steps < 2:
        raise ValueError(f'num_steps: expected >= 2, got {num_steps}')
    anxiety = float(rng.uniform(0, 0.005)) if anxiety is None else float(anxiety)
    centripetal = float(rng.uniform(0, 0.7)) if centripetal is None else float(centripetal)
    gaussian_term = float(rng.uniform(0, 10)) if gaussian_term is None else float(gaussian_term)
    shake_freq = float(rng.uniform(0, 0.2)) if shake_freq is None else float(shake_freq)
    # the walk runs at the reference scale (60 px in 2000 steps); coarser sampling scales each term so the path
    # statistics do not depend on num_steps (drift terms by the step ratio, the Brownian jitter by its square root)
    ratio = (_REFERENCE_STEPS - 1) / (num_steps - 1)
    step = _REFERENCE_LENGTH / (_REFERENCE_STEPS - 1) * ratio
    angle = rng.uniform(0, 2 * math.pi)
    direction = complex(math.cos(angle), math.sin(angle))
    vel = direction * step
    uniform = rng.random((num_steps, 2)).tolist()
    normal = rng.standard_normal((num_steps, 2)).tolist()
    pos = 0j
    path = [pos]
    shake_prob = min(1.0, shake_freq * anxiety * ratio)
    drift = anxiety * step * ratio
    jitter_scale = gaussian_term * math.sqrt(ratio)
    for t in range(num_steps - 1):
        impulse = 0j
        if uniform[t][0] < shake_prob:
            turn = math.pi + (uniform[t][1] - 0.5)
            impulse = 2 * vel * complex(math.cos(turn), math.sin(turn))
        jitter = complex(normal[t][0], normal[t][1]) * jitter_scale
        vel = vel + impulse + drift * (jitter - centripetal * pos)
        speed = abs(vel)
        vel = vel / speed * step if speed > 0 else direction * step
        pos = pos + vel
        path.append(pos)
    path = np.asarray(path, dtype=np.complex128) * (float(length) / _REFERENCE_LENGTH)
    return np.stack([path.real, path.imag], axis=1)


def random_shake_kernel(size: int,
                        rng: RngLike,
                        length_range: Tuple[float, float] = (0.2, 3.0),
                        exposure_range: Tuple[float, float] = (0.5, 1.0),
                        num_steps: int = 256) -> np.ndarray:
    """Random camera-shake kernel (Carbajal et al. §3.3 use camera-shake kernels of this kind).

    Args:
        size (int): K, odd.
        rng (Generator | int): randomness.
        length_range (tuple): path length range as a multiple of K (uniform); paths that do not fit are shrunk.
        exposure_range (tuple): fraction of the path integrated by the shutter (uniform).
        num_steps (int): path samples.

    Returns:
        ndarray: (K, K) float32, non-negative, sums to 1, centre of mass at the centre tap.
    """
    size = _check_kernel_size(size)
    rng = as_rng(rng)
    length = rng.uniform(*length_range) * size
    exposure = rng.uniform(*exposure_range)
    path = camera_shake_trajectory(rng, num_steps=num_steps, length=length)
    keep = max(2, int(math.ceil(exposure * num_steps)))
    return kernel_from_points(path[:keep], size)


def linear_kernel(size: int, length: float, angle: float) -> np.ndarray:
    """Linear motion kernel: a segment through the centre.

    Args:
        size (int): K, odd.
        length (float): segment length in pixels, clipped to ``K - 1`` (0 gives the identity kernel).
        angle (float): direction in radians, counter-clockwise from +x with y pointing down the rows.

    Returns:
        ndarray: (K, K) float32, non-negative, sums to 1, centre of mass at the centre tap.
    """
    size = _check_kernel_size(size)
    length = float(np.clip(length, 0.0, size - 1))
    num = max(2, int(math.ceil(4 * length)) + 1)
    t = np.linspace(-0.5, 0.5, num) * length
    points = np.stack([t * math.cos(angle), -t * math.sin(angle)], axis=1)
    return kernel_from_points(points, size)


def random_linear_kernel(size: int, rng: RngLike, length_range: Tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Linear kernel with length ``U(length_range) * (K - 1)`` and a uniform angle.

    Args:
        size (int): K, odd.
        rng (Generator | int): randomness.
        length_range (tuple): length range as a fraction of ``K - 1``.

    Returns:
        ndarray: (K, K) float32 (see :func:`linear_kernel`).
    """
    size = _check_kernel_size(size)
    rng = as_rng(rng)
    length = rng.uniform(*length_range) * (size - 1)
    return linear_kernel(size, length, rng.uniform(0, math.pi))


KERNEL_TYPES = ('shake', 'linear')


def random_kernel(size: int, rng: RngLike, kind: str = 'shake') -> np.ndarray:
    """Random kernel of a named kind: ``'shake'`` (:func:`random_shake_kernel`) or ``'linear'``.

    Returns:
        ndarray: (K, K) float32, non-negative, sums to 1, centred.
    """
    if kind == 'shake':
        return random_shake_kernel(size, rng)
    if kind == 'linear':
        return random_linear_kernel(size, rng)
    raise ValueError(f'kind: expected one of {KERNEL_TYPES}, got {kind!r}')


def kernel_length(kernel: np.ndarray) -> float:
    """Blur length of a kernel: ``sqrt(12 * lambda_max)`` of its spatial covariance (exact for a uniform segment).

    Args:
        kernel (ndarray): (K, K), non-negative.

    Returns:
        float: length in pixels.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    kernel = kernel / kernel.sum()
    ys, xs = np.mgrid[:kernel.shape[0], :kernel.shape[1]]
    my, mx = (kernel * ys).sum(), (kernel * xs).sum()
    cyy = (kernel * (ys - my)**2).sum()
    cxx = (kernel * (xs - mx)**2).sum()
    cxy = (kernel * (ys - my) * (xs - mx)).sum()
    lam = 0.5 * (cxx + cyy) + math.sqrt(0.25 * (cxx - cyy)**2 + cxy**2)
    return math.sqrt(12 * lam)


def center_of_mass(kernel: np.ndarray) -> Tuple[float, float]:
    """Centre of mass ``(y, x)`` of a kernel in tap coordinates."""
    kernel = np.asarray(kernel, dtype=np.float64)
    ys, xs = np.mgrid[:kernel.shape[0], :kernel.shape[1]]
    total = kernel.sum()
    return float((kernel * ys).sum() / total), float((kernel * xs).sum() / total)


# ----------------------------------------------------------------------------------------------------------------------
# region-wise fields (basis representation)


def random_region_labels(height: int,
                         width: int,
                         rng: RngLike,
                         max_regions: int = 3,
                         min_area: int = 400,
                         min_regions: int = 1,
                         area_range: Tuple[float, float] = (0.05, 0.35)) -> np.ndarray:
    """Random label map: background 0 and up to ``max_regions`` blob-shaped regions 1..R (later ones on top).

    A region is a thresholded sum of a radial bump at a random centre and smooth noise, so its outline is irregular.
    Regions whose visible area is below ``min_area`` pixels are dropped and the labels are made consecutive.

    Args:
        height (int): H.
        width (int): W.
        rng (Generator | int): randomness.
        max_regions (int): the number of regions drawn is uniform in ``min_regions..max_regions``.
        min_area (int): minimum visible area of a region, in pixels (400 in the paper).
        min_regions (int): fewest regions drawn (fewer may remain after dropping small ones).
        area_range (tuple): target area of each region as a fraction of H * W.

    Returns:
        ndarray: (H, W) int64 labels in ``0..R``.
    """
    rng = as_rng(rng)
    labels = np.zeros((height, width), dtype=np.int64)
    if not 0 <= min_regions <= max_regions:
        raise ValueError(f'min_regions, max_regions: expected 0 <= min_regions <= max_regions, got {min_regions}, '
                         f'{max_regions}')
    num = int(rng.integers(min_regions, max_regions + 1))
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    scale = float(max(height, width))
    for j in range(1, num + 1):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        aspect = rng.uniform(0.5, 2.0)
        theta = rng.uniform(0, math.pi)
        dy, dx = (ys - cy) / scale, (xs - cx) / scale
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        bump = -(u * u * aspect + v * v / aspect)
        coarse = rng.standard_normal((6, 6)).astype(np.float32)
        noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        score = bump + 0.02 * noise
        target = rng.uniform(*area_range)
        labels[score >= np.quantile(score, 1.0 - target)] = j
    kept = [j for j in range(1, num + 1) if (labels == j).sum() >= min_area]
    relabel = np.zeros(num + 1, dtype=np.int64)
    relabel[kept] = np.arange(1, len(kept) + 1)
    return relabel[labels]


def blur_mask_by_kernel(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blurs a mask by one kernel in gather form with replicate borders.

    Args:
        mask (ndarray): (H, W) float.
        kernel (ndarray): (K, K).

    Returns:
        ndarray: (H, W) float32, ``out[y, x] = sum_ij k[i, j] * mask[y + i - r, x + j - r]``.
    """
    return cv2.filter2D(mask.astype(np.float32), -1, kernel.astype(np.float32), borderType=cv2.BORDER_REPLICATE)


def region_weights(labels: np.ndarray) -> np.ndarray:
    """Per-pixel loss weights: inverse area of each pixel's region, scaled to mean 1 (Carbajal et al. eq. 3-4).

    Args:
        labels (ndarray): (H, W) int labels.

    Returns:
        ndarray: (H, W) float32, ``w = H * W / (R * area(label))`` with R the number of regions present.
    """
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError(f'labels: expected non-negative ints, got a minimum of {labels.min()}')
    counts = np.bincount(labels.ravel()).astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = labels.size / (present.sum() * counts[present])
    return weights.astype(np.float32)[labels]


def region_field(height: int,
                 width: int,
                 rng: RngLike,
                 kernel_size: int = 33,
                 max_regions: int = 3,
                 min_area: int = 400,
                 min_regions: int = 1,
                 kernel_fn: Optional[Callable[[np.random.Generator], np.ndarray]] = None) -> Dict[str, np.ndarray]:
    """Region-wise blur field (Carbajal et al. §3.3): background + up to ``max_regions`` regions, own kernels.

    Each hard mask is blurred by its own kernel (soft transitions) and the blurred masks are renormalised to sum to 1
    at every pixel; these are the mixing maps of a basis field whose basis kernels are the region kernels.

    Args:
        height (int): H.
        width (int): W.
        rng (Generator | int): randomness.
        kernel_size (int): K, odd.
        max_regions (int): at most this many regions besides the background.
        min_area (int): minimum region area in pixels.
        min_regions (int): fewest regions drawn besides the background.
        kernel_fn (callable, optional): ``kernel_fn(rng) -> (K, K)``; default :func:`random_shake_kernel`.

    Returns:
        dict: ``basis`` (B, K, K) float32 with B = R + 1 (background first), ``mixing`` (B, H, W) float32
        (non-negative, sums to 1 over B), ``labels`` (H, W) int64, ``weight`` (H, W) float32 (:func:`region_weights`).
    """
    rng = as_rng(rng)
    kernel_size = _check_kernel_size(kernel_size)
    if kernel_fn is None:

        def kernel_fn(g):
            return random_shake_kernel(kernel_size, g)

    labels = random_region_labels(
        height, width, rng, max_regions=max_regions, min_area=min_area, min_regions=min_regions)
    num = int(labels.max()) + 1
    basis = np.stack([kernel_fn(rng) for _ in range(num)]).astype(np.float32)
    hard = [(labels == b).astype(np.float32) for b in range(num)]
    soft = np.stack([blur_mask_by_kernel(m, k) for m, k in zip(hard, basis)])
    # where no blurred mask reaches a pixel, the pixel keeps its own hard label
    soft = np.clip(soft, 0.0, None) + 1e-6 * np.stack(hard)
    mixing = (soft / soft.sum(axis=0, keepdims=True)).astype(np.float32)
    return {'basis': basis, 'mixing': mixing, 'labels': labels, 'weight': region_weights(labels)}


# ----------------------------------------------------------------------------------------------------------------------
# smoothly varying fields


class CameraMotion:
    """Smooth per-pixel motion from a camera moving during the exposure: rotation and zoom about a centre plus
    translation, each following a quadratic curve in time ``s in [-1/2, 1/2]`` with value 0 at ``s = 0``.

    ``p(s) = c + (1 + z(s)) R(theta(s)) (p - c) + t(s)``, offsets ``p(s) - p`` in ``(dx, dy)``.
    A ``linear`` motion keeps only the first-order terms, ``p(s) - p = s (z1 (p - c) + a1 J (p - c) + t1)`` with
    ``J`` the 90-degree rotation: every pixel moves on a straight segment through its sharp position whose length
    and direction vary smoothly over the image (a linear motion-flow field).

    Args:
        center (tuple): ``(x, y)`` of the rotation / zoom centre in pixels.
        rotation (tuple): ``(a1, a2)``: ``theta(s) = a1 s + a2 s^2`` in radians.
        zoom (tuple): ``(z1, z2)``: ``z(s) = z1 s + z2 s^2``.
        translation (tuple): ``((tx1, ty1), (tx2, ty2))``: ``t(s) = t1 s + t2 s^2`` in pixels.
        linear (bool): first-order (straight) motion; the second-order coefficients are ignored.
    """

    def __init__(self,
                 center,
                 rotation=(0.0, 0.0),
                 zoom=(0.0, 0.0),
                 translation=((0.0, 0.0), (0.0, 0.0)),
                 linear: bool = False):
        self.center = np.asarray(center, dtype=np.float64)
        self.rotation = tuple(float(a) for a in rotation)
        self.zoom = tuple(float(z) for z in zoom)
        self.translation = np.asarray(translation, dtype=np.float64)
        self.linear = bool(linear)

    def scaled(self, factor: float) -> 'CameraMotion':
        """Returns the same motion with its coefficients scaled (exact scaling of offsets when ``linear``)."""
        return CameraMotion(self.center, [a * factor for a in self.rotation], [z * factor for z in self.zoom],
                            self.translation * factor, self.linear)

    def affine(self, times: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """At each time the offsets are affine in the position: ``offset(p, s) = A(s) (p - c) + b(s)``.

        Args:
            times (ndarray): (S,) times in ``[-1/2, 1/2]``.

        Returns:
            tuple: ``A`` (S, 2, 2) and ``b`` (S, 2), float64, acting on ``(x, y)``.
        """
        s = np.asarray(times, dtype=np.float64)
        if self.linear:
            a, z = self.rotation[0], self.zoom[0]
            matrix = s[:, None, None] * np.array([[z, -a], [a, z]])
            return matrix, s[:, None] * self.translation[0][None]
        theta = self.rotation[0] * s + self.rotation[1] * s * s
        zoom = 1.0 + self.zoom[0] * s + self.zoom[1] * s * s
        cos, sin = np.cos(theta), np.sin(theta)
        matrix = zoom[:, None, None] * np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
        matrix = matrix - np.eye(2)[None]
        shift = s[:, None] * self.translation[0][None] + (s * s)[:, None] * self.translation[1][None]
        return matrix, shift

    def offsets(self, points: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Offsets of points at given times.

        Args:
            points (ndarray): (P, 2) positions ``(x, y)``.
            times (ndarray): (S,) times in ``[-1/2, 1/2]``.

        Returns:
            ndarray: (S, P, 2) offsets ``(dx, dy)``; zero at ``s = 0``.
        """
        matrix, shift = self.affine(times)
        rel = np.asarray(points, dtype=np.float64) - self.center
        return np.einsum('sij,pj->spi', matrix, rel) + shift[:, None]


def random_camera_motion(height: int,
                         width: int,
                         rng: RngLike,
                         max_displacement: float,
                         kind: str = 'smooth') -> CameraMotion:
    """Random camera motion whose largest offset component ``max(|dx|, |dy|)`` over the image and the exposure is
    ``U(0.2, 1) * max_displacement`` pixels (so with ``K // 2`` every trajectory fits a K x K kernel).

    Args:
        height (int): H.
        width (int): W.
        rng (Generator | int): randomness.
        max_displacement (float): bound on ``max(|dx|, |dy|)`` over all pixels and times (``K // 2``: kernels fit).
        kind (str): ``'smooth'`` (rotation + zoom + translation with curvature) or ``'linear'`` (no curvature:
            straight per-pixel segments, lengths and directions varying over the image).

    Returns:
        CameraMotion: the motion.
    """
    if kind not in ('smooth', 'linear'):
        raise ValueError(f"kind: expected one of ('smooth', 'linear'), got {kind!r}")
    rng = as_rng(rng)
    center = (rng.uniform(-0.25, 1.25) * width, rng.uniform(-0.25, 1.25) * height)
    # random shares of rotation, zoom and translation in pixels at the image scale (translation weaker, so the
    # field varies over the image); curvature half as strong as the linear terms
    share = rng.dirichlet((1.0, 1.0, 0.5))
    scale = float(max(height, width))
    rotation = share[0] * rng.normal(0, 1, 2) * (1.0, 0.5) / scale
    zoom = share[1] * rng.normal(0, 1, 2) * (1.0, 0.5) / scale
    translation = share[2] * rng.normal(0, 0.5, (2, 2)) * np.array([[1.0], [0.5]])
    motion = CameraMotion(center, rotation, zoom, translation, linear=kind == 'linear')
    # at each instant the offsets are affine in the pixel position, so their extremes over the image lie at the
    # corners; probe corners, edge midpoints and centre at 9 instants and rescale to the drawn magnitude
    probe_x = np.array([0, width - 1, (width - 1) / 2])
    probe_y = np.array([0, height - 1, (height - 1) / 2])
    probes = np.stack(np.meshgrid(probe_x, probe_y), axis=-1).reshape(-1, 2)
    times = np.linspace(-0.5, 0.5, 9)
    target = rng.uniform(0.2, 1.0) * max_displacement
    for _ in range(4):
        peak = np.abs(motion.offsets(probes, times)).max()
        if peak <= 0:
            break
        motion = motion.scaled(target / peak)
    return motion


def motion_offsets(motion: CameraMotion, height: int, width: int, num_steps: int = 15) -> np.ndarray:
    """Dense offsets of a motion, as an ``OffsetField`` stores them.

    Args:
        motion (CameraMotion): the motion.
        height (int): H.
        width (int): W.
        num_steps (int): T, time samples uniform in ``[-1/2, 1/2]`` (odd T passes through 0 at the middle step).

    Returns:
        ndarray: (T, 2, H, W) float32 offsets ``(dx, dy)`` in pixels.
    """
    matrix, shift = motion.affine(np.linspace(-0.5, 0.5, num_steps))
    matrix, shift = matrix.astype(np.float32), shift.astype(np.float32)
    rel_x = (np.arange(width, dtype=np.float64) - motion.center[0]).astype(np.float32)[None, None, :]
    rel_y = (np.arange(height, dtype=np.float64) - motion.center[1]).astype(np.float32)[None, :, None]
    out = np.empty((num_steps, 2, height, width), dtype=np.float32)
    for i in range(2):
        out[:, i] = (
            matrix[:, i, 0, None, None] * rel_x + matrix[:, i, 1, None, None] * rel_y + shift[:, i, None, None])
    return out


def motion_kernel(motion: CameraMotion, point: Tuple[float, float], size: int, num_samples: int = 64) -> np.ndarray:
    """Kernel of a motion at one pixel, in gather form: the trajectory splatted around the centre tap.

    The offsets are splatted at ``(r + dx, r + dy)`` without re-centring (the sharp image is the middle instant), and
    shrunk about the centre when they would leave the grid.

    Args:
        motion (CameraMotion): the motion.
        point (tuple): ``(x, y)`` pixel.
        size (int): K, odd.
        num_samples (int): time samples.

    Returns:
        ndarray: (K, K) float32, non-negative, sums to 1.
    """
    size = _check_kernel_size(size)
    r = size // 2
    off = motion.offsets(np.asarray([point], dtype=np.float64), np.linspace(-0.5, 0.5, num_samples))[:, 0]
    extent = np.abs(off).max()
    if extent > r:
        off = off * (r / extent)
    return _normalise(splat_points(off + r, size)).astype(np.float32)


def tent_mixing(height: int, width: int, grid: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear (tent) interpolation weights from a regular grid of anchor pixels.

    Args:
        height (int): H.
        width (int): W.
        grid (tuple): ``(gh, gw)`` anchors per column / row, each >= 2, spread from the first to the last pixel.

    Returns:
        tuple: anchors (B, 2) as ``(x, y)`` with B = gh * gw (row-major), mixing (B, H, W) float32, non-negative,
        sums to 1 over B.
    """
    gh, gw = grid
    if gh < 2 or gw < 2:
        raise ValueError(f'grid: expected (gh, gw) with both >= 2, got {grid}')
    ay = np.linspace(0, height - 1, gh)
    ax = np.linspace(0, width - 1, gw)

    def tents(n, anchors):
        # 1-D hat functions on uniformly spaced anchors: a partition of unity, so products sum to 1 in 2-D
        pos = np.arange(n, dtype=np.float64)
        spacing = anchors[1] - anchors[0] if anchors[1] > anchors[0] else 1.0
        weights = np.clip(1.0 - np.abs(pos[None] - anchors[:, None]) / spacing, 0.0, None)
        return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)

    wy, wx = tents(height, ay), tents(width, ax)
    mixing = (wy[:, None, :, None] * wx[None, :, None, :]).reshape(gh * gw, height, width)
    anchors = np.stack(np.meshgrid(ax, ay), axis=-1).reshape(-1, 2)
    return anchors, mixing


def motion_basis_field(motion: CameraMotion,
                       height: int,
                       width: int,
                       kernel_size: int,
                       grid: Tuple[int, int] = (4, 4),
                       num_samples: int = 64) -> Dict[str, np.ndarray]:
    """A smooth motion as a basis field: exact kernels at a grid of anchors, tent-interpolated between them.

    Every pixel gets its own kernel (a convex combination of its four nearest anchor kernels).

    Args:
        motion (CameraMotion): the motion.
        height (int): H.
        width (int): W.
        kernel_size (int): K, odd.
        grid (tuple): ``(gh, gw)``, B = gh * gw basis kernels.
        num_samples (int): time samples per anchor kernel.

    Returns:
        dict: ``basis`` (B, K, K) float32, ``mixing`` (B, H, W) float32 (sums to 1 over B), ``anchors`` (B, 2).
    """
    anchors, mixing = tent_mixing(height, width, grid)
    basis = np.stack([motion_kernel(motion, tuple(a), kernel_size, num_samples) for a in anchors])
    return {'basis': basis, 'mixing': mixing, 'anchors': anchors}


def pad_basis(basis: np.ndarray, mixing: np.ndarray, num_basis: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pads a basis field to a fixed B with identity (delta) kernels of zero weight, for batching.

    Args:
        basis (ndarray): (B0, K, K).
        mixing (ndarray): (B0, H, W).
        num_basis (int): B >= B0.

    Returns:
        tuple: basis (B, K, K) and mixing (B, H, W), same field.
    """
    b0, k = basis.shape[0], basis.shape[-1]
    if num_basis < b0:
        raise ValueError(f'num_basis: expected >= {b0} (the basis size to pad), got {num_basis}')
    delta = np.zeros((num_basis - b0, k, k), dtype=basis.dtype)
    delta[:, k // 2, k // 2] = 1.0
    zeros = np.zeros((num_basis - b0, ) + mixing.shape[1:], dtype=mixing.dtype)
    return np.concatenate([basis, delta]), np.concatenate([mixing, zeros])
