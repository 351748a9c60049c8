"""scripts/extract_video.py: a bundled photo blurred by a generated offset field -> N frames, a GIF and a strip; the
frames follow the field, average back to the blurry photo, and any deblurring network of the project can be named."""
import os

import cv2
import numpy as np
import pytest
import torch
import yaml

from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.fields import OffsetField, save_field
from tests.conftest import load_script, refused

SIZE = (32, 40)


@pytest.fixture(scope='module')
def script():
    return load_script('extract_video')


@pytest.fixture
def blurred_photo(tmp_path):
    """A bundled photo crop, a smoothly varying quadratic offset field (15 instants) and the photo blurred by it."""
    from skimage import data as skimage_data

    sharp = torch.from_numpy(skimage_data.chelsea()[60:60 + SIZE[0], 150:150 + SIZE[1]]).permute(2, 0, 1)[None] / 255.
    cols = torch.linspace(-1, 1, SIZE[1]).expand(SIZE)
    start = torch.stack((3 + cols, torch.full(SIZE, -1.5)))[None]
    end = torch.stack((-2 - cols, 1 + cols))[None]
    field = OffsetField.from_endpoints(start, end, 15, 'quadratic')
    blurry = field.blur(sharp.float())
    paths = {name: str(tmp_path / f'{name}.png') for name in ('sharp', 'blurry')}
    for name, image in (('sharp', sharp), ('blurry', blurry)):
        cv2.imwrite(paths[name], (image[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8))
    save_field(str(tmp_path / 'field.npz'), field)
    return paths, str(tmp_path / 'field.npz')


def read(path):
    return cv2.imread(path)[..., ::-1].astype(np.float64) / 255


def test_frames_of_a_generated_field_average_back_to_the_blurry_photo(script, blurred_photo, tmp_path):
    paths, field = blurred_photo
    out = tmp_path / 'video'
    result = script.main([paths['blurry'], '--offsets', field, '--deblurred', paths['sharp'], '-o', str(out),
                          '--strip', str(tmp_path / 'strip.png')])
    assert len(result['frames']) == 15 and os.path.isfile(result['gif'])
    frames = np.stack([read(path) for path in result['frames']])
    assert np.abs(frames[7] - read(paths['sharp'])).max() <= 1 / 255  # the middle frame is the latent image
    assert np.abs(frames.mean(0) - read(paths['blurry'])).mean() < 2 / 255  # eq. 4 up to uint8 rounding
    strip = cv2.imread(str(tmp_path / 'strip.png'))
    assert strip.shape == (SIZE[0], 8 * SIZE[1] + 7 * 2, 3)  # the blurry photo, then 7 of the 15 frames
    assert np.abs(strip[:, :SIZE[1], ::-1] / 255 - read(paths['blurry'])).max() == 0


def test_any_number_of_frames_and_the_gif_holds_them_all(script, blurred_photo, tmp_path):
    import imageio.v3 as iio

    paths, field = blurred_photo
    result = script.main([paths['blurry'], '--offsets', field, '--deblurred', paths['sharp'], '--frames', '9', '-o',
                          str(tmp_path / 'nine'), '--no-mp4'])
    assert len(result['frames']) == 9 and result['mp4_skipped'] == 'not asked for'
    assert iio.imread(result['gif'], index=None).shape == (9, *SIZE, 3)
    assert np.abs(read(result['frames'][4]) - read(paths['sharp'])).max() <= 1 / 255


def test_offset_net_checkpoint_and_a_deblurring_network_named_by_option(script, blurred_photo, tmp_path):
    paths, _ = blurred_photo
    torch.manual_seed(0)
    torch.save({'params': MotionOffsetNet(num_feat=4).state_dict()}, tmp_path / 'offsets.pth')
    network_g = {'type': 'MotionAwareDMPHN', 'num_feat': 4, 'offset_feat': 4}
    from basicsr.archs import build_network
    torch.save({'params': build_network(dict(network_g)).state_dict()}, tmp_path / 'ma.pth')
    option = tmp_path / 'deblur.yml'
    paths_opt = {'pretrain_network_g': str(tmp_path / 'ma.pth')}
    option.write_text(yaml.safe_dump({'network_g': network_g, 'path': paths_opt}))
    result = script.main([paths['blurry'], '--offsets', str(tmp_path / 'offsets.pth'), '--deblur-opt', str(option),
                          '--frames', '5', '-o', str(tmp_path / 'a')])
    assert len(result['frames']) == 5
    # without --offsets the motion-aware network's own offset net gives the trajectories
    result = script.main([paths['blurry'], '--deblur-opt', str(option), '-o', str(tmp_path / 'b')])
    assert len(result['frames']) == 15


def test_missing_trajectories_and_conflicting_latents_are_refused(script, blurred_photo, tmp_path, capsys):
    paths, field = blurred_photo
    refused(script, capsys, 'no trajectories', [paths['blurry'], '-o', str(tmp_path / 'x')])
    refused(script, capsys, 'exclude each other',
            [paths['blurry'], '--offsets', field, '--deblurred', paths['sharp'], '--deblur', 'a.pth', '--deblur-arch',
             'NAFNet', '-o', str(tmp_path / 'x')])
    refused(script, capsys, 'needs --deblur-arch',
            [paths['blurry'], '--offsets', field, '--deblur', 'a.pth', '-o', str(tmp_path / 'x')])
