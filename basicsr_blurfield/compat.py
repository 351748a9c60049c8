"""Every fix that BasicSR 1.4.2 needs to run with torch 2.13 / torchvision 0.28 on a CPU-only machine, in one place.

Each fix is a named function whose docstring says which upstream behaviour it works around; each has a test in
``tests/platform/test_compat.py`` that fails without it. All fixes are idempotent (applying twice changes nothing)
and keep BasicSR's behaviour unchanged whenever CUDA is present and used.

Two phases:

* :func:`prepare_imports` must run *before* ``basicsr`` is imported (BasicSR imports torchvision and the removed
  ``torchvision.transforms.functional_tensor`` at import time). This module therefore imports no ``basicsr`` at
  the top; the start-up hook (``basicsr_blurfield_hook``) loads it by file path and calls it just before BasicSR's
  package body runs.
* :func:`patch_basicsr` runs once ``basicsr`` is importable: resume, distributed training and the CUDA prefetcher
  on CPU.

:func:`apply_all` runs both; importing ``basicsr_blurfield`` calls it.
"""
import atexit
import os
import sys
import types

import torch

_PATCHED_MARK = '_basicsr_blurfield_patched'


def define_missing_torchvision_ops() -> None:
    """Makes ``import torchvision`` work on a CPU torch.

    Upstream: the only torchvision release that accepts torch 2.13 (0.28.0) ships a CUDA build whose C extension
    cannot load next to the CPU torch. Its ``_meta_registrations`` then calls ``register_fake('torchvision::nms')``
    for an operator that was never defined, and ``import torchvision`` dies with
    ``RuntimeError: operator torchvision::nms does not exist``. We define the schemas of ``nms`` and ``qnms`` (the
    two ops registered unconditionally) so the import succeeds. The ops stay unimplemented: torchvision reports
    ``extension._has_ops() == False`` and our code uses pure-torch paths (e.g. deformable convolution). When the
    extension does load (a matching CUDA torch), the ops already exist and nothing is defined.
    """
    if 'torchvision' in sys.modules:
        return
    missing = []
    for name in ('nms', 'qnms'):
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            missing.append(name)
    if not missing:
        return
    try:
        import importlib.util
        spec = importlib.util.find_spec('torchvision')
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return
    if _torchvision_extension_loads(spec):
        return
    library = torch.library.Library('torchvision', 'FRAGMENT')  # noqa: TOR001 (kept alive below)
    for name in missing:
        library.define(f'{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    define_missing_torchvision_ops.library = library


def _torchvision_extension_loads(spec) -> bool:
    """Whether torchvision's compiled ``_C`` library loads into this torch (then it defines its ops itself)."""
    import glob
    folder = spec.submodule_search_locations[0]
    candidates = glob.glob(os.path.join(folder, '_C*.so')) + glob.glob(os.path.join(folder, '_C*.pyd'))
    if not candidates:
        return False
    try:
        torch.ops.load_library(candidates[0])
    except (OSError, RuntimeError):
        return False
    return True


def shim_functional_tensor() -> None:
    """Provides ``torchvision.transforms.functional_tensor``, which torchvision 0.17 removed.

    Upstream: ``basicsr/data/degradations.py`` (imported by ``import basicsr``) does
    ``from torchvision.transforms.functional_tensor import rgb_to_grayscale``. The module now lives at
    ``torchvision.transforms._functional_tensor``; we register an alias module that forwards to it lazily.
    """
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    shim = types.ModuleType(name, 'Alias of torchvision.transforms._functional_tensor (added by basicsr_blurfield).')

    def __getattr__(attr):
        import importlib
        return getattr(importlib.import_module('torchvision.transforms._functional_tensor'), attr)

    shim.__getattr__ = __getattr__
    sys.modules[name] = shim


def prepare_imports() -> None:
    """Import-time fixes, to run before ``import basicsr``: torchvision on CPU torch and the functional_tensor shim."""
    define_missing_torchvision_ops()
    shim_functional_tensor()


def load_resume_state(opt: dict):
    """BasicSR's ``load_resume_state`` with the two CPU/path defects fixed (see :func:`patch_resume`).

    Args:
        opt (dict): parsed options; uses ``auto_resume``, ``name``, ``root_path``, ``num_gpu`` and
            ``path.resume_state``.

    Returns:
        dict | None: the training state, on the model's device, or None when there is nothing to resume.
    """
    from basicsr.utils import check_resume, scandir

    resume_state_path = None
    if opt['auto_resume']:
        state_path = os.path.join(opt.get('root_path', '.'), 'experiments', opt['name'], 'training_states')
        if os.path.isdir(state_path):
            states = [v for v in scandir(state_path, suffix='state', recursive=False, full_path=False)]
            iters = [int(float(v.split('.state')[0])) for v in states if v.split('.state')[0].isdigit()]
            if iters:
                resume_state_path = os.path.join(state_path, f'{max(iters)}.state')
                opt['path']['resume_state'] = resume_state_path
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']

    if resume_state_path is None:
        return None
    if not os.path.isfile(resume_state_path):
        raise FileNotFoundError(f'resume_state: no training state at {resume_state_path!r}; fix path.resume_state '
                                'or remove it to start from scratch')
    if torch.cuda.is_available() and opt.get('num_gpu', 0) != 0:
        device_id = torch.cuda.current_device()
        location = lambda storage, loc: storage.cuda(device_id)  # noqa: E731 (upstream's mapping)
    else:
        location = 'cpu'
    # Training states hold optimizer/scheduler state (Counters, lists), which torch>=2.6's weights_only loader
    # refuses; they are files this training run wrote itself.
    resume_state = torch.load(resume_state_path, map_location=location, weights_only=False)
    check_resume(opt, resume_state['iter'])
    return resume_state


def patch_resume() -> None:
    """Makes resuming work on CPU and makes ``--auto_resume`` look under the run's root path.

    Upstream (``basicsr/train.py``): ``load_resume_state`` calls ``torch.cuda.current_device()`` and maps the state
    to CUDA, which raises on a CPU-only torch; and ``--auto_resume`` searches ``experiments/<name>`` relative to the
    current directory, while checkpoints are written under ``opt['root_path']``. The fixed function is
    :func:`load_resume_state`. ``basicsr.train`` gets it directly. When ``basicsr/train.py`` runs as a script
    (``__main__``) its own copy is defined after every import, so ``parse_options`` (which that script calls first)
    is wrapped to swap the function in the calling module right before ``train_pipeline`` uses it.
    With CUDA the state is still mapped to the current CUDA device, as upstream.

    The same wrapper checks the parsed options before anything is built
    (:func:`basicsr_blurfield.option_check.validate_options`): unknown keys of the classes that declare theirs,
    constructor arguments of archs and losses, required keys and ``num_gpu`` without CUDA. Upstream reads options with
    ``.get(key, default)``, so a typo silently falls back to a default, and a missing key fails after data and
    networks are built.
    """
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options as options

    basicsr.train.load_resume_state = load_resume_state
    if getattr(options.parse_options, _PATCHED_MARK, False):
        return
    upstream_parse_options = options.parse_options

    def parse_options(root_path, is_train=True):
        caller = sys._getframe(1).f_globals
        if callable(caller.get('train_pipeline')) and callable(caller.get('load_resume_state')):
            caller['load_resume_state'] = load_resume_state
        opt, args = upstream_parse_options(root_path, is_train=is_train)
        from basicsr_blurfield.option_check import validate_options
        validate_options(opt)
        return opt, args

    setattr(parse_options, _PATCHED_MARK, True)
    parse_options.__doc__ = upstream_parse_options.__doc__
    options.parse_options = parse_options
    for module in (basicsr.train, basicsr.test):
        module.parse_options = parse_options


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """BasicSR's ``init_dist`` that falls back to gloo without ``cuda.set_device`` when CUDA is absent.

    Args:
        launcher (str): 'pytorch' or 'slurm'.
        backend (str): requested backend; 'nccl' becomes 'gloo' on a machine without CUDA.
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp

    import basicsr.utils.dist_util as dist_util

    if torch.cuda.is_available():
        return dist_util._upstream_init_dist(launcher, backend, **kwargs)
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(f'Invalid launcher type: {launcher}. Supported ones are: none, pytorch, slurm')
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    backend = 'gloo' if backend == 'nccl' else backend
    if launcher == 'slurm':
        import subprocess
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f"scontrol show hostname {os.environ['SLURM_NODELIST']} | head -n1")
        port = kwargs.pop('port', None)
        os.environ['MASTER_PORT'] = str(port) if port is not None else os.environ.get('MASTER_PORT', '29500')
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    dist.init_process_group(backend=backend, **kwargs)
    atexit.register(_shut_down_process_group)


def _shut_down_process_group() -> None:
    """At interpreter exit: wait for every rank, then destroy the gloo group.

    Upstream ``train_pipeline`` never destroys its process group. A rank that finishes first (rank 0 still saves and
    validates) then exits with gloo's threads alive and dies with ``terminate called without an active exception``
    (SIGABRT), which fails the whole ``torchrun`` job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def model_to_device(self, net):
    """``BaseModel.model_to_device`` that wraps DDP without CUDA device ids when the model lives on the CPU."""
    from torch.nn.parallel import DistributedDataParallel

    if self.opt['dist'] and self.device.type == 'cpu':
        net = net.to(self.device)
        return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))
    return type(self)._upstream_model_to_device(self, net)


