"""Shared fixtures: tiny paired deblurring folders made from scikit-image's bundled photos (offline)."""
import os

import cv2
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

# Published checkpoint layouts (copied from the project's shared fixtures; data, not code).
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'published_layouts')


def make_paired_folders(root: str, count: int = 3, size: tuple = (40, 48), seed: int = 0) -> tuple:
    """Writes ``count`` blurry/sharp PNG pairs (horizontal box blur of bundled photos) under ``root``.

    Returns:
        tuple: (gt_folder, lq_folder) with the same file names.
    """
    from skimage import data as skimage_data

    photos = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    rng = np.random.default_rng(seed)
    gt_dir, lq_dir = os.path.join(root, 'sharp'), os.path.join(root, 'blur')
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(lq_dir, exist_ok=True)
    height, width = size
    for index in range(count):
        photo = photos[index % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - 4 * height))
        left = int(rng.integers(0, photo.shape[1] - 4 * width))
        crop = cv2.resize(photo[top:top + 4 * height, left:left + 4 * width], (width, height),
                          interpolation=cv2.INTER_AREA)
        sharp = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        kernel = np.zeros((7, 7), np.float32)
        kernel[3, :] = 1 / 7
        blurry = cv2.filter2D(sharp, -1, kernel, borderType=cv2.BORDER_REPLICATE)
        cv2.imwrite(os.path.join(gt_dir, f'{index:03d}.png'), sharp)
        cv2.imwrite(os.path.join(lq_dir, f'{index:03d}.png'), blurry)
    return gt_dir, lq_dir


def load_script(name: str):
    """Imports ``scripts/<name>.py`` as a module (its ``main`` is not run), for tests of the command-line scripts."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def paired_folders(tmp_path):
    return make_paired_folders(str(tmp_path / 'data'))
