"""Synthetic non-uniform blur with ground-truth fields (Carbajal et al. §3.3, extended with smooth fields).

Each item takes a sharp crop (or, with ``dead_leaves_prob``, a dead-leaves image in the photo's colours:
:mod:`.dead_leaves`), draws a random blur field (``basicsr_blurfield.fields.generators``) and blurs the crop with the
field's own ``blur`` (gather form, eq. 1-2 of Carbajal et al.). Field types, drawn per item with the
ratios of option ``field_types``:

* ``region``: background + up to ``max_regions`` regions with their own camera-shake kernels, masks blurred by their
  kernel and renormalised (a :class:`BasisField`; per-pixel loss weights = inverse region area, mean 1);
* ``smooth``: camera rotation / zoom / translation about a random point, a different kernel at every pixel;
* ``linear``: a linear motion-flow field (straight per-pixel motion whose length and direction vary smoothly).

Representation (option ``field_representation``), fixed per dataset so items collate into one batch:

* ``'basis'`` (default, any mix of types): every item is a :class:`BasisField` with the same ``B =
  max(basis_grid ** 2, max_regions + 1)``. Smooth and linear fields have exact kernels at a ``basis_grid`` x
  ``basis_grid`` grid of anchors with bilinear (tent) mixing maps; region fields have one kernel per region; unused
  slots hold zero-weight identity kernels. Item keys ``field_basis`` (B, K, K) and ``field_mixing`` (B, H, W).
* ``'offset'`` (smooth and linear only; ``region`` must have ratio 0): an :class:`OffsetField` of ``num_steps`` (T)
  time samples through (0, 0) at the middle step. Item key ``field_offsets`` (T, 2, H, W).

The blur is computed on a margin of ``K // 2`` pixels around the crop (field and image both), so the borders of
``lq`` are real blur, not padding. Optional: gamma linearisation (``gamma``: blur, and noise, in linear light
``gt ** gamma``, then back), Poisson noise (``poisson_peak`` photons at white) and Gaussian noise (``noise_std``, a
float or a ``[low, high]`` range drawn per item). Noise-free with ``gamma: ~`` exactly ``lq = field.blur(gt)`` up to
the borders (which see the margin).

Randomness: item ``i`` of phase ``val``/``test`` always comes from ``numpy.random.default_rng([seed, i])``; in phase
``train`` the entropy also holds ``torch.initial_seed()`` (distinct per DataLoader worker and epoch, reproducible
from BasicSR's ``manual_seed``) and a per-process draw counter, so every draw differs.

Reference: Carbajal et al., *Single Image Non-uniform Blur Kernel Estimation via Adaptive Basis Decomposition*, §3.3.
"""
import os
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch
from torch.utils import data

from basicsr.utils import FileClient, imfrombytes
from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_blurfield.data.dead_leaves import dead_leaves_image
from basicsr_blurfield.data.paired_blur_dataset import IMAGE_EXTENSIONS, list_images, read_lmdb_keys
from basicsr_blurfield.fields import BasisField, BlurField, OffsetField
from basicsr_blurfield.fields import generators as gen

FIELD_TYPES = ('region', 'smooth', 'linear')
REPRESENTATIONS = ('basis', 'offset')
BUNDLED_PHOTOS = ('astronaut.png', 'camera.png', 'coffee.png', 'chelsea.png', 'rocket.jpg', 'hubble_deep_field.jpg',
                  'ihc.png', 'motorcycle_left.png')
# scikit-image photos kept for the public estimation benchmark (``basicsr_blurfield.benchmark_estimation``): no
# training option may use them
HELD_OUT_PHOTOS = ('retina.jpg', 'brick.png', 'grass.png', 'gravel.png', 'coins.png', 'moon.png', 'cell.png')
PALETTE_SIZE = 256  # photo pixels a dead-leaves crop takes its colours from


def bundled_photo_paths(names=BUNDLED_PHOTOS) -> list:
    """Paths of photos bundled with scikit-image (offline), by file name; default the CC0 photos astronaut, camera,
    coffee, chelsea, rocket, hubble_deep_field, immunohistochemistry, motorcycle_left. Names must exist in
    ``skimage.data.data_dir`` and must not be benchmark photos (:data:`HELD_OUT_PHOTOS`)."""
    import skimage.data

    names = [names] if isinstance(names, str) else list(names)
    held_out = sorted(set(names) & set(HELD_OUT_PHOTOS))
    if held_out:
        raise ValueError(f'bundled_photos: {held_out} are held out for the estimation benchmark; choose others')
    missing = [name for name in names if not os.path.isfile(os.path.join(skimage.data.data_dir, name))]
    if missing or not names:
        raise ValueError(f'bundled_photos: expected file names in {skimage.data.data_dir}, got {missing or names}')
    return [os.path.join(skimage.data.data_dir, name) for name in names]


