"""Transfer the blur of a sharp/blurry pair to another sharp image, or synthesise random blur, through the encoded
blur-kernel space of Tran et al. (CVPR 2021, §3.4): ``target_blurry = F(target, G(sharp, blurry))``.

    python scripts/transfer_blur.py --sharp X.png --blurry Y.png --target Z.png -o out.png \\
        --extractor net_g.pth --operator net_f.pth [--opt options/blur_kernel_space_gopro.yml] [--code-mode global]
    python scripts/transfer_blur.py --target Z.png -o out.png --random-code --seed 3 --operator net_f.pth

Checkpoints: ours (``params``, e.g. ``experiments/<name>/models/net_{g,f}_latest.pth``) or the authors'
``KernelWizard`` file (``GOPRO_woVAE.pth``) given to both ``--extractor`` and ``--operator``. Network sizes come from
``network_g`` / ``network_f`` of ``--opt`` (default: the published sizes). Any image sizes: X and Y must match each
other; Z may have any size (the code map is resampled, ``--code-mode resample``, or pooled to one code, ``global``).
``--random-code`` draws the code from the VAE prior N(0, I) (scaled by ``--code-scale``) instead of a pair.
Grey images are read as three equal channels. The output is clipped to [0, 1] and written atomically.
"""
import argparse
import os


def read_rgb(path: str, what: str):
    """An image file as (1, 3, H, W) float32 RGB in [0, 1] (``cli.read_image_rgb``'s checks and messages)."""
    import torch

    from basicsr_blurfield.cli import read_image_rgb

    return torch.from_numpy(read_image_rgb(path, what)).permute(2, 0, 1)[None].float() / 255


def network_options(opt_path: str = None) -> tuple:
    """``network_g`` and ``network_f`` of an option file (None, None: published sizes)."""
    import yaml

    if opt_path is None:
        return None, None
    with open(opt_path) as handle:
        opt = yaml.safe_load(handle)
    missing = [key for key in ('network_g', 'network_f') if key not in opt]
    if missing:
        raise KeyError(f'{opt_path}: expected network_g and network_f sections, missing {missing}')
    return opt['network_g'], opt['network_f']


def transfer(sharp, blurry, target, extractor, operator, code_mode: str = 'resample'):
    """F(target, G(sharp, blurry)) clipped to [0, 1]: (1, 3, H', W') for a (1, 3, H, W) pair and any target size."""
    if sharp.shape != blurry.shape:
        raise ValueError(f'--sharp and --blurry must have the same size, got {sharp.shape[-1]}x{sharp.shape[-2]} and '
                         f'{blurry.shape[-1]}x{blurry.shape[-2]} (they are one pair)')
    import torch

    operator.code_mode = code_mode
    with torch.no_grad():
        return operator(target, extractor(sharp, blurry)).clamp(0, 1)


def synthesize(target, operator, generator, scale: float = 1.0):
    """F(target, scale * z), z ~ N(0, I) of the target's code grid (``generator``: a torch.Generator), clipped to
    [0, 1] (random blur synthesis)."""
    import torch

    code = scale * operator.random_code(target.shape[0], *target.shape[-2:], generator=generator)
    with torch.no_grad():
        return operator(target, code).clamp(0, 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sharp', help='sharp image of the source pair')
    parser.add_argument('--blurry', help='blurry image of the source pair (same size as --sharp)')
    parser.add_argument('--target', required=True, help='sharp image that receives the blur (any size)')
    parser.add_argument('-o', '--output', required=True, help='output image (PNG or any format OpenCV writes)')
    parser.add_argument('--extractor', help='checkpoint of G (ours or the authors\' KernelWizard file)')
    parser.add_argument('--operator', required=True, help='checkpoint of F (ours or the authors\' KernelWizard file)')
    parser.add_argument('--opt', help='option file whose network_g / network_f give the sizes (default: published)')
    parser.add_argument(
        '--code-mode',
        default='resample',
        help='how a code of another grid size is fitted to the target: resample or global')
    parser.add_argument('--random-code', action='store_true', help='draw the code from N(0, I) instead of a pair')
    parser.add_argument('--code-scale', type=float, default=1.0, help='scale of the random code')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random code')
    args = parser.parse_args(argv)

    if args.random_code == (args.sharp is not None or args.blurry is not None):
        parser.error('give either --sharp and --blurry (a pair to transfer) or --random-code, not both or neither')
    if not args.random_code and (args.sharp is None or args.blurry is None or args.extractor is None):
        parser.error('blur transfer needs --sharp, --blurry and --extractor')
    for path in (args.extractor, args.operator, args.opt):
        if path is not None and not os.path.isfile(path):
            parser.exit(2, f'error: file not found: {path!r}\n')

    import cv2
    import torch

    from basicsr_blurfield.archs.blur_kernel_space_arch import CODE_MODES, load_frozen_blur_space
    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.cli import ScriptError, size_text

    if args.code_mode not in CODE_MODES:
        parser.error(f'--code-mode: expected one of {CODE_MODES}, got {args.code_mode!r}')
    try:
        target = read_rgb(args.target, '--target')
        pair = None if args.random_code else (read_rgb(args.sharp, '--sharp'), read_rgb(args.blurry, '--blurry'))
        extractor_opt, operator_opt = network_options(args.opt)
        extractor, operator = load_frozen_blur_space(extractor_opt, operator_opt, args.extractor, args.operator)
        if args.random_code:
            out = synthesize(target, operator, torch.Generator().manual_seed(args.seed), args.code_scale)
        else:
            out = transfer(*pair, target, extractor, operator, args.code_mode)
        image = (out[0].permute(1, 2, 0).numpy() * 255).round().astype('uint8')
        imwrite(args.output, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except KeyError as error:
        parser.exit(2, f'error: {error.args[0]}\n')
    except (ScriptError, OSError, ValueError) as error:
        parser.exit(2, f'error: {error}\n')
    print(f'wrote {args.output} ({size_text(*image.shape[:2])})')


if __name__ == '__main__':
    main()
