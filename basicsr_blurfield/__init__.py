"""basicsr_blurfield: non-uniform motion-blur fields for BasicSR.

Importing the package applies the platform fixes (``compat``) before BasicSR is imported, then imports every
module that registers something with BasicSR's registries: ``archs/*_arch.py``, ``losses/*_loss.py``,
``data/*_dataset.py``, ``models/*_model.py`` and ``metrics/*.py``. ``basicsr_blurfield.fields`` is the pure-torch
core and needs none of this.
"""
import importlib
import os

from basicsr_blurfield import compat

compat.apply_all()

__version__ = '0.1.0'

_REGISTERED_FOLDERS = (('archs', '_arch.py'), ('losses', '_loss.py'), ('data', '_dataset.py'), ('models', '_model.py'),
                       ('metrics', '.py'))


def _import_registered_modules() -> list:
    """Imports every module whose file name marks it as registering with BasicSR (BasicSR's own scan rule)."""
    root = os.path.dirname(os.path.abspath(__file__))
    modules = []
    for folder, suffix in _REGISTERED_FOLDERS:
        for file_name in sorted(os.listdir(os.path.join(root, folder))):
            if file_name.endswith(suffix) and not file_name.startswith('_'):
                modules.append(importlib.import_module(f'basicsr_blurfield.{folder}.{file_name[:-3]}'))
    return modules


_registered_modules = _import_registered_modules()
