"""Draw a stored blur field over a photo: kernels as an enlarged grid, trajectories as coloured curves.

Usage::

    python scripts/visualize_field.py IMAGE FIELD.npz -o out.png [--step 32] [--mode auto|kernels|trajectories]
        [--scale 1.0] [--index 0]

``FIELD.npz`` is written by ``basicsr_blurfield.fields.save_field``. ``--mode auto`` draws trajectories for an
``OffsetField`` and kernels otherwise; kernels of an ``OffsetField`` are its bilinear splats. The photo is resized to
the field's size when they differ.
"""
import argparse
import sys

import cv2

from basicsr_blurfield.atomic import imwrite
from basicsr_blurfield.fields import OffsetField, draw_kernel_grid, draw_trajectories, load_field


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw a blur field (.npz from save_field) over a photo.')
    parser.add_argument('image', help='photo to draw on (any format OpenCV reads)')
    parser.add_argument('field', help='blur field archive written by save_field')
    parser.add_argument('-o', '--output', required=True, help='output PNG path')
    parser.add_argument('--step', type=int, default=32, help='grid spacing in pixels (default 32)')
    parser.add_argument('--mode', choices=('auto', 'kernels', 'trajectories'), default='auto')
    parser.add_argument('--scale', type=float, default=1.0, help='trajectory magnification (default 1)')
    parser.add_argument('--index', type=int, default=0, help='sample of the field batch to draw (default 0)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    photo = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if photo is None:
        print(f'error: cannot read image {args.image!r}', file=sys.stderr)
        return 2
    field = load_field(args.field)
    photo = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    if photo.shape[:2] != (field.height, field.width):
        print(f'note: resizing the {photo.shape[1]}x{photo.shape[0]} photo to the field size '
              f'{field.width}x{field.height}')
        photo = cv2.resize(photo, (field.width, field.height), interpolation=cv2.INTER_AREA)
    mode = args.mode
    if mode == 'auto':
        mode = 'trajectories' if isinstance(field, OffsetField) else 'kernels'
    if mode == 'trajectories':
        if not isinstance(field, OffsetField):
            print(f'error: --mode trajectories needs an OffsetField, got {type(field).__name__}', file=sys.stderr)
            return 2
        picture = draw_trajectories(photo, field, step=args.step, index=args.index, scale=args.scale)
    else:
        picture = draw_kernel_grid(photo, field, step=args.step, index=args.index)
    try:
        imwrite(args.output, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    except OSError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'wrote {args.output} ({type(field).__name__}, {mode}, step {args.step})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
