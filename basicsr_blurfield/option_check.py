"""Option validation before anything is built: unknown keys get the closest valid name, missing keys are named.

BasicSR reads options with ``opt.get(key, default)``, so a typo (``gt_szie: 48``) silently falls back to the default
and a missing key (``total_iters:`` for ``total_iter``) fails late with a bare ``KeyError``. :func:`validate_options`
runs right after BasicSR's ``parse_options`` (``compat`` wraps it, so our entry points and BasicSR's own
``basicsr/train.py`` / ``test.py`` both get it), before any dataset, network or model exists.

How a class opts in (classes without a declaration are not checked and work as before):

* a dataset declares ``option_keys = ('dataroot', 'layout', ...)``: the keys it reads beyond those BasicSR consumes
  for every dataset (:data:`BASICSR_DATASET_KEYS`);
* a model declares ``option_keys = {'': (...), 'train': (...), 'val': (...), 'path': (...)}``: top-level, ``train``,
  ``val`` and ``path`` keys beyond BasicSR's (:data:`BASICSR_MODEL_KEYS`). Declarations of base classes are
  inherited (merged along the MRO), but only a class that declares ``option_keys`` in its own body is checked;
* archs and losses need nothing: their constructor signature is the declaration (``cls(**opt)``), unless it takes
  ``**kwargs``.

Every check goes through :func:`check_option_keys`; errors are :class:`OptionError` (a ``ValueError``).
"""
import difflib
import inspect
from typing import Iterable, Optional

__all__ = ['OptionError', 'BASICSR_DATASET_KEYS', 'BASICSR_MODEL_KEYS', 'check_option_keys', 'declared_option_keys',
           'signature_problem', 'validate_options']

# Keys BasicSR's pipeline, sampler, dataloader and its paired datasets read from any dataset section.
BASICSR_DATASET_KEYS = frozenset({
    'name', 'type', 'phase', 'scale', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio',
    'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue', 'use_shuffle', 'io_backend',
    'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl', 'gt_size', 'use_hflip', 'use_rot', 'mean', 'std',
    'color'
})

# Keys BasicSR's parse_options, pipelines and BaseModel read (or add) in each model section.
BASICSR_MODEL_KEYS = {
    '': frozenset({
        'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
        'logger', 'dist_params', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path',
        'find_unused_parameters'
    }),
    'train': frozenset({'total_iter', 'warmup_iter', 'optim_g', 'scheduler'}),
    'val': frozenset({'val_freq', 'save_img', 'metrics', 'suffix', 'pbar', 'validate_initial'}),
    'path': frozenset({
        'pretrain_network_g', 'strict_load_g', 'param_key_g', 'resume_state', 'ignore_resume_networks',
        'experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root'
    }),
}
LOGGER_KEYS = frozenset({'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'})


class OptionError(ValueError):
    """A wrong option file: the message names the key (as ``section.key``) and what to write instead."""


