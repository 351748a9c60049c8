"""Random blur kernels for training the kernel flow prior (stage I of Fang et al., UFPNet, eq. 2-3).

Camera-shake kernels (random walk with inertia, impulsive shakes and centripetal pull, bilinearly splatted; the
generator of Carbajal et al. §3.3) and linear kernels from ``basicsr_blurfield.fields.generators``: non-negative,
summing to 1, K x K, centred by their centre of mass. Lengths (``generators.kernel_length``) span about 1.5 to 40 px
for camera shake and 1 to 32 px for linear kernels at K = 33, about 1 to 24 px and 1 to 18 px at K = 19.

Item ``i`` of phase ``val``/``test`` always comes from ``numpy.random.default_rng([seed, i])``; phase ``train`` adds
``torch.initial_seed()`` (per DataLoader worker and epoch) and a per-process draw counter.

Reference: Fang et al., CVPR 2023, §3.1 (flow-based kernel prior trained on synthetic motion kernels).
"""
import numpy as np
import torch
from torch.utils import data

from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_blurfield.fields import generators as gen


@DATASET_REGISTRY.register()
class KernelDataset(data.Dataset):
    """Seeded random motion kernels.

    Options: ``kernel_size`` (K, odd, default 19), ``num_samples`` (length, default 10000), ``seed`` (default 0),
    ``phase``, ``kernel_types`` (ratios, default ``{shake: 0.8, linear: 0.2}``).

    Items: ``kernel`` (1, K, K) float32, non-negative, sums to 1; ``kernel_type`` (str); ``length`` (float, px).
    """

    option_keys = ('kernel_size', 'num_samples', 'seed', 'kernel_types')

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.kernel_size = int(opt.get('kernel_size', 19))
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f'kernel_size: expected a positive odd int, got {self.kernel_size}')
        ratios = dict(opt.get('kernel_types') or {'shake': 0.8, 'linear': 0.2})
        unknown = sorted(set(ratios) - set(gen.KERNEL_TYPES))
        if unknown:
            raise ValueError(f'kernel_types: expected keys among {gen.KERNEL_TYPES}, got {unknown}')
        self.type_names = tuple(name for name in gen.KERNEL_TYPES if float(ratios.get(name, 0)) > 0)
        if not self.type_names or any(float(value) < 0 for value in ratios.values()):
            raise ValueError(f'kernel_types: expected non-negative ratios with a positive sum, got {ratios}')
        probs = np.array([float(ratios[name]) for name in self.type_names])
        self.type_probs = probs / probs.sum()
        self.num_samples = int(opt.get('num_samples', 10000))
        self.seed = int(opt.get('seed', 0))
        self.phase = opt.get('phase', 'train')
        self._draws = 0

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f'index: expected 0 <= index < {len(self)}, got {index}')
        if self.phase == 'train':
            self._draws += 1
            rng = np.random.default_rng([self.seed, index, torch.initial_seed() % (1 << 63), self._draws])
        else:
            rng = np.random.default_rng([self.seed, index])
        kind = str(rng.choice(self.type_names, p=self.type_probs))
        kernel = gen.random_kernel(self.kernel_size, rng, kind)
        return {'kernel': torch.from_numpy(kernel)[None], 'kernel_type': kind, 'length': gen.kernel_length(kernel)}
