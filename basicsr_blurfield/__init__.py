"""basicsr_blurfield: non-uniform motion-blur fields for BasicSR.

Importing the package applies the platform fixes (``compat``) before BasicSR is imported, then imports every
module that registers something with BasicSR's registries: ``archs/*_arch.py``, ``losses/*_loss.py``,
``data/*_dataset.py``, ``models/*_model.py`` and ``metrics/*.py``. ``basicsr_blurfield.fields`` is the pure-torch
core and needs none of this.
"""
import importlib
import os
import sys

__version__ = '0.1.0'

# command-line tools whose --help must not import torch: `python -m basicsr_blurfield.<tool> --help` stops here
_LIGHT_HELP_TOOLS = ('basicsr_blurfield.restore', )


def _light_help_requested() -> bool:
    """True while ``python -m <light tool> -h/--help`` imports this package (``sys.argv[0]`` is ``'-m'`` then)."""
    argv = getattr(sys, 'orig_argv', [])
    if sys.argv[:1] != ['-m'] or '-m' not in argv or argv.index('-m') + 1 >= len(argv):
        return False
    rest = argv[argv.index('-m') + 1:]
    return rest[0] in _LIGHT_HELP_TOOLS and bool({'-h', '--help'} & set(rest[1:]))

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


if not _light_help_requested():
    from basicsr_blurfield import compat

    compat.apply_all()
    _registered_modules = _import_registered_modules()
