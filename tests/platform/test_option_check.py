"""Option checks before anything is built: unknown keys get the closest valid name, required keys are named, archs and
losses are checked by signature, num_gpu without CUDA is refused, and every shipped option file passes."""
import copy
import glob
import os

import pytest
import torch
import yaml

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.utils.options import ordered_yaml
from basicsr_blurfield.option_check import OptionError, check_option_keys, declared_option_keys, validate_options
from tests.platform.test_train_cli import tiny_option

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parsed(option: dict, is_train: bool = True) -> dict:
    """What BasicSR's parse_options adds before validation runs."""
    option = copy.deepcopy(option)
    option.update(is_train=is_train, dist=False, rank=0, world_size=1, auto_resume=False)
    for phase, dataset in option['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        dataset['scale'] = option['scale']
    return option


@pytest.fixture
def option(tmp_path):
    return parsed(tiny_option('check', str(tmp_path), str(tmp_path)))


def test_the_tiny_training_option_passes(option):
    validate_options(option)


@pytest.mark.parametrize('section, wrong, right', [
    (('datasets', 'train'), 'gt_szie', 'gt_size'),
    (('train',), 'use_grad_clipping', 'use_grad_clip'),
    (('val',), 'save_image', 'save_img'),
    (('path',), 'pretrain_netwrk_g', 'pretrain_network_g'),
    ((), 'pad_to_multple', 'pad_to_multiple'),
    (('logger',), 'print_frequency', 'print_freq'),
])
def test_an_unknown_key_is_refused_with_the_closest_valid_name(option, section, wrong, right):
    target = option
    for key in section:
        target = target[key]
    target[wrong] = 1
    with pytest.raises(OptionError, match=rf"unknown option '{wrong}' \(did you mean '{right}'\?\)"):
        validate_options(option)


def test_a_synthetic_dataset_typo_of_field_types_is_refused():
    dataset = {'name': 'syn', 'type': 'SyntheticBlurDataset', 'phase': 'train', 'field_type': {'linear': 1}}
    from basicsr.utils.registry import DATASET_REGISTRY
    with pytest.raises(OptionError, match="datasets.train: unknown option 'field_type' .did you mean 'field_types'"):
        check_option_keys('datasets.train', dataset, declared_option_keys(DATASET_REGISTRY.get(dataset['type'])))


@pytest.mark.parametrize('section, wrong, right', [
    (('train',), 'total_iters', 'total_iter'),
    (('val',), 'val_frequency', 'val_freq'),
    (('train', 'optim_g'), 'lr_rate', 'lr'),
])
def test_a_missing_required_key_is_named_with_the_typo_that_replaced_it(option, section, wrong, right):
    target = option
    for key in section:
        target = target[key]
    target[wrong] = target.pop(right)
    with pytest.raises(OptionError, match=rf"'{wrong}'.*did you mean '{right}'\?"):
        validate_options(option)


def test_undeclared_classes_are_not_checked_but_still_get_the_required_keys(option):
    from basicsr.utils.registry import MODEL_REGISTRY
    assert declared_option_keys(MODEL_REGISTRY.get('SRModel'), 'train') is None
    option['model_type'] = 'SRModel'
    option['train']['any_key_of_its_own'] = 1
    validate_options(option)
    option['train']['total_iters'] = option['train'].pop('total_iter')
    with pytest.raises(OptionError, match=r"train.total_iter is missing \(found 'total_iters': did you mean"):
        validate_options(option)


def test_basicsrs_own_dataset_keys_stay_accepted(option):
    option['datasets']['train'].update(pin_memory=True, persistent_workers=True, num_prefetch_queue=2,
                                       filename_tmpl='{}', meta_info_file=None)
    validate_options(option)


def test_arch_and_loss_options_are_checked_by_signature(option):
    bad_arch = copy.deepcopy(option)
    bad_arch['network_g']['widht'] = bad_arch['network_g'].pop('width')
    with pytest.raises(OptionError, match=r"network_g \(NAFNet\): unknown option 'widht' \(did you mean 'width'\?\)"):
        validate_options(bad_arch)
    option['train']['pixel_opt']['loss_wieght'] = 1
    with pytest.raises(OptionError, match=r"train.pixel_opt \(PSNRLoss\): unknown option 'loss_wieght'"):
        validate_options(option)


def test_building_an_arch_or_loss_directly_names_the_wrong_option():
    with pytest.raises(TypeError, match=r"Network NAFNet: unknown option 'widht' \(did you mean 'width'\?\)"):
        build_network({'type': 'NAFNet', 'widht': 8})
    with pytest.raises(TypeError, match=r"Loss PSNRLoss: unknown option 'reduce' \(did you mean 'reduction'\?\)"):
        build_loss({'type': 'PSNRLoss', 'reduce': 'mean'})
    assert type(build_network({'type': 'NAFNet', 'width': 8, 'enc_blk_nums': [1], 'dec_blk_nums': [1]})).__name__ \
        == 'NAFNet'


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_num_gpu_without_cuda_says_how_to_run_on_the_cpu(option):
    option['num_gpu'] = 8
    with pytest.raises(OptionError, match=r'num_gpu: 8 but this torch sees no CUDA device.*--force_yml num_gpu=0'):
        validate_options(option)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'options', '*.yml'))), ids=os.path.basename)
def test_every_option_file_passes_the_checks(path):
    with open(path) as f:
        option = yaml.load(f, Loader=ordered_yaml()[0])
    option['num_gpu'] = 0
    validate_options(parsed(option, is_train='train' in option))
