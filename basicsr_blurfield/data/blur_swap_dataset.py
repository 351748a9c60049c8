"""Blur-swap augmentation of Tran et al. (CVPR 2021, §4.1.2): a paired dataset whose blurry images are, with
probability ``swap_ratio``, replaced by the blur of another pair of the same set transferred through the encoded
kernel space (§3.4): ``lq_i := clip(F(x_i, G(x_j, y_j)), 0, 1)`` for a random j != i, with a frozen G and F.

Options:

* ``dataset``: the wrapped dataset's options (any registered paired dataset giving ``gt`` and ``lq``, e.g.
  ``{type: PairedBlurDataset, ...}`` or ``{type: SyntheticBlurDataset, ...}``); ``phase`` defaults to this one's.
* ``swap_ratio`` (float in [0, 1], default 0.5); ``seed`` (default 0).
* ``network_g`` / ``network_f``: G and F options (default: published sizes); ``pretrain_network_g`` /
  ``pretrain_network_f``: their checkpoints (ours, ``params``, or the authors' ``KernelWizard`` file for both).
* ``codes``: ``'on_the_fly'`` (default: for each swapped item, read pair j and compute its code) or
  ``'precomputed'`` (one code per pair, computed once at start-up from the wrapped dataset's item j, i.e. from one
  random crop of it in training; cached in ``code_file`` when given, reused when that file matches the set).

Each item is transformed alone (batch 1 through F with its own code), so the samples of a batch never share or mix
codes; ``swap_index`` records j (-1: the item is unchanged). The returned ``lq`` is clipped to [0, 1].

Cost: each swapped item costs one F pass (and, on the fly, one more read of pair j and one G pass) in the
data-loading process; precomputing costs one G pass per pair at start-up and D * h * w floats per pair (8 KiB at
256 px). At published sizes on CPU, 1 thread (``benchmarks/bench_blur_kernel_space.py``): F 0.81 s and G 0.66 s per
256 x 256 crop, so ``swap_ratio: 0.5`` on the fly adds about 0.7 s per item (batch 16: ~12 s of worker time per
batch; spread it over ``num_worker_per_gpu``); precomputed codes halve that after a start-up of ~0.66 s per pair. G and F run on CPU in every
DataLoader worker, each holding its own copy of the two networks (about 200 MB at published sizes).

Randomness: the swap draw of item i in phase ``val``/``test`` comes from ``numpy.random.default_rng([seed, i])``; in
``train`` it also holds ``torch.initial_seed()`` and a per-process counter (as ``SyntheticBlurDataset``).

Reference: Tran et al., CVPR 2021, §3.4 and §4.1.2 (Table 2), Table 4 (the augmentation for a deblurring network).
"""
import os

import numpy as np
import torch
from torch.utils import data

from basicsr.data import build_dataset
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from basicsr_blurfield.archs.blur_kernel_space_arch import load_frozen_blur_space
from basicsr_blurfield.atomic import torch_save

CODE_SOURCES = ('on_the_fly', 'precomputed')


@DATASET_REGISTRY.register()
class BlurSwapDataset(data.Dataset):
    """A paired dataset with blur-swap augmentation through a frozen G and F (see the module docstring).

    Items: those of the wrapped dataset (``lq``, ``gt`` (C, H, W) float32 RGB in [0, 1], paths, ...) with ``lq``
    replaced for swapped items, plus ``swap_index`` (int, j or -1).
    """

    option_keys = ('dataset', 'swap_ratio', 'codes', 'code_file', 'seed', 'network_g', 'network_f',
                   'pretrain_network_g', 'pretrain_network_f')

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        if not isinstance(opt.get('dataset'), dict) or 'type' not in opt['dataset']:
            raise ValueError('BlurSwapDataset: option dataset must be the wrapped dataset\'s options, e.g. '
                             '{type: PairedBlurDataset, dataroot_gt: ..., dataroot_lq: ...}')
        self.swap_ratio = float(opt.get('swap_ratio', 0.5))
        if not 0 <= self.swap_ratio <= 1:
            raise ValueError(f'swap_ratio: expected a probability in [0, 1], got {self.swap_ratio}')
        self.codes_source = opt.get('codes', 'on_the_fly')
        if self.codes_source not in CODE_SOURCES:
            raise ValueError(f'codes: invalid {self.codes_source!r}; expected one of {CODE_SOURCES}')
        self.phase = opt.get('phase', 'train')
        inner_opt = dict(opt['dataset'])
        inner_opt.setdefault('phase', self.phase)
        inner_opt.setdefault('name', f'{opt.get("name", "blur-swap")}-inner')
        self.dataset = build_dataset(inner_opt)
        if len(self.dataset) < 2 and self.swap_ratio > 0:
            raise ValueError(f'BlurSwapDataset: swapping needs at least 2 pairs, the wrapped dataset has '
                             f'{len(self.dataset)}')
        for role in ('g', 'f'):
            path = opt.get(f'pretrain_network_{role}')
            if path is None and self.swap_ratio > 0:
                raise ValueError(f'BlurSwapDataset: pretrain_network_{role} is missing (a trained checkpoint; an '
                                 'untrained G / F would not transfer blur)')
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f'pretrain_network_{role} not found: {path!r}')
        self.extractor, self.operator = load_frozen_blur_space(
            opt.get('network_g'), opt.get('network_f'), opt.get('pretrain_network_g'), opt.get('pretrain_network_f'))
        self.seed = int(opt.get('seed', 0))
        self._draws = 0
        self.codes = self._precompute() if self.codes_source == 'precomputed' else None

    def __len__(self) -> int:
        return len(self.dataset)

    def code_of(self, item: dict) -> torch.Tensor:
        """G(x, y) of one item: (1, D, h, w)."""
        with torch.no_grad():
            return self.extractor(item['gt'][None], item['lq'][None])

    def _precompute(self) -> list:
        """One code per pair (cached in ``code_file`` when given)."""
        path = self.opt.get('code_file')
        if path and os.path.isfile(path):
            codes = torch.load(path, map_location='cpu', weights_only=True)
            if len(codes) != len(self.dataset):
                raise ValueError(f'code_file {path!r} holds {len(codes)} codes but the dataset has '
                                 f'{len(self.dataset)} pairs: delete it to recompute')
            return list(codes)
        get_root_logger().info(f'BlurSwapDataset: computing {len(self.dataset)} kernel codes once')
        codes = [self.code_of(self.dataset[index])[0] for index in range(len(self.dataset))]
        if path:
            torch_save(torch.stack(codes) if len({c.shape for c in codes}) == 1 else codes, path)
        return codes

    def _rng(self, index: int) -> np.random.Generator:
        if self.phase == 'train':
            self._draws += 1
            return np.random.default_rng([self.seed, index, torch.initial_seed() % (1 << 63), self._draws])
        return np.random.default_rng([self.seed, index])

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        rng = self._rng(index)
        item['swap_index'] = -1
        if self.swap_ratio > 0 and rng.random() < self.swap_ratio:
            other = int(rng.integers(0, len(self.dataset) - 1))
            other += other >= index
            code = self.codes[other][None] if self.codes is not None else self.code_of(self.dataset[other])
            with torch.no_grad():
                item['lq'] = self.operator(item['gt'][None], code)[0].clamp(0, 1)
            item['swap_index'] = other
        return item