def list_sharp_images(root: Optional[str], backend: str = 'disk', bundled=BUNDLED_PHOTOS) -> list:
    """Sharp image paths (disk, recursive, sorted) or lmdb keys (``meta_info.txt``); for None the ``bundled``
    scikit-image photos."""
    if root is None:
        return bundled_photo_paths(bundled)
    if backend == 'lmdb':
        return read_lmdb_keys(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f'dataroot_gt: expected a folder of sharp images, got {root!r}')
    found = [os.path.join(root, path) for path in list_images(root)]
    if not found:
        raise ValueError(f'dataroot_gt: expected images ({", ".join(IMAGE_EXTENSIONS)}) under {root!r}, found none')
    return found


def parse_field_ratios(ratios: Optional[dict], representation: str) -> Tuple[Tuple[str, ...], np.ndarray]:
    """Validates ``field_types`` ratios for a representation; returns the types drawn and their probabilities."""
    ratios = dict(
        ratios or ({
            'region': 0.6,
            'smooth': 0.2,
            'linear': 0.2
        } if representation == 'basis' else {
            'smooth': 0.5,
            'linear': 0.5
        }))
    unknown = sorted(set(ratios) - set(FIELD_TYPES))
    if unknown:
        raise ValueError(f'field_types: expected keys among {FIELD_TYPES}, got {unknown}')
    names = tuple(name for name in FIELD_TYPES if float(ratios.get(name, 0)) > 0)
    if not names or any(float(value) < 0 for value in ratios.values()):
        raise ValueError(f'field_types: expected non-negative ratios with a positive sum, got {ratios}')
    if representation == 'offset' and 'region' in names:
        raise ValueError("field_types: region fields need field_representation 'basis'; with 'offset' expected "
                         f"only smooth / linear, got {ratios}")
    probs = np.array([float(ratios[name]) for name in names])
    return names, probs / probs.sum()


def synthesize_field(field_type: str,
                     height: int,
                     width: int,
                     rng: np.random.Generator,
                     kernel_size: int = 33,
                     representation: str = 'basis',
                     max_regions: int = 3,
                     min_region_area: int = 400,
                     basis_grid: int = 3,
                     num_steps: int = 15) -> Dict[str, np.ndarray]:
    """Draws one field of a given type in a given representation (unpadded).

    Args:
        field_type (str): ``'region'``, ``'smooth'`` or ``'linear'``.
        height (int): H.
        width (int): W.
        rng (Generator): randomness.
        kernel_size (int): K, odd.
        representation (str): ``'basis'`` or ``'offset'``.
        max_regions (int): region fields: most regions besides the background.
        min_region_area (int): region fields: least region area in pixels.
        basis_grid (int): smooth / linear basis fields: anchors per side.
        num_steps (int): offset fields: T.

    Returns:
        dict: ``basis`` (B0, K, K) and ``mixing`` (B0, H, W), or ``offsets`` (T, 2, H, W); ``labels`` (H, W) int
        (region ids; all zero for smooth / linear fields).
    """
    if field_type not in FIELD_TYPES:
        raise ValueError(f'field_type: expected one of {FIELD_TYPES}, got {field_type!r}')
    if representation not in REPRESENTATIONS:
        raise ValueError(f'representation: expected one of {REPRESENTATIONS}, got {representation!r}')
    if field_type == 'region':
        if representation != 'basis':
            raise ValueError(f"field_type 'region': expected representation 'basis', got {representation!r}")
        field = gen.region_field(height, width, rng, kernel_size, max_regions=max_regions, min_area=min_region_area)
        return {'basis': field['basis'], 'mixing': field['mixing'], 'labels': field['labels']}
    motion = gen.random_camera_motion(height, width, rng, max_displacement=kernel_size // 2, kind=field_type)
    labels = np.zeros((height, width), dtype=np.int64)
    if representation == 'offset':
        return {'offsets': gen.motion_offsets(motion, height, width, num_steps), 'labels': labels}
    field = gen.motion_basis_field(motion, height, width, kernel_size, grid=(basis_grid, basis_grid))
    return {'basis': field['basis'], 'mixing': field['mixing'], 'labels': labels}


def _active_basis(field: BasisField) -> BasisField:
    """The same field without basis kernels whose mixing weight is zero everywhere (cheaper ``blur``)."""
    active = field.mixing.flatten(2).amax(2).amax(0) > 0
    if bool(active.all()):
        return field
    return BasisField(field.basis[:, active], field.mixing[:, active], field.padding, check=False)


def blur_with_field(sharp: np.ndarray, arrays: Dict[str, np.ndarray], margin: int = 0) -> Tuple[np.ndarray, BlurField]:
    """Blurs an image with a field given as arrays, then crops a margin from image and field.

    Args:
        sharp (ndarray): (H, W, C) float32 in [0, 1].
        arrays (dict): ``basis`` (B, K, K) + ``mixing`` (B, H, W), or ``offsets`` (T, 2, H, W), on the H x W grid.
        margin (int): pixels cropped from each side after blurring.

    Returns:
        tuple: blurry (H - 2m, W - 2m, C) float32, and the cropped field (batch 1).
    """
    image = torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1)))[None]
    crop = (slice(None), ) * 2 + (slice(margin, image.shape[2] - margin), slice(margin, image.shape[3] - margin))
    if 'basis' in arrays:
        field = BasisField(torch.from_numpy(arrays['basis'])[None], torch.from_numpy(arrays['mixing'])[None])
        blurry = _active_basis(field).blur(image)
        cropped = BasisField(field.basis, field.mixing[crop].contiguous(), check=False)
    else:
        field = OffsetField(torch.from_numpy(arrays['offsets'])[None])
        blurry = field.blur(image)
        cropped = OffsetField(field.offsets[:, :, :, crop[2], crop[3]].contiguous(), check=False)
    return blurry[crop][0].numpy().transpose(1, 2, 0), cropped


