"""python -m basicsr_blurfield.restore: every method end to end on tiny photos, reports, and clear errors (exit 2)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import basicsr_blurfield  # noqa: F401
from basicsr_blurfield.archs.blur_kernel_space_arch import BlurOperatorFamily
from basicsr_blurfield.archs.kernel_estimator_arch import FlowKernelEstimator
from basicsr_blurfield.fields import BasisField, save_field
from basicsr_blurfield.fields.generators import linear_kernel, region_field
from basicsr_blurfield.restore import main


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64))**2)))


@pytest.fixture()
def blurred_photo(tmp_path):
    """Writes a 48x56 photo blurred by a two-region field; returns (sharp BGR, blurry path, field path)."""
    from skimage import data as skimage_data
    sharp = cv2.resize(skimage_data.coffee()[50:338, 100:436], (56, 48), interpolation=cv2.INTER_AREA)
    angles = iter([0.2, 1.7, 0.9])
    sample = region_field(
        48,
        56,
        np.random.default_rng(2),
        kernel_size=9,
        max_regions=1,
        min_area=300,
        kernel_fn=lambda g: linear_kernel(9, 7.0, next(angles)))
    field = BasisField(torch.from_numpy(sample['basis'])[None], torch.from_numpy(sample['mixing'])[None])
    tensor = torch.from_numpy(sharp).permute(2, 0, 1)[None].float() / 255
    blurry = (field.blur(tensor)[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'blurry.png'), cv2.cvtColor(blurry, cv2.COLOR_RGB2BGR))
    save_field(tmp_path / 'field.npz', field)
    return cv2.cvtColor(sharp, cv2.COLOR_RGB2BGR), str(tmp_path / 'blurry.png'), str(tmp_path / 'field.npz')


@pytest.fixture()
def estimator_checkpoint(tmp_path):
    """A seeded tiny FlowKernelEstimator (K = 5) saved as ``ke.pth``; returns (network, path)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        estimator = FlowKernelEstimator(kernel_size=5, num_feat=8).eval()
    torch.save({'params': estimator.state_dict()}, tmp_path / 'ke.pth')
    return estimator, tmp_path / 'ke.pth'


def run_cli(capsys, *args):
    main([str(arg) for arg in args])
    return capsys.readouterr().out


def fail_cli(capsys, *args) -> str:
    with pytest.raises(SystemExit) as stop:
        main([str(arg) for arg in args])
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_help_does_not_import_torch():
    result = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'basicsr_blurfield.restore', '--help'],
                            capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 0 and '--method {rl_tv,cg,blind_bks}' in result.stdout
    imported = [line.rsplit('|', 1)[-1].strip() for line in result.stderr.splitlines()]
    assert 'torch' not in imported and 'basicsr_blurfield.compat' not in imported


@pytest.mark.parametrize('method, extra', [('cg', []), ('cg', ['--prior', 'tv']), ('rl_tv', [])])
def test_deconvolution_with_a_saved_field_sharpens_and_reports(capsys, tmp_path, blurred_photo, method, extra):
    sharp, blurry_path, field_path = blurred_photo
    output = tmp_path / 'out.png'
    summary = run_cli(capsys, '--method', method, '--blurry', blurry_path, '--field', field_path, '-o', output,
                      '--report', *extra)
    restored, blurry = cv2.imread(str(output)), cv2.imread(blurry_path)
    assert restored.shape == sharp.shape and psnr(restored, sharp) > psnr(blurry, sharp) + 1.0
    report = cv2.imread(str(tmp_path / 'out_report.png'))
    assert report.shape == (48, 3 * 56, 3) and np.array_equal(report[30:, 112:], restored[30:])
    assert f'{output}: {method} on a 48x56 photo' in summary


