"""Start-up hook that loads basicsr_blurfield whenever ``basicsr`` is imported.

BasicSR has no plugin entry points, so BasicSR's own scripts (``python basicsr/train.py -opt X.yml``) would never
see our registered archs, losses, datasets, models and metrics, nor the platform fixes in
``basicsr_blurfield.compat``. The installed ``basicsr_blurfield_hook.pth`` calls :func:`install` at interpreter
start-up. That only puts a finder on ``sys.meta_path``: nothing heavy (no torch) is imported until a program imports
``basicsr``. Then, just before BasicSR's package body runs, the import-level fixes are applied
(``compat.prepare_imports``: torchvision on a CPU torch, the ``functional_tensor`` shim), and right after it the
plugin itself is imported, which applies the remaining fixes and registers everything.

Set ``BASICSR_BLURFIELD_NO_HOOK=1`` to disable the hook (BasicSR then behaves exactly as upstream).
"""
import importlib.abc
import importlib.util
import os
import sys

_TARGET = 'basicsr'


class _LoaderWithPlugin(importlib.abc.Loader):
    """Wraps BasicSR's package loader: prepare imports, run BasicSR's ``__init__``, then import the plugin."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        load_compat().prepare_imports()
        self._loader.exec_module(module)
        importlib.import_module('basicsr_blurfield')


def load_compat():
    """Loads ``basicsr_blurfield.compat`` by file path, without running the package ``__init__`` (which imports
    ``basicsr`` itself). The package later finds it in ``sys.modules``."""
    name = 'basicsr_blurfield.compat'
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec('basicsr_blurfield')
    path = os.path.join(package.submodule_search_locations[0], 'compat.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _BasicsrFinder(importlib.abc.MetaPathFinder):
    """Finds ``basicsr`` through the other finders and wraps its loader (once)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _LoaderWithPlugin(spec.loader)
                return spec
        return None


def install() -> None:
    """Puts the finder on ``sys.meta_path`` (idempotent; a no-op with ``BASICSR_BLURFIELD_NO_HOOK=1``)."""
    if os.environ.get('BASICSR_BLURFIELD_NO_HOOK') == '1':
        return
    if any(isinstance(finder, _BasicsrFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _BasicsrFinder())
