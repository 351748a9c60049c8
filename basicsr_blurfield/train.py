"""``python -m basicsr_blurfield.train -opt X.yml``: BasicSR's training pipeline with the plugin loaded.

Same flags and files as BasicSR's ``basicsr/train.py`` (``-opt``, ``--launcher none|pytorch|slurm``,
``--auto_resume``, ``--debug``, ``--local_rank``, ``--force_yml``; ``experiments/``, ``tb_logger/`` under the current
directory). Importing ``basicsr_blurfield`` first applies the compat fixes (CPU resume, CPU distributed, option
checks) and registers our archs, losses, datasets, models and metrics. The loop is BasicSR's, with what its 1.4.2
loop gets wrong fixed:

* it runs exactly ``train.total_iter`` iterations and saves the checkpoint of the last one (upstream counts epochs
  with a rounded-up iterations-per-epoch while the loader drops the last partial batch of each rank, so a
  distributed run could stop early and never save ``net_g_<total_iter>.pth``);
* the last iteration is validated once (upstream validates it again after the loop, logged as ``total_iter + 1``);
* ``val.validate_initial: true`` validates the starting weights before the first step, logged at the starting
  iteration (0, or the resumed iteration);
* the environment banner, the option dump and the network structures go to the log file only; the console gets one
  line saying where they are;
* a wrong option file ends in one ``error: ...`` line (exit status 2) before anything is built.
"""
import datetime
import logging
import os
import sys
import time


def create_train_val_dataloaders(opt: dict, logger):
    """BasicSR's train / val loaders, with the iterations per epoch that its loader really yields.

    Returns:
        tuple: (train_loader, train_sampler, val_loaders, iterations per epoch).

    Raises:
        OptionError: when one process gets fewer images per epoch than ``batch_size_per_gpu`` (the loader drops
            partial batches, so an epoch would be empty and training would never advance).
    """
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr_blurfield.option_check import OptionError

    train_loader, train_sampler, val_loaders, iters_per_epoch = None, None, [], 0
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = build_dataset(dataset_opt)
            train_sampler = EnlargedSampler(train_set, opt['world_size'], opt['rank'], ratio)
            train_loader = build_dataloader(train_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                            sampler=train_sampler, seed=opt['manual_seed'])
            iters_per_epoch = len(train_loader)
            if iters_per_epoch == 0:
                raise OptionError(f'datasets.train: {len(train_set)} images x dataset_enlarge_ratio {ratio} over '
                                  f'{opt["world_size"]} process(es) give {len(train_sampler)} per process, fewer '
                                  f'than batch_size_per_gpu {dataset_opt["batch_size_per_gpu"]}; lower the batch '
                                  'size or raise dataset_enlarge_ratio')
            total_iters = int(opt['train']['total_iter'])
            logger.info('Training statistics:'
                        f'\n\tNumber of train images: {len(train_set)}'
                        f'\n\tDataset enlarge ratio: {ratio}'
                        f'\n\tBatch size per gpu: {dataset_opt["batch_size_per_gpu"]}'
                        f'\n\tWorld size (gpu number): {opt["world_size"]}'
                        f'\n\tRequire iter number per epoch: {iters_per_epoch}'
                        f'\n\tTotal epochs: {-(-total_iters // iters_per_epoch)}; iters: {total_iters}.')
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                                sampler=None, seed=opt['manual_seed']))
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
        else:
            raise OptionError(f"datasets.{phase}: unknown phase; expected 'train' or 'val' (or 'val_<n>')")
    return train_loader, train_sampler, val_loaders, iters_per_epoch


def _prefetcher(opt: dict, train_loader, logger):
    from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher

    mode = opt['datasets']['train'].get('prefetch_mode')
    if mode is None or mode == 'cpu':
        return CPUPrefetcher(train_loader)
    if mode == 'cuda':
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('datasets.train.prefetch_mode cuda needs pin_memory: true')
        logger.info(f'Use {mode} prefetch dataloader')
        return CUDAPrefetcher(train_loader, opt)
    raise ValueError(f"datasets.train.prefetch_mode: expected one of None, 'cuda', 'cpu', got {mode!r}")


def _validate(model, opt: dict, val_loaders: list, current_iter: int, tb_logger) -> None:
    for val_loader in val_loaders:
        model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])


def train_pipeline(root_path: str) -> None:
    """Parses the command line and trains (see the module docstring for what differs from BasicSR's loop)."""
    import torch

    import basicsr_blurfield  # noqa: F401  (registers everything, applies compat)
    from basicsr.models import build_model
    from basicsr.train import init_tb_loggers
    from basicsr.utils import (AvgTimer, MessageLogger, get_env_info, get_root_logger, get_time_str, make_exp_dirs,
                               mkdir_and_rename)
    from basicsr.utils.options import copy_opt_file, dict2str, parse_options
    from basicsr_blurfield.compat import load_resume_state
    from basicsr_blurfield.models.base import log_to_file

    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True

    resume_state = load_resume_state(opt)
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(os.path.join(opt['root_path'], 'tb_logger', opt['name']))
    copy_opt_file(args.opt, opt['path']['experiments_root'])

    log_file = os.path.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(f'Environment, options and network structures: see {log_file}')
    log_to_file(get_env_info())
    log_to_file(dict2str(opt))
    tb_logger = init_tb_loggers(opt)

    train_loader, train_sampler, val_loaders, iters_per_epoch = create_train_val_dataloaders(opt, logger)
    total_iters = int(opt['train']['total_iter'])
    model = build_model(opt)
    if resume_state:
        model.resume_training(resume_state)
        logger.info(f"Resuming training from epoch: {resume_state['epoch']}, iter: {resume_state['iter']}.")
        epoch, current_iter = resume_state['epoch'], resume_state['iter']
    else:
        epoch, current_iter = 0, 0
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetcher = _prefetcher(opt, train_loader, logger)
    val_opt = opt.get('val')
    val_freq = val_opt['val_freq'] if val_opt is not None else None

    logger.info(f'Start training from epoch: {epoch}, iter: {current_iter}')
    if val_opt is not None and val_opt.get('validate_initial', False) and current_iter < total_iters:
        _validate(model, opt, val_loaders, current_iter, tb_logger)
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    start_iter = current_iter
    validated_at = saved_at = None
    while current_iter < total_iters:
        train_sampler.set_epoch(epoch)
        prefetcher.reset()
        train_data = prefetcher.next()
        while train_data is not None:
            data_timer.record()
            current_iter += 1
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == start_iter + 1:
                msg_logger.reset_start_time()
            if current_iter % opt['logger']['print_freq'] == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                            'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                logger.info('Saving models and training states.')
                model.save(epoch, current_iter)
                saved_at = current_iter
            if val_freq is not None and current_iter % val_freq == 0:
                _validate(model, opt, val_loaders, current_iter, tb_logger)
                validated_at = current_iter
            if current_iter >= total_iters:
                break
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()
        if current_iter < total_iters:
            epoch += 1

    consumed = str(datetime.timedelta(seconds=int(time.time() - start_time)))
    logger.info(f'End of training at iter {current_iter}. Time consumed: {consumed}')
    if saved_at != current_iter and current_iter > start_iter:
        logger.info(f'Saving models and training states of the last iteration ({current_iter}).')
        model.save(epoch, current_iter)
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)
    if val_opt is not None and validated_at != current_iter:
        _validate(model, opt, val_loaders, current_iter, tb_logger)
    if tb_logger:
        tb_logger.close()


def main() -> None:
    from basicsr_blurfield.option_check import OptionError

    try:
        train_pipeline(os.getcwd())
    except OptionError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