def patch_distributed() -> None:
    """Makes ``--launcher pytorch|slurm`` (e.g. ``torchrun``) train on CPU.

    Upstream: ``init_dist`` hard-codes the NCCL backend and ``torch.cuda.set_device`` (both fail without CUDA), and
    ``BaseModel.model_to_device`` passes ``device_ids=[torch.cuda.current_device()]`` to DDP. Without CUDA we use
    gloo, skip ``set_device``, build DDP without device ids (the CPU form) and shut the group down cleanly at exit.
    With CUDA the upstream functions run.
    """
    import basicsr.models.base_model as base_model
    import basicsr.utils.dist_util as dist_util
    import basicsr.utils.options as options

    if not hasattr(dist_util, '_upstream_init_dist'):
        dist_util._upstream_init_dist = dist_util.init_dist
    dist_util.init_dist = init_dist
    options.init_dist = init_dist
    if not hasattr(base_model.BaseModel, '_upstream_model_to_device'):
        base_model.BaseModel._upstream_model_to_device = base_model.BaseModel.model_to_device
    base_model.BaseModel.model_to_device = model_to_device


def patch_cuda_prefetcher() -> None:
    """Gives a clear error for ``prefetch_mode: cuda`` on a machine without CUDA.

    Upstream: ``CUDAPrefetcher`` calls ``torch.cuda.Stream()``, which fails deep inside torch with an unrelated
    message. We raise a ``ValueError`` that names the option and the fix. With CUDA nothing changes.
    """
    from basicsr.data.prefetch_dataloader import CUDAPrefetcher

    if getattr(CUDAPrefetcher.__init__, _PATCHED_MARK, False):
        return
    upstream_init = CUDAPrefetcher.__init__

    def __init__(self, loader, opt):
        if not torch.cuda.is_available():
            raise ValueError("datasets.train.prefetch_mode is 'cuda' but this torch has no CUDA device; "
                             "use prefetch_mode: cpu (or ~) on this machine")
        upstream_init(self, loader, opt)

    setattr(__init__, _PATCHED_MARK, True)
    CUDAPrefetcher.__init__ = __init__


