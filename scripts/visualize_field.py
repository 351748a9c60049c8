"""Draw a stored blur field over a photo: kernels as an enlarged grid, trajectories as coloured curves.

Usage::

    python scripts/visualize_field.py IMAGE FIELD.npz -o out.png [--step 32] [--mode auto|kernels|trajectories]
        [--scale 1.0] [--index 0]

``FIELD.npz`` is written by ``basicsr_blurfield.fields.save_field``. ``--mode auto`` draws trajectories for an
``OffsetField`` and kernels otherwise; kernels of an ``OffsetField`` are its bilinear splats. The photo is resized to
the field's size when they differ.
"""
import argparse
import os
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw a blur field (.npz from save_field) over a photo.')
    parser.add_argument('image', help='photo to draw on (any format OpenCV reads)')
    parser.add_argument('field', help='blur field archive written by save_field')
    parser.add_argument('-o', '--output', required=True, help='output PNG path')
    parser.add_argument('--step', type=int, default=32, help='grid spacing in pixels (default 32)')
    parser.add_argument('--mode', choices=('auto', 'kernels', 'trajectories'), default='auto')
    parser.add_argument('--scale', type=float, default=1.0, help='trajectory magnification (default 1)')
    parser.add_argument('--index', type=int, default=0, help='sample of the field batch to draw (default 0)')
    return parser, parser.parse_args(argv)


def check_field_file(path: str) -> str:
    """Why ``path`` cannot be a field archive (missing, empty, not a zip/.npz), or '' when it may be one."""
    if not os.path.isfile(path):
        return f'field {path!r}: no such file'
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic != b'PK\x03\x04':
        return (f'field {path!r} is not a blur-field archive: expected an .npz written by save_field (e.g. '
                'scripts/estimate_field.py --save-field F.npz or scripts/make_synthetic_blur.py), got '
                f'{"an empty file" if not magic else "another kind of file"}')
    return ''


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    if not os.path.isfile(args.image):
        parser.exit(2, f'error: image {args.image!r}: no such file\n')
    problem = check_field_file(args.field)
    if problem:
        parser.exit(2, f'error: {problem}\n')

    import cv2

    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.cli import ScriptError, grid_step, read_image_rgb, size_text
    from basicsr_blurfield.fields import OffsetField, draw_kernel_grid, draw_trajectories, load_field

    try:
        photo = read_image_rgb(args.image)
        try:
            field = load_field(args.field)
        except (ValueError, KeyError, OSError) as error:
            raise ScriptError(f'field {args.field!r} cannot be read as a blur field: {error}') from None
        if photo.shape[:2] != (field.height, field.width):
            print(f'note: resizing the {size_text(*photo.shape[:2])} photo to the field size '
                  f'{size_text(field.height, field.width)}')
            photo = cv2.resize(photo, (field.width, field.height), interpolation=cv2.INTER_AREA)
        mode = args.mode
        if mode == 'auto':
            mode = 'trajectories' if isinstance(field, OffsetField) else 'kernels'
        step = grid_step(args.step, field.height, field.width)
        if mode == 'trajectories':
            if not isinstance(field, OffsetField):
                raise ScriptError(f'--mode trajectories needs an OffsetField, got {type(field).__name__}')
            picture = draw_trajectories(photo, field, step=step, index=args.index, scale=args.scale)
        else:
            picture = draw_kernel_grid(photo, field, step=step, index=args.index)
        imwrite(args.output, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    except (ScriptError, OSError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'wrote {args.output} ({type(field).__name__}, {mode}, step {step})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
