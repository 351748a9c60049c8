"""``python -m basicsr_blurfield.train -opt X.yml``: BasicSR's training pipeline with the plugin loaded.

Same flags as BasicSR's ``basicsr/train.py`` (``-opt``, ``--launcher none|pytorch|slurm``, ``--auto_resume``,
``--debug``, ``--local_rank``, ``--force_yml``). ``experiments/``, ``tb_logger/`` (and ``results/`` for tests) are
created under the current directory. Importing ``basicsr_blurfield`` first applies the compat fixes (CPU resume,
CPU distributed) and registers our archs, losses, datasets, models and metrics.
"""
import os

import basicsr_blurfield  # noqa: F401  (registers everything, applies compat)
from basicsr.train import train_pipeline


def main() -> None:
    train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
