"""Video from one blurry frame (Motion-ETR eq. 17): frames average to the blur, follow time, match an independent
bilinear warp, and any number of frames comes from the constrained curve (slow motion)."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from basicsr_blurfield.archs.motion_offset_arch import MotionOffsetNet
from basicsr_blurfield.fields import OffsetField
from basicsr_blurfield.fields.offset_field import trajectory_weights
from basicsr_blurfield.restoration.video import (extract_frames, frame_offsets, instant_weights, trajectory_at,
                                                 video_from_blurry, write_video)


def photo(size=(24, 28)) -> torch.Tensor:
    from skimage import data as skimage_data

    crop = skimage_data.astronaut()[100:100 + size[0], 200:200 + size[1]]
    return torch.from_numpy(crop).permute(2, 0, 1)[None].double() / 255


def curved_field(size=(24, 28), steps=15, constraint='quadratic') -> OffsetField:
    rows = torch.linspace(-1, 1, size[0], dtype=torch.float64)[:, None].expand(size)
    cols = torch.linspace(-1, 1, size[1], dtype=torch.float64).expand(size)
    start = torch.stack((2.5 + 1.5 * rows, -1.5 + cols))[None]  # (dx, dy), varying over the image
    end = torch.stack((-2 + cols, 2 - rows))[None]
    return OffsetField.from_endpoints(start, None if constraint == 'linear' else end, steps, constraint)


@pytest.mark.parametrize('constraint', ['linear', 'bilinear', 'quadratic'])
def test_the_mean_of_the_frames_is_the_blur_and_the_middle_frame_is_the_sharp_image(constraint):
    sharp, field = photo(), curved_field(constraint=constraint)
    frames = extract_frames(sharp, field)
    assert frames.shape == (1, 15, 3, 24, 28)
    assert torch.allclose(frames.mean(1), field.blur(sharp), atol=1e-12)
    assert torch.allclose(frames[:, 7], sharp, atol=1e-12)


def test_each_frame_is_the_sharp_image_sampled_at_p_plus_the_offsets_of_its_instant():
    sharp, field = photo(), curved_field()
    frames = extract_frames(sharp, field)
    rows, cols = np.mgrid[0:24, 0:28].astype(np.float64)
    for step in (0, 4, 11, 14):
        dx, dy = field.offsets[0, step].numpy()
        for channel in range(3):  # independent bilinear sampling, edge pixels replicated (the field's padding)
            expected = ndimage.map_coordinates(sharp[0, channel].numpy(), [rows + dy, cols + dx], order=1,
                                               mode='nearest')
            assert np.abs(frames[0, step, channel].numpy() - expected).max() < 1e-10, step


def test_frame_order_follows_time():
    dot = torch.zeros(1, 1, 21, 41, dtype=torch.float64)
    dot[..., 10, 20] = 1
    start = torch.tensor([-6., 0.], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, 21, 41)
    field = OffsetField.from_endpoints(start, None, 7, 'linear')  # dx from -6 (first instant) to +6 (last)
    frames = extract_frames(dot, field)
    cols = torch.arange(41, dtype=torch.float64)
    centroid = [float((frame.sum(-2) * cols).sum() / frame.sum()) for frame in frames[0, :, 0]]
    # frame t shows the scene at p + dp_t, so the dot appears at x = 20 - dx_t: 26, 24, ..., 14
    assert centroid == pytest.approx([26, 24, 22, 20, 18, 16, 14], abs=1e-9)


def test_any_number_of_frames_evaluates_the_same_curve_at_more_instants():
    sharp, field = photo(), curved_field()
    assert torch.equal(frame_offsets(field), field.offsets)
    slow = extract_frames(sharp, field, num_frames=29, constraint='quadratic')
    assert slow.shape[1] == 29
    normal = extract_frames(sharp, field)
    assert torch.allclose(slow[:, ::2], normal, atol=1e-12)  # every other instant of 29 is one of the 15
    fine = OffsetField.from_endpoints(field.offsets[:, 0], field.offsets[:, -1], 29, 'quadratic')
    assert torch.allclose(slow.mean(1), fine.blur(sharp), atol=1e-12)
    even = extract_frames(sharp, field, num_frames=4, constraint='quadratic')
    assert torch.allclose(even[:, 0], normal[:, 0], atol=1e-12) and torch.allclose(even[:, -1], normal[:, -1],
                                                                                      atol=1e-12)


@pytest.mark.parametrize('constraint', ['linear', 'bilinear', 'quadratic'])
def test_instant_weights_at_the_field_instants_are_the_cores_trajectory_weights(constraint):
    first, last = trajectory_weights(15, constraint)
    a, b = instant_weights(torch.linspace(-1, 1, 15, dtype=torch.float64), constraint)
    assert torch.allclose(a, first, atol=1e-15) and torch.allclose(b, last, atol=1e-15)
    start = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    end = None if constraint == 'linear' else torch.randn(1, 2, 3, 4, dtype=torch.float64)
    assert torch.allclose(trajectory_at(start, end, 15, constraint),
                          OffsetField.from_endpoints(start, end, 15, constraint).offsets, atol=1e-15)


def test_free_offsets_refuse_another_frame_count():
    field = OffsetField(torch.randn(1, 5, 2, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match='need its trajectory constraint'):
        frame_offsets(field, 9)
    with pytest.raises(ValueError, match='free offsets cannot be evaluated'):
        instant_weights(torch.zeros(3), 'zero')


def test_video_from_blurry_uses_the_offset_net_and_the_deblur_net():
    torch.manual_seed(0)
    offset_net = MotionOffsetNet(num_feat=4, num_steps=5).eval()
    lq = photo().float()
    frames, field, latent = video_from_blurry(lq, offset_net, num_frames=9)
    assert frames.shape == (1, 9, 3, 24, 28) and field.offsets.shape == (1, 5, 2, 24, 28)
    assert torch.equal(latent, lq) and torch.allclose(frames[:, 4], lq, atol=1e-6)

    def two_outputs(x):  # a multi-scale output: the largest image (the first of equals) is the restored one
        return [x * 0.5, x * 0.5 + 0.1]

    frames, _, latent = video_from_blurry(lq, offset_net, two_outputs)
    assert torch.allclose(latent, lq * 0.5) and frames.shape[1] == 5


def test_write_video_writes_png_frames_and_an_animated_gif(tmp_path):
    import imageio.v3 as iio

    frames = extract_frames(photo(), curved_field(), num_frames=5, constraint='quadratic')[0].float()
    result = write_video(frames, str(tmp_path), fps=5)
    assert len(result['frames']) == 5 and all(path.endswith('.png') for path in result['frames'])
    gif = iio.imread(result['gif'], index=None)
    assert gif.shape == (5, 24, 28, 3)
    assert np.abs(gif[2].astype(int) - np.round(frames[2].permute(1, 2, 0).numpy() * 255)).mean() < 8  # palette
    if result['mp4'] is None:
        assert 'imageio-ffmpeg is not installed' in result['mp4_skipped']
    else:
        assert (tmp_path / 'video.mp4').stat().st_size > 0
    with pytest.raises(ValueError, match=r'expected \(F, 3, H, W\)'):
        write_video(frames[:, :1], str(tmp_path))