def degrade(linear: np.ndarray, rng: np.random.Generator, noise_std=None, poisson_peak=None) -> np.ndarray:
    """Adds Poisson noise (``poisson_peak`` photons at 1.0) then Gaussian noise (std or ``[low, high]`` range).

    Args:
        linear (ndarray): image, any shape, float32 in [0, 1].
        rng (Generator): randomness.
        noise_std (float | sequence | None): Gaussian std, or a range drawn uniformly.
        poisson_peak (float | None): photon count at white.

    Returns:
        ndarray: float32, clipped to [0, 1].
    """
    out = linear
    if poisson_peak:
        out = rng.poisson(np.clip(out, 0, None) * float(poisson_peak)).astype(np.float32) / float(poisson_peak)
    if noise_std is not None:
        std = float(rng.uniform(*noise_std)) if isinstance(noise_std, (list, tuple)) else float(noise_std)
        if std > 0:
            out = out + rng.normal(0.0, std, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def field_from_batch(batch: dict) -> BlurField:
    """Rebuilds the field of a collated batch (or of a single item) of :class:`SyntheticBlurDataset`.

    Args:
        batch (dict): with ``field_basis`` (N, B, K, K) and ``field_mixing`` (N, B, H, W), or ``field_offsets``
            (N, T, 2, H, W); a single item (no N) is accepted too.

    Returns:
        BlurField: a :class:`BasisField` or :class:`OffsetField` of batch N, on the tensors' device.
    """
    if 'field_basis' in batch:
        basis, mixing = batch['field_basis'], batch['field_mixing']
        if basis.dim() == 3:
            basis, mixing = basis[None], mixing[None]
        return BasisField(basis, mixing)
    if 'field_offsets' in batch:
        offsets = batch['field_offsets']
        return OffsetField(offsets[None] if offsets.dim() == 4 else offsets)
    raise KeyError(f'batch: expected field_basis + field_mixing or field_offsets, got keys {sorted(batch)}')


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> tuple:
    """A random ``size x size`` crop of an (H, W, C) image, reflect-padded (centred) first when it is smaller.

    Returns:
        tuple: the crop (size, size, C) and its top-left corner ``(top, left)`` in the (padded) image.
    """
    height, width = image.shape[:2]
    if height < size or width < size:
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        image = cv2.copyMakeBorder(image, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2,
                                   cv2.BORDER_REFLECT_101)
        height, width = image.shape[:2]
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return image[top:top + size, left:left + size], (top, left)


@DATASET_REGISTRY.register()
class SyntheticBlurDataset(data.Dataset):
    """Sharp crops blurred by random non-uniform fields, with the fields and per-pixel loss weights.

    Options (plain YAML values): ``dataroot_gt`` (folder or ``.lmdb`` of sharp images; absent or ``~``: the
    scikit-image photos), ``io_backend`` (``{type: disk}`` or ``{type: lmdb}``), ``gt_size`` (crop, default 256),
    ``kernel_size`` (K, odd, default 33), ``use_hflip``, ``use_rot``, ``num_samples`` (virtual length; default the
    number of images; BasicSR's ``EnlargedSampler`` applies ``dataset_enlarge_ratio`` on top in training, and
    repeated indices still give new draws), ``seed`` (default 0), ``phase``, ``field_types`` (ratios,
    default ``{region: 0.6, smooth: 0.2, linear: 0.2}``), ``field_representation`` (``basis`` | ``offset``),
    ``max_regions`` (3), ``min_region_area`` (400), ``basis_grid`` (3), ``num_steps`` (15), ``gamma`` (~ or 2.2),
    ``noise_std`` (~, float or [low, high]), ``poisson_peak`` (~ or photons at white), ``bundled_photos`` (without
    ``dataroot_gt``: scikit-image file names, default :data:`BUNDLED_PHOTOS`; benchmark photos are refused),
    ``gray_prob`` (probability that a crop becomes its BT.601 luma on all three channels, default 0),
    ``dead_leaves_prob`` (probability that the crop is a dead-leaves image, :mod:`.dead_leaves`, coloured from the
    photo's pixels instead; default 0).

    Items: ``lq``, ``gt`` (3, H, W) float32 RGB in [0, 1]; ``lq_path``, ``gt_path`` (str: the source path with
    ``_<index>`` appended to its stem, so saved validation images get distinct names); ``weight`` (1, H, W)
    (inverse region area, mean 1; all ones for smooth / linear fields); ``field_type`` (str); ``field_basis``
    (B, K, K) + ``field_mixing`` (B, H, W), or ``field_offsets`` (T, 2, H, W). Rebuild the batch's field with
    :func:`field_from_batch`.
    """

    option_keys = ('kernel_size', 'num_samples', 'seed', 'field_types', 'field_representation', 'max_regions',
                   'min_region_area', 'basis_grid', 'num_steps', 'gamma', 'noise_std', 'poisson_peak', 'bundled_photos',
                   'gray_prob', 'dead_leaves_prob')

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.root = opt.get('dataroot_gt')
        backend = self.io_backend_opt.get('type', 'disk')
        if backend not in ('disk', 'lmdb'):
            raise ValueError(f"io_backend.type: expected one of ('disk', 'lmdb'), got {backend!r}")
        if backend == 'lmdb' and self.root is None:
            raise ValueError('io_backend lmdb: expected dataroot_gt (a .lmdb folder), got None')
        if self.root is not None and opt.get('bundled_photos') is not None:
            raise ValueError('bundled_photos: only used without dataroot_gt; remove one of the two')
        bundled = opt.get('bundled_photos')
        self.paths = list_sharp_images(self.root, backend, BUNDLED_PHOTOS if bundled is None else bundled)
        if backend == 'lmdb':
            self.io_backend_opt['db_paths'] = [self.root]
            self.io_backend_opt['client_keys'] = ['gt']
        self.file_client = None
        # the bundled photos are few and small: decode them once per process
        self._cache = {} if self.root is None else None
        self.gt_size = int(opt.get('gt_size', 256))
        self.kernel_size = int(opt.get('kernel_size', 33))
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f'kernel_size: expected a positive odd int, got {self.kernel_size}')
        self.representation = opt.get('field_representation', 'basis')
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f'field_representation: expected one of {REPRESENTATIONS}, got {self.representation!r}')
        self.type_names, self.type_probs = parse_field_ratios(opt.get('field_types'), self.representation)
        self.max_regions = int(opt.get('max_regions', 3))
        self.basis_grid = int(opt.get('basis_grid', 3))
        self.num_basis = max(self.basis_grid**2, self.max_regions + 1)
        self.num_samples = opt.get('num_samples') or len(self.paths)
        self.seed = int(opt.get('seed', 0))
        self.phase = opt.get('phase', 'train')
        self.gray_prob = float(opt.get('gray_prob') or 0.0)
        self.dead_leaves_prob = float(opt.get('dead_leaves_prob') or 0.0)
        for key, value in (('gray_prob', self.gray_prob), ('dead_leaves_prob', self.dead_leaves_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{key}: expected a probability in [0, 1], got {value}')
        self._draws = 0

    def __len__(self) -> int:
        return int(self.num_samples)

    def _rng(self, index: int) -> np.random.Generator:
        if self.phase == 'train':
            self._draws += 1
            return np.random.default_rng([self.seed, index, torch.initial_seed() % (1 << 63), self._draws])
        return np.random.default_rng([self.seed, index])

    def _read(self, path: str) -> np.ndarray:
        """Reads a sharp image as (H, W, 3) float32 RGB in [0, 1]."""
        if self._cache is not None and path in self._cache:
            return self._cache[path]
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        image = imfrombytes(self.file_client.get(path, 'gt'), float32=True)
        if image is None:
            raise ValueError(f'cannot decode sharp image {path!r}: the file is corrupt or not an image')
        if image.ndim == 2:
            image = image[..., None]
        image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
        image = np.ascontiguousarray(image[..., ::-1])
        if self._cache is not None:
            self._cache[path] = image
        return image

    def _crop(self, image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """A (size, size, 3) sharp crop of ``image``, or with ``dead_leaves_prob`` a dead-leaves image coloured from
        ``PALETTE_SIZE`` of its pixels; flips / transposes and ``gray_prob`` as the options say."""
        if self.dead_leaves_prob > 0 and rng.random() < self.dead_leaves_prob:
            pixels = image.reshape(-1, 3)
            crop = dead_leaves_image(size, rng, palette=pixels[rng.integers(0, len(pixels), PALETTE_SIZE)])
        else:
            crop, _ = random_crop(image, size, rng)
            if self.opt.get('use_hflip', False) and rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.opt.get('use_rot', False):
                if rng.random() < 0.5:
                    crop = crop[::-1]
                if rng.random() < 0.5:
                    crop = crop.transpose(1, 0, 2)
        if self.gray_prob > 0 and rng.random() < self.gray_prob:
            luma = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)  # BT.601 weights
            crop = cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB)
        return np.ascontiguousarray(crop)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f'index: expected 0 <= index < {len(self)}, got {index}')
        rng = self._rng(index)
        path = self.paths[index % len(self.paths)]
        stem, ext = os.path.splitext(path)
        return self.draw(self._read(path), rng, f'{stem}_{index:06d}{ext}')

    def draw(self, photo: np.ndarray, rng: np.random.Generator, name: str = '') -> dict:
        """One item from ``photo`` (H, W, 3) float32 in [0, 1] with ``rng``: a ``gt_size`` crop (flipped / rotated per
        the options), a field drawn from the options' field types, the blurry crop (blurred on a K // 2 margin, so its
        borders are real blur), noise; ``name`` becomes ``lq_path`` / ``gt_path``. What :meth:`__getitem__` returns for
        the photo and seed of an index; also for callers with their own photos (``benchmarks/bench_blind_deblur.py``).
        """
        margin = self.kernel_size // 2
        padded_size = self.gt_size + 2 * margin
        sharp = self._crop(photo, padded_size, rng)
        field_type = str(rng.choice(self.type_names, p=self.type_probs))
        arrays = synthesize_field(field_type, padded_size, padded_size, rng, self.kernel_size, self.representation,
                                  self.max_regions, int(self.opt.get('min_region_area', 400)), self.basis_grid,
                                  int(self.opt.get('num_steps', 15)))
        gamma = self.opt.get('gamma')
        linear = sharp**float(gamma) if gamma else sharp
        blurry, field = blur_with_field(linear, arrays, margin)
        blurry = degrade(blurry, rng, self.opt.get('noise_std'), self.opt.get('poisson_peak'))
        if gamma:
            blurry = blurry**(1.0 / float(gamma))
        inner = slice(margin, margin + self.gt_size)
        gt = sharp[inner, inner]
        labels = arrays['labels'][inner, inner]
        item = {
            'lq': torch.from_numpy(np.ascontiguousarray(blurry.transpose(2, 0, 1))),
            'gt': torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1))),
            'lq_path': name,
            'gt_path': name,
            'weight': torch.from_numpy(gen.region_weights(labels))[None],
            'field_type': field_type,
        }
        if isinstance(field, BasisField):
            basis, mixing = gen.pad_basis(field.basis[0].numpy(), field.mixing[0].numpy(), self.num_basis)
            item['field_basis'], item['field_mixing'] = torch.from_numpy(basis), torch.from_numpy(mixing)
        else:
            item['field_offsets'] = field.offsets[0]
        return item
