"""Shared fixtures: tiny paired deblurring folders made from scikit-image's bundled photos (offline); helpers that
validate a field-estimator model item by item and run a tiny training through BasicSR's pipeline."""
import os
import pathlib
import subprocess
import sys

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


def refused(script, capsys, pattern: str, argv: list) -> None:
    """A script's ``main`` refuses ``argv`` in one ``error: ...`` line (``pattern`` searched in it), exit status 2."""
    import re

    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), err


def load_script(name: str):
    """Imports ``scripts/<name>.py`` as a module (its ``main`` is not run), for tests of the command-line scripts."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_project_option(name: str) -> dict:
    """The option dict of ``options/<name>`` of this repository."""
    import yaml

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'options', name)) as handle:
        return yaml.safe_load(handle)


def experiment_paths(root) -> dict:
    """``path`` options that put a model's checkpoints, training states, log and pictures under ``root``."""
    root = str(root)
    return dict(experiments_root=root, models=os.path.join(root, 'models'), log=root,
                training_states=os.path.join(root, 'training_states'), visualization=os.path.join(root, 'vis'))


def validate_figures(model, dataset) -> dict:
    """Means over the items of ``dataset`` (batches of 1) of ``model.evaluate_current()`` (a FieldEstimatorModel)."""
    figures = []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=1):
        model.feed_data(batch)
        model.test()
        figures.append(model.evaluate_current())
    return {name: float(np.mean([figure[name] for figure in figures])) for name in figures[0]}


def train_through_basicsr(tmp_path, opt: dict, name: str, iterations: int = 2) -> pathlib.Path:
    """Runs ``python -m basicsr_blurfield.train -opt`` on ``opt`` (a training option dict ending at ``iterations``)
    in a child process under ``tmp_path``: named ``name``, validated, logged every step and saved at the end.

    Returns:
        pathlib.Path: the experiment folder ``tmp_path/experiments/<name>``.
    """
    import yaml

    opt = dict(opt, name=name)
    for key in ('is_train', 'dist', 'rank', 'world_size'):
        opt.pop(key, None)
    opt['val'].update(val_freq=iterations)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=iterations, use_tb_logger=False)
    option_path = pathlib.Path(tmp_path) / f'{name}.yml'
    option_path.write_text(yaml.safe_dump(opt))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    result = subprocess.run([sys.executable, '-m', 'basicsr_blurfield.train', '-opt', str(option_path)], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return pathlib.Path(tmp_path) / 'experiments' / name


@pytest.fixture
def paired_folders(tmp_path):
    return make_paired_folders(str(tmp_path / 'data'))
