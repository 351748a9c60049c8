"""SyntheticBlurDataset: item layout, exact re-blurring by the stored field, determinism, collation, options."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from basicsr.data import build_dataset
from basicsr_blurfield.data.synthetic_blur_dataset import SyntheticBlurDataset, field_from_batch
from basicsr_blurfield.fields import BasisField, OffsetField

K = 9
R = K // 2


def _opt(**extra):
    opt = {
        'name': 'synthetic',
        'type': 'SyntheticBlurDataset',
        'phase': 'val',
        'gt_size': 40,
        'kernel_size': K,
        'num_samples': 6,
        'min_region_area': 40,
        'seed': 3
    }
    opt.update(extra)
    return opt


def _inner(x):
    return x[..., R:-R, R:-R]


@pytest.mark.parametrize('field_type', ['region', 'smooth', 'linear'])
def test_noise_free_lq_is_the_stored_field_blurring_gt(field_type):
    dataset = SyntheticBlurDataset(_opt(field_types={field_type: 1.0}))
    item = dataset[1]
    assert item['field_type'] == field_type
    assert item['lq'].shape == item['gt'].shape == (3, 40, 40)
    assert item['field_basis'].shape == (9, K, K) and item['field_mixing'].shape == (9, 40, 40)
    field = field_from_batch(item)
    assert isinstance(field, BasisField)
    reblurred = field.blur(item['gt'][None])[0]
    # inside, the stored field reproduces lq exactly; the border of lq was blurred with real pixels of the margin
    assert torch.allclose(_inner(reblurred), _inner(item['lq']), atol=1e-5)
    assert not torch.allclose(reblurred, item['lq'], atol=1e-5)
    assert not torch.allclose(item['lq'], item['gt'], atol=1e-3)


def test_region_items_weight_regions_by_inverse_area_and_mix_several_kernels():
    dataset = SyntheticBlurDataset(_opt(field_types={'region': 1.0}, num_samples=8))
    found_regions = False
    for index in range(len(dataset)):
        item = dataset[index]
        weight = item['weight'][0]
        assert weight.shape == (40, 40) and weight.mean().item() == pytest.approx(1.0, rel=1e-5)
        values = torch.unique(weight)
        for value in values:
            # every region carries the same total weight
            assert (weight * (weight == value)).sum().item() == pytest.approx(1600 / len(values), rel=1e-4)
        active = (item['field_mixing'].flatten(1).amax(1) > 0).sum().item()
        found_regions |= len(values) > 1 and active > 1
    assert found_regions


def test_smooth_items_have_unit_weights_and_a_different_kernel_at_every_pixel():
    item = SyntheticBlurDataset(_opt(field_types={'smooth': 1.0}))[0]
    assert torch.equal(item['weight'], torch.ones(1, 40, 40))
    field = field_from_batch(item)
    kernels = field.kernels_at(torch.tensor([[0, 5, 5], [0, 20, 20], [0, 35, 30]]))
    assert not torch.allclose(kernels[0], kernels[1]) and not torch.allclose(kernels[1], kernels[2])


def test_offset_representation_stores_offsets_that_reproduce_lq():
    dataset = SyntheticBlurDataset(_opt(field_representation='offset', num_steps=7))
    item = dataset[2]
    assert item['field_type'] in ('smooth', 'linear') and 'field_basis' not in item
    offsets = item['field_offsets']
    assert offsets.shape == (7, 2, 40, 40)
    assert offsets.abs().max() <= R + 1e-4 and offsets[3].abs().max() < 1e-5
    field = field_from_batch(item)
    assert isinstance(field, OffsetField)
    assert torch.allclose(_inner(field.blur(item['gt'][None])[0]), _inner(item['lq']), atol=1e-5)


def test_offset_representation_rejects_region_fields():
    with pytest.raises(ValueError, match="region fields need field_representation 'basis'"):
        SyntheticBlurDataset(_opt(field_representation='offset', field_types={'region': 0.5, 'smooth': 0.5}))
    with pytest.raises(ValueError, match=r"expected keys among \('region', 'smooth', 'linear'\), got \['zoom'\]"):
        SyntheticBlurDataset(_opt(field_types={'zoom': 1.0}))
    with pytest.raises(ValueError, match=r"field_representation: expected one of \('basis', 'offset'\)"):
        SyntheticBlurDataset(_opt(field_representation='kernel'))


def test_val_items_are_deterministic_and_seeds_differ():
    a, b = SyntheticBlurDataset(_opt()), SyntheticBlurDataset(_opt())
    c = SyntheticBlurDataset(_opt(seed=4))
    for index in (0, 5):
        first, second, other = a[index], b[index], c[index]
        assert torch.equal(first['lq'], second['lq']) and torch.equal(first['field_mixing'], second['field_mixing'])
        assert torch.equal(a[index]['lq'], first['lq'])
        assert not torch.equal(first['lq'], other['lq'])
    assert not torch.equal(a[0]['gt'], a[1]['gt'])


def test_train_items_differ_between_draws_of_the_same_index():
    dataset = SyntheticBlurDataset(_opt(phase='train'))
    assert not torch.equal(dataset[0]['lq'], dataset[0]['lq'])


def test_mixed_types_collate_into_one_basis_field_batch():
    dataset = SyntheticBlurDataset(_opt(field_types={'region': 1, 'smooth': 1, 'linear': 1}, num_samples=6))
    batch = next(iter(DataLoader(dataset, batch_size=6, shuffle=False, num_workers=0)))
    assert batch['lq'].shape == (6, 3, 40, 40) and batch['weight'].shape == (6, 1, 40, 40)
    assert len(set(batch['field_type'])) >= 2
    field = field_from_batch(batch)
    assert isinstance(field, BasisField) and field.batch == 6
    assert torch.allclose(_inner(field.blur(batch['gt'])), _inner(batch['lq']), atol=1e-5)


def test_gamma_blurs_in_linear_light():
    item = SyntheticBlurDataset(_opt(gamma=2.2, field_types={'region': 1.0}))[0]
    field = field_from_batch(item)
    expected = field.blur(item['gt'][None]**2.2)[0]**(1 / 2.2)
    assert torch.allclose(_inner(item['lq']), _inner(expected), atol=1e-4)
    assert not torch.allclose(_inner(item['lq']), _inner(field.blur(item['gt'][None])[0]), atol=1e-3)


def test_gaussian_and_poisson_noise_have_the_requested_strength():
    clean = SyntheticBlurDataset(_opt(gt_size=64))[0]['lq']
    noisy = SyntheticBlurDataset(_opt(gt_size=64, noise_std=0.05))[0]['lq']
    residual = noisy - clean
    inside = (clean > 0.2) & (clean < 0.8)
    assert residual[inside].std().item() == pytest.approx(0.05, rel=0.1)
    shot = SyntheticBlurDataset(_opt(gt_size=64, poisson_peak=100))[0]['lq'] - clean
    assert shot[inside].var().item() == pytest.approx((clean[inside] / 100).mean().item(), rel=0.2)


def test_reads_sharp_images_from_a_folder_with_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    for name in ('a.png', 'b.png'):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / 'grey.png'), rng.integers(0, 256, (50, 30), dtype=np.uint8))
    dataset = build_dataset(
        _opt(dataroot_gt=str(tmp_path), num_samples=None, use_hflip=True, use_rot=True, phase='train'))
    assert len(dataset) == 3
    item = dataset[1]
    assert item['gt_path'] == str(tmp_path / 'b_000001.png') and item['gt'].shape == (3, 40, 40)
    sharp = cv2.imread(str(tmp_path / 'a.png'))[..., ::-1] / 255.0
    values = set(np.round(sharp.ravel() * 255).astype(int).tolist())
    crop_values = set(np.round(dataset[0]['gt'].numpy().ravel() * 255).astype(int).tolist())
    assert crop_values <= values


def test_missing_folder_is_reported():
    with pytest.raises(FileNotFoundError, match='expected a folder of sharp images'):
        SyntheticBlurDataset(_opt(dataroot_gt='/nonexistent/folder'))


def test_yaml_options_build_a_basicsr_training_dataloader():
    import yaml

    from basicsr.data import build_dataloader

    opt = yaml.safe_load("""
    name: synthetic_train
    type: SyntheticBlurDataset
    phase: train
    gt_size: 24
    kernel_size: 7
    num_samples: 4
    min_region_area: 20
    field_types: {region: 0.6, smooth: 0.2, linear: 0.2}
    noise_std: [0.0, 0.02]
    gamma: 2.2
    use_hflip: true
    use_rot: true
    io_backend: {type: disk}
    batch_size_per_gpu: 2
    num_worker_per_gpu: 0
    use_shuffle: true
    dataset_enlarge_ratio: 1
    """)
    loader = build_dataloader(build_dataset(opt), opt, num_gpu=0, dist=False, sampler=None, seed=0)
    batch = next(iter(loader))
    assert batch['lq'].shape == (2, 3, 24, 24) and batch['field_mixing'].shape == (2, 9, 24, 24)
    assert field_from_batch(batch).batch == 2


def test_gray_prob_turns_crops_into_their_luma_on_all_channels():
    colour = SyntheticBlurDataset(_opt(field_types={'linear': 1.0}))
    gray = SyntheticBlurDataset(_opt(field_types={'linear': 1.0}, gray_prob=1.0))
    for index in (0, 2):  # astronaut, coffee (camera, index 1, is grey already)
        item = gray[index]
        assert torch.equal(item['gt'][0], item['gt'][1]) and torch.equal(item['gt'][1], item['gt'][2])
        assert torch.allclose(item['lq'][0], item['lq'][2], atol=1e-6)
        assert not torch.equal(colour[index]['gt'][0], colour[index]['gt'][2])
        luma = torch.tensordot(torch.tensor([0.299, 0.587, 0.114]), colour[index]['gt'], dims=1)  # BT.601
        assert torch.allclose(item['gt'][0], luma, atol=1e-5)
    assert torch.equal(SyntheticBlurDataset(_opt(gray_prob=0.0))[2]['lq'], SyntheticBlurDataset(_opt())[2]['lq'])
    with pytest.raises(ValueError, match=r'gray_prob: expected a probability in \[0, 1\]'):
        SyntheticBlurDataset(_opt(gray_prob=1.5))


def test_bundled_photos_option_chooses_scikit_image_files_and_refuses_benchmark_photos():
    dataset = SyntheticBlurDataset(_opt(bundled_photos=['text.png', 'page.png'], num_samples=4))
    assert [path.rsplit('/', 1)[-1] for path in dataset.paths] == ['text.png', 'page.png']
    assert dataset[1]['gt_path'].endswith('page_000001.png') and dataset[1]['gt'].shape == (3, 40, 40)
    with pytest.raises(ValueError, match=r"\['moon.png'\] are held out for the estimation benchmark"):
        SyntheticBlurDataset(_opt(bundled_photos=['text.png', 'moon.png']))
    with pytest.raises(ValueError, match='expected file names in'):
        SyntheticBlurDataset(_opt(bundled_photos=['no_such_photo.png']))
    with pytest.raises(ValueError, match=r'expected file names in .*, got \[\]'):
        SyntheticBlurDataset(_opt(bundled_photos=[]))
    with pytest.raises(ValueError, match='only used without dataroot_gt'):
        SyntheticBlurDataset(_opt(dataroot_gt='/tmp', bundled_photos=['text.png']))


def test_dead_leaves_prob_replaces_photo_crops_by_dead_leaves_in_the_photo_colours():
    photo_items = SyntheticBlurDataset(_opt(dead_leaves_prob=0.0))
    assert torch.equal(photo_items[1]['lq'], SyntheticBlurDataset(_opt())[1]['lq'])  # off: the draws are unchanged
    leaves = SyntheticBlurDataset(_opt(field_types={'linear': 1.0}, dead_leaves_prob=1.0))

    def flat_fraction(image):  # share of horizontal neighbours with equal colours
        return float((image[:, :, 1:] == image[:, :, :-1]).all(0).float().mean())

    for index in (0, 2):  # astronaut, coffee
        assert flat_fraction(leaves[index]['gt']) > 0.25 > 0.05 > flat_fraction(photo_items[index]['gt'])
    assert torch.allclose(leaves[1]['gt'][0], leaves[1]['gt'][2])  # camera.png is grey: so are its leaves
    again = SyntheticBlurDataset(_opt(field_types={'linear': 1.0}, dead_leaves_prob=1.0))
    assert torch.equal(leaves[2]['lq'], again[2]['lq'])  # seeded per index, as photo crops
    with pytest.raises(ValueError, match=r'dead_leaves_prob: expected a probability in \[0, 1\]'):
        SyntheticBlurDataset(_opt(dead_leaves_prob=-0.1))
