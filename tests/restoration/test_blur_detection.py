"""Blur detection from mixing maps (Carbajal et al. §4.2) and the CUHK average-precision protocol."""
import cv2
import numpy as np
import pytest
import torch

from basicsr_blurfield.fields import BasisField, KernelField
from basicsr_blurfield.fields.generators import linear_kernel, random_shake_kernel, region_field
from basicsr_blurfield.restoration.blur_detection import (average_precision, basis_blur_score, blur_mask, blur_score,
                                                          evaluate_blur_detection)


def sharp_background_field(seed: int, size: int = 48, kernel_size: int = 21):
    """Region-wise field from the generators: identity kernel on the background, shake kernels in the regions.

    The region kernels are drawn until one is spread enough to count as blurred (L2 norm below 0.2, the paper
    detects below 0.25); a long camera-shake path can fold onto itself and stay compact.
    """
    rng = np.random.default_rng(seed)
    calls = []

    def kernel_fn(g):
        calls.append(None)
        if len(calls) == 1:
            return linear_kernel(kernel_size, 0.0, 0.0)
        kernel = random_shake_kernel(kernel_size, g, length_range=(0.8, 1.0))
        while np.linalg.norm(kernel) >= 0.2:
            kernel = random_shake_kernel(kernel_size, g, length_range=(0.8, 1.0))
        return kernel

    while True:
        calls.clear()
        sample = region_field(
            size, size, rng, kernel_size=kernel_size, max_regions=3, min_area=100, kernel_fn=kernel_fn)
        if sample['labels'].max() > 0:
            return sample


def test_reference_average_precision_values():
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([0.1, 0.9, 0.5], [0, 1, 1]) == pytest.approx(1.0)
    assert average_precision([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]) == pytest.approx(0.25)
    assert np.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_basis_score_sums_the_mixing_of_spread_kernels_only():
    delta = torch.zeros(7, 7)
    delta[3, 3] = 1
    spread = torch.full((7, 7), 1 / 49)
    basis = torch.stack([delta, spread])[None]
    mixing = torch.softmax(torch.randn(1, 2, 8, 8), 1)
    assert torch.allclose(basis_blur_score(basis, mixing), mixing[:, 1:2])
    assert torch.allclose(basis_blur_score(basis, mixing, threshold=1.5), torch.ones(1, 1, 8, 8))


def test_basis_and_dense_scores_agree_on_hard_regions():
    sample = sharp_background_field(seed=1)
    field = BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None])
    agree = (blur_mask(field) == blur_mask(field.dense())).float().mean().item()
    assert agree > 0.95


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_mask_of_a_generated_field_finds_the_blurred_regions_well_above_chance(seed):
    sample = sharp_background_field(seed)
    field = BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None])
    blurred = sample['labels'] > 0
    for score in (blur_score(field), blur_score(field.dense())):
        ap = average_precision(score[0, 0].numpy(), blurred)
        chance = blurred.mean()
        assert ap > 0.9 and (ap - chance) / (1 - chance) > 0.6, (ap, chance)
    assert blur_mask(field).dtype == torch.bool


def test_folder_evaluation_reports_mean_average_precision(tmp_path):
    image_dir, gt_dir = tmp_path / 'image', tmp_path / 'gt'
    image_dir.mkdir()
    gt_dir.mkdir()
    fields, labels = [], []
    for index, seed in enumerate((0, 2)):
        sample = sharp_background_field(seed)
        cv2.imwrite(str(image_dir / f'motion{index:04d}.jpg'), np.full((48, 48, 3), 128, np.uint8))
        cv2.imwrite(str(gt_dir / f'motion{index:04d}.png'), (sample['labels'] > 0).astype(np.uint8) * 255)
        labels.append(sample['labels'])
        fields.append(BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None]))
    queue = iter(fields)
    result = evaluate_blur_detection(str(image_dir), str(gt_dir), lambda image: next(queue))
    assert sorted(result['ap']) == ['motion0000', 'motion0001']
    assert result['map'] == pytest.approx(np.mean(list(result['ap'].values())))
    assert result['map'] > 0.9
    queue = iter(fields)
    inverted = evaluate_blur_detection(str(image_dir), str(gt_dir), lambda image: next(queue), invert_gt=True)
    expected = average_precision(blur_score(fields[0])[0, 0].numpy(), labels[0] == 0)
    assert inverted['ap']['motion0000'] == pytest.approx(expected)
    assert expected < result['ap']['motion0000'] - 0.1


def test_folder_evaluation_needs_a_mask_per_image(tmp_path):
    (tmp_path / 'image').mkdir()
    (tmp_path / 'gt').mkdir()
    cv2.imwrite(str(tmp_path / 'image' / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match='no mask for'):
        evaluate_blur_detection(str(tmp_path / 'image'), str(tmp_path / 'gt'), lambda image: None)


def test_non_field_input_is_rejected():
    with pytest.raises(TypeError, match='expected a blur field'):
        blur_score(torch.zeros(1, 1, 4, 4))
    kernels = torch.zeros(1, 9, 4, 4)
    kernels[:, 4] = 1
    assert not blur_mask(KernelField(kernels)).any()


def test_detect_blur_script_writes_a_mask_and_evaluates_a_folder(tmp_path, monkeypatch, capsys):
    import os
    import runpy

    import yaml

    from basicsr_blurfield.archs.basis_kernel_arch import BasisKernelNet

    tiny = dict(num_basis=4, kernel_size=9, num_feat=8, enc_channels=(8, 12, 16), kernel_channels=(12, 8, 8))
    torch.manual_seed(0)
    torch.save({'params': BasisKernelNet(**tiny).state_dict()}, tmp_path / 'net.pth')
    (tmp_path / 'net.yml').write_text(yaml.safe_dump({'network_g': {'type': 'BasisKernelNet', **tiny}}))
    (tmp_path / 'image').mkdir()
    (tmp_path / 'gt').mkdir()
    photo = np.random.default_rng(0).integers(0, 255, (36, 44, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'image' / 'motion0001.png'), photo)
    gt = np.zeros((36, 44), np.uint8)
    gt[:, 20:] = 255
    cv2.imwrite(str(tmp_path / 'gt' / 'motion0001.png'), gt)
    script = os.path.join(os.path.dirname(__file__), '..', '..', 'scripts', 'detect_blur.py')
    common = ['--checkpoint', str(tmp_path / 'net.pth'), '--opt', str(tmp_path / 'net.yml'), '--device', 'cpu']

    def run_script(*args):
        monkeypatch.setattr('sys.argv', ['detect_blur.py', *args, *common])
        runpy.run_path(script, run_name='__main__')
        return capsys.readouterr().out

    out = tmp_path / 'out'
    printed = run_script(
        str(tmp_path / 'image' / 'motion0001.png'), '-o', str(out / 'mask.png'), '--score', str(out / 'score.png'),
        '--kernels', str(out / 'kernels.png'))
    assert 'of the pixels marked as blurred' in printed
    mask = cv2.imread(str(out / 'mask.png'), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (36, 44) and set(np.unique(mask)) <= {0, 255}
    assert cv2.imread(str(out / 'kernels.png')).shape == (36, 44, 3)
    printed = run_script(str(tmp_path / 'image'), '--gt', str(tmp_path / 'gt'))
    assert 'motion0001\t' in printed and 'mAP over 1 images: ' in printed
