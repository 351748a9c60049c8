"""BlurSwapDataset from YAML: swapped blur is F(x_i, G(x_j, y_j)) per item (never mixed within a batch), precomputed
codes equal codes on the fly and are cached, and a DeblurModel trains on it through BasicSR's dataloader."""
import pytest
import torch
import yaml

from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr_blurfield.archs.blur_kernel_space_arch import BlurKernelExtractor, BlurOperatorFamily
from tests.conftest import make_paired_folders

TINY_G = dict(num_feat=8, num_front_block=1, enc_feat=8, num_down=3, code_channels=8, num_block=1)
TINY_F = dict(num_feat=8, num_front_block=1, num_back_block=1, unet_feat=4, num_levels=3, code_channels=8)


@pytest.fixture
def swap_option(tmp_path):
    """YAML of a BlurSwapDataset over tiny paired folders (4 pairs of 32x40), with tiny G / F checkpoints."""
    gt_dir, lq_dir = make_paired_folders(str(tmp_path / 'data'), count=4, size=(32, 40))
    torch.manual_seed(0)
    torch.save({'params': BlurKernelExtractor(**TINY_G).state_dict()}, tmp_path / 'net_g.pth')
    operator = BlurOperatorFamily(**TINY_F)
    torch.nn.init.normal_(operator.recon.conv_last.weight, std=0.1)  # not the identity operator of a fresh F
    torch.save({'params': operator.state_dict()}, tmp_path / 'net_f.pth')
    text = f'''
name: swap
type: BlurSwapDataset
phase: val
swap_ratio: 1.0
seed: 0
codes: on_the_fly
dataset: {{type: PairedBlurDataset, layout: folders, dataroot_gt: {gt_dir}, dataroot_lq: {lq_dir},
           io_backend: {{type: disk}}}}
network_g: {yaml.safe_dump(dict(TINY_G, type='BlurKernelExtractor'), default_flow_style=True).strip()}
network_f: {yaml.safe_dump(dict(TINY_F, type='BlurOperatorFamily'), default_flow_style=True).strip()}
pretrain_network_g: {tmp_path / 'net_g.pth'}
pretrain_network_f: {tmp_path / 'net_f.pth'}
'''
    return yaml.safe_load(text)


def expected_swap(dataset, index: int, other: int) -> torch.Tensor:
    inner_i, inner_j = dataset.dataset[index], dataset.dataset[other]
    with torch.no_grad():
        code = dataset.extractor(inner_j['gt'][None], inner_j['lq'][None])
        return dataset.operator(inner_i['gt'][None], code)[0].clamp(0, 1)


def test_every_swapped_item_is_f_of_its_sharp_image_and_another_pairs_code(swap_option):
    dataset = build_dataset(swap_option)
    for index in range(len(dataset)):
        item = dataset[index]
        other = item['swap_index']
        assert 0 <= other < len(dataset) and other != index
        assert torch.equal(item['gt'], dataset.dataset[index]['gt'])
        assert torch.allclose(item['lq'], expected_swap(dataset, index, other), atol=1e-6)
        assert not torch.allclose(item['lq'], dataset.dataset[index]['lq'])


def test_a_batch_never_mixes_codes_between_its_samples(swap_option):
    dataset = build_dataset(swap_option)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert len(set(batch['swap_index'].tolist())) > 1
    for n in range(4):
        assert torch.allclose(batch['lq'][n], expected_swap(dataset, n, int(batch['swap_index'][n])), atol=1e-6)


def test_swap_ratio_zero_leaves_the_dataset_unchanged_and_the_draw_is_reproducible(swap_option):
    unchanged = build_dataset(dict(swap_option, swap_ratio=0.0))
    assert all(unchanged[i]['swap_index'] == -1 and torch.equal(unchanged[i]['lq'], unchanged.dataset[i]['lq'])
               for i in range(len(unchanged)))
    half = build_dataset(dict(swap_option, swap_ratio=0.5, seed=3))
    draws = [half[i]['swap_index'] for i in range(4)]
    assert draws == [half[i]['swap_index'] for i in range(4)]


def test_precomputed_codes_match_codes_on_the_fly_and_are_cached(swap_option, tmp_path):
    on_the_fly = build_dataset(swap_option)
    code_file = tmp_path / 'codes.pth'
    precomputed = build_dataset(dict(swap_option, codes='precomputed', code_file=str(code_file)))
    assert code_file.is_file()
    for index in range(len(on_the_fly)):
        a, b = on_the_fly[index], precomputed[index]
        assert a['swap_index'] == b['swap_index'] and torch.allclose(a['lq'], b['lq'], atol=1e-6)
    torch.save(torch.zeros(3, 8, 1, 1), code_file)
    with pytest.raises(ValueError, match='holds 3 codes'):
        build_dataset(dict(swap_option, codes='precomputed', code_file=str(code_file)))


def test_bad_options_are_rejected(swap_option):
    with pytest.raises(ValueError, match='swap_ratio'):
        build_dataset(dict(swap_option, swap_ratio=1.5))
    with pytest.raises(ValueError, match='on_the_fly'):
        build_dataset(dict(swap_option, codes='cached'))
    with pytest.raises(ValueError, match='pretrain_network_f is missing'):
        build_dataset(dict(swap_option, pretrain_network_f=None))
    with pytest.raises(ValueError, match='wrapped dataset'):
        build_dataset(dict(swap_option, dataset='PairedBlurDataset'))


def test_deblur_model_trains_on_blur_swapped_pairs_from_yaml(swap_option):
    train_opt = dict(
        swap_option,
        phase='train',
        swap_ratio=0.5,
        use_shuffle=True,
        num_worker_per_gpu=0,
        batch_size_per_gpu=2,
        dataset_enlarge_ratio=1,
        prefetch_mode=None)
    train_opt['dataset'] = dict(swap_option['dataset'], gt_size=32, use_hflip=True)
    dataset = build_dataset(train_opt)
    loader = build_dataloader(dataset, train_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model = build_model(
        yaml.safe_load('''
name: deblur-on-swapped
model_type: DeblurModel
num_gpu: 0
is_train: true
dist: false
network_g: {type: NAFNet, width: 8, enc_blk_nums: [1, 1], middle_blk_num: 1, dec_blk_nums: [1, 1]}
path: {models: '', training_states: ''}
train:
  optim_g: {type: AdamW, lr: !!float 1e-3, betas: [0.9, 0.9]}
  scheduler: {type: TrueCosineAnnealingLR, T_max: 4, eta_min: !!float 1e-7}
  pixel_opt: {type: PSNRLoss}
'''))
    swapped = []
    for step, batch in enumerate(loader, 1):
        assert batch['lq'].shape == batch['gt'].shape == (2, 3, 32, 32)
        swapped += batch['swap_index'].tolist()
        model.feed_data(batch)
        model.optimize_parameters(step)
        assert torch.isfinite(torch.tensor(model.log_dict['l_pix']))
    assert len(swapped) == 4