def test_precondition_reaches_the_solver_and_mixture_needs_a_basis_field(capsys, tmp_path, blurred_photo):
    from basicsr_blurfield.fields import load_field
    from basicsr_blurfield.restoration.deconvolution import deconvolve_cg
    _, blurry_path, field_path = blurred_photo
    outputs = {}
    for choice in ('none', 'auto', 'mixture', 'circulant'):
        outputs[choice] = tmp_path / f'{choice}.png'
        run_cli(capsys, '--method', 'cg', '--prior', 'tv', '--blurry', blurry_path, '--field', field_path, '-o',
                outputs[choice], '--precondition', choice, '--iters', 1)
    image = torch.from_numpy(cv2.cvtColor(cv2.imread(blurry_path), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255
    expected = deconvolve_cg(image.float(), load_field(field_path), prior='tv', num_iter=1, precondition='mixture')
    expected = cv2.cvtColor((expected[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    read = {choice: cv2.imread(str(path)) for choice, path in outputs.items()}
    assert np.array_equal(read['auto'], read['mixture']) and np.abs(read['auto'].astype(int) - expected).max() <= 1
    assert not np.array_equal(read['none'], read['mixture']) and not np.array_equal(read['circulant'], read['mixture'])
    dense_path = tmp_path / 'dense.npz'
    save_field(dense_path, load_field(field_path).dense())
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--field', dense_path, '-o', tmp_path / 'x.png',
                   '--precondition', 'mixture')
    assert "precondition='mixture': expected a BasisField, got KernelField" in err


def test_deconvolution_with_an_estimator_checkpoint(capsys, tmp_path, blurred_photo, estimator_checkpoint):
    _, blurry_path, _ = blurred_photo
    estimator, checkpoint = estimator_checkpoint
    run_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--estimator', checkpoint, '-o',
            tmp_path / 'out.png', '--save-field', tmp_path / 'estimated.npz', '--iters', 3)
    from basicsr_blurfield.fields import load_field
    image = torch.from_numpy(cv2.cvtColor(cv2.imread(blurry_path), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        expected = estimator(image.float()).kernels
    assert torch.allclose(load_field(tmp_path / 'estimated.npz').kernels, expected, atol=1e-6)
    assert cv2.imread(str(tmp_path / 'out.png')).shape == (48, 56, 3)


def test_a_shipped_reference_model_is_found_by_name(capsys, tmp_path, blurred_photo):
    from basicsr_blurfield.reference_models import REFERENCE_DIR, REFERENCE_MODELS
    if not os.path.isfile(os.path.join(REFERENCE_DIR, REFERENCE_MODELS['ufpnet-ke-reference'])):
        pytest.skip('the UFPNet reference model is not shipped in this checkout')
    _, blurry_path, _ = blurred_photo
    summary = run_cli(capsys, '--method', 'cg', '--prior', 'tv', '--blurry', blurry_path, '--estimator',
                      'ufpnet-ke-reference', '-o', tmp_path / 'out.png', '--iters', 1)
    assert 'FlowKernelEstimator' in summary and cv2.imread(str(tmp_path / 'out.png')).shape == (48, 56, 3)
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--estimator', 'no-such-model', '-o',
                   tmp_path / 'out.png')
    assert 'not a reference-model name' in err


def test_blind_deblurring_with_an_operator_checkpoint(capsys, tmp_path, blurred_photo):
    _, blurry_path, _ = blurred_photo
    with torch.random.fork_rng():
        torch.manual_seed(0)
        operator = BlurOperatorFamily(
            num_feat=8, num_front_block=1, num_back_block=1, unet_feat=8, num_levels=2, code_channels=16)
    torch.save({'params': operator.state_dict()}, tmp_path / 'F.pth')
    summary = run_cli(capsys, '--method', 'blind_bks', '--blurry', blurry_path, '--estimator', tmp_path / 'F.pth', '-o',
                      tmp_path / 'out.png', '--iters', 2, '--warmup', 1, '--report')
    assert cv2.imread(str(tmp_path / 'out.png')).shape == (48, 56, 3)
    assert cv2.imread(str(tmp_path / 'out_report.png')).shape == (48, 168, 3) and '2 steps' in summary


def test_bad_inputs_give_clear_errors(capsys, tmp_path, blurred_photo):
    _, blurry_path, field_path = blurred_photo
    out = tmp_path / 'out.png'
    small = tmp_path / 'small.png'
    cv2.imwrite(str(small), np.zeros((40, 56, 3), np.uint8))
    err = fail_cli(capsys, '--method', 'cg', '--blurry', small, '--field', field_path, '-o', out)
    assert 'error: --field' in err and 'the field is 48x56 but the photo is 40x56' in err
    np.savez(tmp_path / 'notafield.npz', weights=np.zeros(3))
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--field', tmp_path / 'notafield.npz', '-o', out)
    assert 'not a blur-field archive written by save_field' in err
    (tmp_path / 'text.npz').write_text('hello')
    err = fail_cli(capsys, '--method', 'rl_tv', '--blurry', blurry_path, '--field', tmp_path / 'text.npz', '-o', out)
    assert 'not a blur-field archive' in err
    torch.save({'params': {'intro.weight': torch.zeros(3), 'ending.weight': torch.zeros(3)}}, tmp_path / 'naf.pth')
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--estimator', tmp_path / 'naf.pth', '-o', out)
    assert 'not a checkpoint of a blur-field estimator' in err and "['ending.', 'intro.']" in err
    torch.save({'params': FlowKernelEstimator(kernel_size=5, num_feat=8).state_dict()}, tmp_path / 'ke.pth')
    err = fail_cli(capsys, '--method', 'blind_bks', '--blurry', blurry_path, '--estimator', tmp_path / 'ke.pth', '-o',
                   out)
    assert 'needs a BlurOperatorFamily checkpoint' in err and 'got a FlowKernelEstimator one' in err
    operator = BlurOperatorFamily(
        num_feat=8, num_front_block=1, num_back_block=1, unet_feat=8, num_levels=2, code_channels=16)
    torch.save(operator.state_dict(), tmp_path / 'F.pth')
    err = fail_cli(capsys, '--method', 'rl_tv', '--blurry', blurry_path, '--estimator', tmp_path / 'F.pth', '-o', out)
    assert 'a BlurOperatorFamily is no field estimator; use it with --method blind_bks' in err
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '-o', out)
    assert 'needs --field F.npz or --estimator CKPT' in err
    err = fail_cli(capsys, '--method', 'cg', '--blurry', tmp_path / 'missing.png', '--field', field_path, '-o', out)
    assert 'missing.png: no such file' in err
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--field', field_path, '-o', tmp_path / 'x.npz')
    assert 'expected an image file name' in err
    assert not os.path.exists(out)


def test_tta_and_smooth_sigma_save_the_averaged_estimated_field(capsys, tmp_path, blurred_photo,
                                                              estimator_checkpoint):
    _, blurry_path, field_path = blurred_photo
    estimator, checkpoint = estimator_checkpoint
    run_cli(capsys, '--method', 'rl_tv', '--blurry', blurry_path, '--estimator', checkpoint, '-o',
            tmp_path / 'out.png', '--save-field', tmp_path / 'smoothed.npz', '--iters', 1, '--smooth-sigma', 2,
            '--tta', 4)
    from basicsr_blurfield.reference_models import AveragedEstimator
    from basicsr_blurfield.fields import load_field
    image = torch.from_numpy(cv2.cvtColor(cv2.imread(blurry_path), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        expected = AveragedEstimator(estimator, 4, 2.0)(image.float()).kernels
    assert torch.allclose(load_field(tmp_path / 'smoothed.npz').kernels, expected, atol=1e-6)
    out = tmp_path / 'x.png'
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--field', field_path, '-o', out,
                   '--smooth-sigma', 2)
    assert '--smooth-sigma and --tta average an estimated field' in err
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--estimator', checkpoint, '-o', out,
                   '--smooth-sigma', -1)
    assert '--smooth-sigma: expected a finite number of pixels >= 0' in err


def test_blind_deblurring_takes_init_code_and_code_prior_files_and_refuses_bad_ones(capsys, tmp_path, blurred_photo,
                                                                           monkeypatch):
    from basicsr_blurfield.restoration import blind_deblur as module
    _, blurry_path, field_path = blurred_photo
    received, priors, weights, real = [], [], [], module.blind_deblur

    def spy(*args, **kwargs):
        assert kwargs['num_feat'] == 8 and kwargs['num_levels'] == 2
        received.append(kwargs['init_code'])
        priors.append(kwargs['code_prior'])
        weights.append(kwargs['code_prior_weight'])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, 'blind_deblur', spy)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        operator = BlurOperatorFamily(
            num_feat=8, num_front_block=1, num_back_block=1, unet_feat=8, num_levels=2, code_channels=16)
    torch.save({'params': operator.state_dict()}, tmp_path / 'F.pth')
    common = ('--method', 'blind_bks', '--blurry', blurry_path, '--estimator', tmp_path / 'F.pth', '--iters', 2,
              '--warmup', 1, '--prior-width', 8, '--prior-levels', 2)
    np.save(tmp_path / 'code.npy', np.full((1, 16, 1, 1), 0.5, np.float32))
    run_cli(capsys, *common, '-o', tmp_path / 'plain.png')
    run_cli(capsys, *common, '-o', tmp_path / 'init.png', '--init-code', tmp_path / 'code.npy')
    assert received[0] is None and torch.equal(received[1], torch.full((1, 16, 1, 1), 0.5))
    assert cv2.imread(str(tmp_path / 'init.png')).shape == (48, 56, 3)
    out = tmp_path / 'out.png'
    np.save(tmp_path / 'wide.npy', np.zeros((1, 8, 1, 1), np.float32))
    err = fail_cli(capsys, *common, '-o', out, '--init-code', tmp_path / 'wide.npy')
    assert 'error: --init-code' in err and 'init_code: expected a code of shape (1, 16, 1, 1)' in err
    np.save(tmp_path / 'flat.npy', np.zeros(16, np.float32))
    err = fail_cli(capsys, *common, '-o', out, '--init-code', tmp_path / 'flat.npy')
    assert 'expected a float array of shape (1, D, 1, 1) or (1, D, h, w), got float32 (16,)' in err
    (tmp_path / 'text.npy').write_text('hello')
    err = fail_cli(capsys, *common, '-o', out, '--init-code', tmp_path / 'text.npy')
    assert 'not a .npy array written by numpy.save' in err
    err = fail_cli(capsys, *common, '-o', out, '--init-code', tmp_path / 'missing.npy')
    assert '--init-code' in err and 'missing.npy: no such file' in err
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--field', field_path, '-o', out,
                   '--init-code', tmp_path / 'code.npy')
    assert '--init-code is for --method blind_bks, not cg' in err
    # --code-prior: the Gaussian joins the objective and the code starts at its mean unless --init-code is given
    mean, std = np.full((1, 16, 1, 1), 0.25, np.float32), np.full((1, 16, 1, 1), 2.0, np.float32)
    np.savez(tmp_path / 'prior.npz', mean=mean, std=std)
    run_cli(capsys, *common, '-o', tmp_path / 'prior.png', '--code-prior', tmp_path / 'prior.npz',
            '--code-prior-weight', 0.5)
    assert torch.equal(received[-1], torch.from_numpy(mean))
    assert torch.equal(priors[-1][0], torch.from_numpy(mean)) and torch.equal(priors[-1][1], torch.from_numpy(std))
    assert weights[-1] == 0.5
    run_cli(capsys, *common, '-o', tmp_path / 'both.png', '--code-prior', tmp_path / 'prior.npz', '--init-code',
            tmp_path / 'code.npy')
    assert torch.equal(received[-1], torch.full((1, 16, 1, 1), 0.5)) and weights[-1] == 1e-2
    np.savez(tmp_path / 'one.npz', mean=mean)
    err = fail_cli(capsys, *common, '-o', out, '--code-prior', tmp_path / 'one.npz')
    assert 'expected the arrays mean and std, got [\'mean\']' in err
    np.savez(tmp_path / 'zero.npz', mean=mean, std=np.zeros_like(std))
    err = fail_cli(capsys, *common, '-o', out, '--code-prior', tmp_path / 'zero.npz')
    assert 'mean and std must have one shape and std > 0' in err
    np.savez(tmp_path / 'wide.npz', mean=np.zeros((1, 8, 1, 1), np.float32), std=np.ones((1, 8, 1, 1), np.float32))
    err = fail_cli(capsys, *common, '-o', out, '--code-prior', tmp_path / 'wide.npz')
    assert 'error: --code-prior' in err and 'expected a code of shape (1, 16, 1, 1)' in err
    err = fail_cli(capsys, *common, '-o', out, '--code-prior', tmp_path / 'code.npy')
    assert 'not a .npz archive written by numpy.savez' in err
    err = fail_cli(capsys, *common, '-o', out, '--init-code', tmp_path / 'prior.npz')
    assert 'expected one array (.npy), got an archive' in err
    err = fail_cli(capsys, *common, '-o', out, '--code-prior', tmp_path / 'prior.npz', '--code-prior-weight', -1)
    assert '--code-prior-weight: expected a finite number >= 0, got -1.0' in err
    err = fail_cli(capsys, '--method', 'cg', '--blurry', blurry_path, '--field', field_path, '-o', out,
                   '--code-prior', tmp_path / 'prior.npz')
    assert '--code-prior is for --method blind_bks, not cg' in err
    err = fail_cli(capsys, *common[:-4], '-o', out, '--prior-width', 0)
    assert '--prior-width / --prior-levels: expected positive numbers, got 0 / 5' in err
    assert not os.path.exists(out)