def patch_registry_errors() -> None:
    """Makes an unknown ``type`` in the options name the valid choices.

    Upstream: ``Registry.get`` prints ``Name X is not found, use name: X_basicsr!`` and raises
    ``KeyError("No object named 'X' found in 'arch' registry!")`` without saying what exists. We raise the same
    ``KeyError`` type with the closest registered names and the full sorted list. Found names behave as upstream.
    """
    from basicsr.utils.registry import Registry

    if getattr(Registry.get, _PATCHED_MARK, False):
        return
    upstream_get = Registry.get

    def get(self, name, suffix='basicsr'):
        if name in self._obj_map or f'{name}_{suffix}' in self._obj_map:
            return upstream_get(self, name, suffix)
        import difflib
        names = sorted(self._obj_map)
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f' Did you mean {close}?' if close else ''
        raise KeyError(f"No object named '{name}' found in '{self._name}' registry (the 'type' option).{hint} "
                       f'Registered names: {names}')

    setattr(get, _PATCHED_MARK, True)
    Registry.get = get


def build_from_options(registry, kind: str, opt: dict):
    """BasicSR's ``build_network`` / ``build_loss``: ``registry.get(opt['type'])(**rest)``, logged as upstream, with a
    ``TypeError`` of the constructor call turned into one that names the wrong or missing option.

    Args:
        registry (Registry): ``ARCH_REGISTRY`` or ``LOSS_REGISTRY``.
        kind (str): 'Network' or 'Loss', for the log line and the message.
        opt (dict): the option section; not modified.
    """
    import copy

    from basicsr.utils import get_root_logger
    from basicsr_blurfield.option_check import signature_problem

    opt = copy.deepcopy(opt)
    name = opt.pop('type')
    cls = registry.get(name)
    try:
        built = cls(**opt)
    except TypeError as error:
        problem = signature_problem(cls, opt)
        if problem is None:
            raise
        raise TypeError(f'{kind} {name}: {problem}') from error
    get_root_logger().info(f'{kind} [{built.__class__.__name__}] is created.')
    return built


