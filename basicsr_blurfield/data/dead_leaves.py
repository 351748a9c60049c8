"""Dead-leaves images: endless sharp training images with the statistics of natural photos.

The dead-leaves model (Matheron 1968; as a model of natural images, Lee, Mumford and Huang, *Occlusion models for
natural images*, IJCV 2001) stacks opaque discs of random position, colour and radius. With radii drawn from
``p(r) ∝ r^-3`` between ``r_min`` and ``r_max`` the image is scale invariant and its gradients are sparse and heavy
tailed, as in photos; Achddou et al. (*Synthetic images as a regularity prior for image restoration neural networks*,
SSVM 2021) train restoration networks on such images alone. Here they give the blur estimators content they cannot
memorise: ``SyntheticBlurDataset(dead_leaves_prob=p)`` replaces a photo crop by one with probability ``p``.

Discs are painted back to front over a background until about ``coverage`` times the image area is covered, at
``supersample`` times the size and then area-averaged, so edges are sharp but not aliased. Colours are drawn from a
palette (default uniform RGB; ``SyntheticBlurDataset`` passes pixels of the photo, so the colour statistics stay
those of real images).
"""
import cv2
import numpy as np


def power_law_radii(count: int, r_min: float, r_max: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` radii from ``p(r) ∝ r^-3`` on ``[r_min, r_max]`` by inverting the CDF; (count,) float64."""
    if not 0 < r_min <= r_max:
        raise ValueError(f'radii: expected 0 < r_min <= r_max, got r_min={r_min}, r_max={r_max}')
    uniform = rng.random(count)
    return (r_min**-2 - uniform * (r_min**-2 - r_max**-2))**-0.5


def dead_leaves_image(size: int,
                      rng: np.random.Generator,
                      palette: np.ndarray = None,
                      r_min: float = 1.0,
                      r_max: float = None,
                      coverage: float = 6.0,
                      supersample: int = 2) -> np.ndarray:
    """One dead-leaves image.

    Args:
        size (int): side in pixels.
        rng (Generator): the only source of randomness.
        palette (ndarray, optional): (P, 3) float RGB colours in [0, 1] to draw from; default uniform RGB.
        r_min (float): smallest radius in output pixels.
        r_max (float, optional): largest radius; default ``size / 2``.
        coverage (float): expected disc area over image area (about ``exp(-coverage)`` of the background stays).
        supersample (int): rendering scale before area averaging (1: no anti-aliasing).

    Returns:
        ndarray: (size, size, 3) float32 RGB in [0, 1].
    """
    if size < 1 or supersample < 1 or coverage <= 0:
        raise ValueError(f'dead leaves: expected size >= 1, supersample >= 1, coverage > 0; got {size}, '
                         f'{supersample}, {coverage}')
    r_max = size / 2 if r_max is None else r_max
    if palette is not None:
        palette = np.asarray(palette, dtype=np.float32).reshape(-1, 3)
        if len(palette) == 0:
            raise ValueError('dead leaves: expected a non-empty (P, 3) palette')
    # mean disc area of the r^-3 law: pi * E[r^2] = pi * 2 ln(r_max / r_min) / (r_min^-2 - r_max^-2)
    mean_area = np.pi * (2 * np.log(r_max / r_min) / (r_min**-2 - r_max**-2) if r_max > r_min else r_min**2)
    count = max(1, int(np.ceil(coverage * size * size / mean_area)))
    colours = palette[rng.integers(0, len(palette), count + 1)] if palette is not None else rng.random((count + 1, 3))
    radii = power_law_radii(count, r_min, r_max, rng) * supersample
    centres = rng.random((count, 2)) * size * supersample
    canvas = np.empty((size * supersample, size * supersample, 3), dtype=np.float32)
    canvas[:] = colours[-1]
    shift = 4  # cv2.circle's fixed-point fraction bits: sub-pixel centres and radii
    scale = 1 << shift
    for (x, y), radius, colour in zip(centres, radii, colours):
        cv2.circle(canvas, (int(x * scale), int(y * scale)), max(1, int(radius * scale)), colour.tolist(), -1,
                   cv2.LINE_8, shift)
    if supersample > 1:
        canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(canvas, 0.0, 1.0)