def _closest(key: str, choices: Iterable[str]) -> Optional[str]:
    """The most similar choice (difflib ratio >= 0.6), else one extending or shortening ``key`` (``lr_rate``/``lr``)."""
    choices = sorted(str(choice) for choice in choices)
    close = difflib.get_close_matches(str(key), choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [choice for choice in choices if min(len(choice), len(key)) >= 2 and (
        choice.startswith(f'{key}_') or str(key).startswith(f'{choice}_'))]
    return prefixed[0] if prefixed else None


def check_option_keys(section: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """Raises :class:`OptionError` for the first key of ``given`` that is not in ``accepted``.

    Args:
        section (str): where the keys sit, for the message (e.g. ``'datasets.train'``).
        given (Iterable[str]): the keys written in the option file.
        accepted (Iterable[str]): the valid keys.

    Raises:
        OptionError: ``datasets.train: unknown option 'gt_szie' (did you mean 'gt_size'?). Valid keys: [...]``.
    """
    accepted = set(accepted)
    for key in given:
        if key not in accepted:
            close = _closest(key, accepted)
            hint = f" (did you mean '{close}'?)" if close else ''
            raise OptionError(f"{section}: unknown option '{key}'{hint}. Valid keys: {sorted(accepted)}")


def _require(section: str, options: dict, key: str, how: str = '') -> None:
    if not isinstance(options, dict) or key not in options:
        close = _closest(key, options) if isinstance(options, dict) else None
        hint = f" (found '{close}': did you mean '{key}'?)" if close else ''
        raise OptionError(f"{section}.{key} is missing{hint}{': ' + how if how else ''}")


def declared_option_keys(cls, section: Optional[str] = None) -> Optional[frozenset]:
    """The option keys ``cls`` accepts, or None when ``cls`` itself declares none (then it is not checked).

    Args:
        cls (type): a dataset class (``option_keys`` is a tuple; ``section`` is ignored) or a model class
            (``option_keys`` is a dict of section name -> tuple; ``section`` is '', 'train', 'val' or 'path').

    Returns:
        frozenset | None: BasicSR's keys of that section plus the keys declared by ``cls`` and its bases.
    """
    if 'option_keys' not in vars(cls):
        return None
    is_model = isinstance(vars(cls)['option_keys'], dict)
    keys = set(BASICSR_MODEL_KEYS[section] if is_model else BASICSR_DATASET_KEYS)
    for klass in inspect.getmro(cls):
        declared = vars(klass).get('option_keys')
        if declared is None:
            continue
        if isinstance(declared, dict) != is_model:
            raise TypeError(f'{klass.__name__}.option_keys: expected a {"dict" if is_model else "tuple"} like its '
                            f'subclass {cls.__name__}, got {type(declared).__name__}')
        unknown_sections = set(declared) - set(BASICSR_MODEL_KEYS) if is_model else set()
        if unknown_sections:
            raise TypeError(f'{klass.__name__}.option_keys: unknown sections {sorted(unknown_sections)}; '
                            f'expected among {sorted(BASICSR_MODEL_KEYS)}')
        keys.update(declared.get(section, ()) if is_model else declared)
    return frozenset(keys)


def signature_problem(cls, options: dict) -> Optional[str]:
    """What is wrong with calling ``cls(**options)``, judged from its signature, or None when it looks right.

    Args:
        cls (type): an arch or loss class.
        options (dict): its option section without ``type``.

    Returns:
        str | None: e.g. ``"unknown option 'widht' (did you mean 'width'?)"`` or ``"option 'lr' is missing"``.
    """
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return None
    named = {name: p for name, p in parameters.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not takes_any:
        for key in options:
            if key not in named:
                close = _closest(key, named)
                hint = f" (did you mean '{close}'?)" if close else ''
                return f"unknown option '{key}'{hint}. Valid keys: {sorted(named)}"
    for name, parameter in named.items():
        if parameter.default is inspect.Parameter.empty and name not in options:
            close = _closest(name, options)
            hint = f" (found '{close}': did you mean '{name}'?)" if close else ''
            return f"option '{name}' is missing{hint}"
    return None


def _registry_class(registry, section: str, options: dict):
    if not isinstance(options, dict):
        raise OptionError(f'{section}: expected a mapping with a type key, got {options!r}')
    _require(section, options, 'type')
    try:
        return registry.get(options['type'])
    except KeyError as error:
        raise OptionError(f'{section}.type: {error.args[0]}') from None


def _check_constructor(registry, section: str, options: dict) -> None:
    cls = _registry_class(registry, section, options)
    problem = signature_problem(cls, {k: v for k, v in options.items() if k != 'type'})
    if problem:
        raise OptionError(f'{section} ({options["type"]}): {problem}')


def _check_model(opt: dict, model_cls) -> None:
    for section in ('', 'train', 'val', 'path'):
        accepted = declared_option_keys(model_cls, section)
        if accepted is None:
            return
        values = opt if section == '' else opt.get(section)
        if isinstance(values, dict):
            check_option_keys(section or opt.get('model_type', 'model'), values, accepted)


def _check_training(opt: dict) -> None:
    _require('', opt, 'train', 'add a train: section (optim_g, scheduler, total_iter, ...)')
    train = opt['train']
    _require('train', train, 'total_iter', 'the number of training iterations')
    _require('train', train, 'scheduler', 'e.g. {type: TrueCosineAnnealingLR, T_max: <total_iter>, eta_min: 1e-7}')
    _require('train.scheduler', train['scheduler'], 'type')
    for key, value in train.items():
        if key.startswith('optim_') and isinstance(value, dict):
            _require(f'train.{key}', value, 'type', 'e.g. Adam or AdamW')
            _require(f'train.{key}', value, 'lr', 'the learning rate, e.g. !!float 1e-3')
    datasets = opt.get('datasets') or {}
    _require('datasets', datasets, 'train', 'add a datasets.train section')
    for key in ('batch_size_per_gpu', 'num_worker_per_gpu'):
        _require('datasets.train', datasets['train'], key)
    logger = opt.get('logger')
    _require('', opt, 'logger', 'add logger: {print_freq: 100, save_checkpoint_freq: 5000}')
    for key in ('print_freq', 'save_checkpoint_freq'):
        _require('logger', logger, key)
    if opt.get('val') is not None:
        _require('val', opt['val'], 'val_freq', 'how often (in iterations) to validate')


def validate_options(opt: dict) -> None:
    """Checks a parsed option dict before anything is built (see the module docstring).

    Args:
        opt (dict): the options as ``basicsr.utils.options.parse_options`` returns them.

    Raises:
        OptionError: the first problem found, naming its key.
    """
    import torch

    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

    num_gpu = opt.get('num_gpu', 0)
    if isinstance(num_gpu, int) and num_gpu > 0 and not torch.cuda.is_available():
        raise OptionError(f'num_gpu: {num_gpu} but this torch sees no CUDA device; to run on the CPU set num_gpu: 0 '
                          'in the option file or pass --force_yml num_gpu=0')
    _require('', opt, 'model_type', 'e.g. DeblurModel')
    model_cls = _registry_class(MODEL_REGISTRY, 'model_type', {'type': opt['model_type']})
    _check_model(opt, model_cls)
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        section = f'datasets.{phase}'
        dataset_cls = _registry_class(DATASET_REGISTRY, section, dataset_opt)
        accepted = declared_option_keys(dataset_cls)
        if accepted is not None:
            check_option_keys(section, dataset_opt, accepted)
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict):
            _check_constructor(ARCH_REGISTRY, key, value)
    if isinstance(opt.get('logger'), dict):
        check_option_keys('logger', opt['logger'], LOGGER_KEYS)
    if opt.get('is_train'):
        _check_training(opt)
        for key, value in opt['train'].items():
            if key.endswith('_opt') and isinstance(value, dict) and 'type' in value:
                _check_constructor(LOSS_REGISTRY, f'train.{key}', value)