def build_network(opt: dict):
    """``basicsr.archs.build_network`` with option-naming errors (see :func:`build_from_options`)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    return build_from_options(ARCH_REGISTRY, 'Network', opt)


def build_loss(opt: dict):
    """``basicsr.losses.build_loss`` with option-naming errors (see :func:`build_from_options`)."""
    from basicsr.utils.registry import LOSS_REGISTRY
    return build_from_options(LOSS_REGISTRY, 'Loss', opt)


def patch_builders() -> None:
    """Makes a wrong arch or loss option name the key and its closest valid name.

    Upstream: ``build_network`` / ``build_loss`` call ``cls(**opt)``; a typo (``widht: 8``) ends in
    ``__init__() got an unexpected keyword argument 'widht'`` without saying which section or what was meant. The
    builders are replaced in every loaded ``basicsr`` module that imported them by name; our modules import them
    after this runs. Successful builds behave as upstream.
    """
    import basicsr.archs
    import basicsr.losses

    upstream = {basicsr.archs.build_network: build_network, basicsr.losses.build_loss: build_loss}
    if getattr(basicsr.archs.build_network, _PATCHED_MARK, False):
        return
    for function in (build_network, build_loss):
        setattr(function, _PATCHED_MARK, True)
    for name, module in list(sys.modules.items()):
        if module is None or not (name == 'basicsr' or name.startswith('basicsr.')):
            continue
        for attr in ('build_network', 'build_loss'):
            value = getattr(module, attr, None)
            if value in upstream:
                setattr(module, attr, upstream[value])


def patch_basicsr() -> None:
    """Run-time fixes, once ``basicsr`` is importable: resume, distributed and prefetcher on CPU, registry errors,
    option checks and constructor errors."""
    patch_resume()
    patch_distributed()
    patch_cuda_prefetcher()
    patch_registry_errors()
    patch_builders()


def apply_all() -> None:
    """Applies every fix (idempotent). Called when ``basicsr_blurfield`` is imported."""
    prepare_imports()
    patch_basicsr()
