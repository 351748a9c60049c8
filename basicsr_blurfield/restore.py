"""Restore a blurry photo with a blur field: non-blind deconvolution or blind deblurring in the blur-kernel space.

    python -m basicsr_blurfield.restore --method cg --blurry IMG --field F.npz -o OUT.png [--report]
    python -m basicsr_blurfield.restore --method rl_tv --blurry IMG --estimator KE.pth -o OUT.png [--iters 30]
    python -m basicsr_blurfield.restore --method blind_bks --blurry IMG --estimator F.pth -o OUT.png [--iters 1000]

Methods: ``rl_tv`` (Richardson-Lucy + TV, Carbajal et al. §4.1) and ``cg`` (conjugate gradients on the normal
equations with a gradient prior, or with a TV prior by half-quadratic rounds: ``--prior tv``) deconvolve with a blur
field, read from ``--field`` (a ``save_field`` archive) or estimated by ``--estimator`` (a checkpoint of
``FlowKernelEstimator`` / any UFPNet-family network, ``BasisKernelNet`` or ``MotionOffsetNet``; the kind and sizes are
read off the weights). ``blind_bks`` runs Algorithm 1 of Tran et al. with the frozen blur operator family F of
``--estimator`` (a ``BlurOperatorFamily`` or published KernelWizard checkpoint). The result is written atomically;
``--init-code C.npy`` first fits the code generator to a given code (e.g. the mean code of F's training pairs:
without it F starts from codes it never saw); ``--code-prior P.npz`` (arrays ``mean`` and ``std``, e.g. from
``benchmarks/bench_blind_deblur.py --save-code-prior``) adds the code's Gaussian negative log-likelihood under F's
training codes to the objective, weighted by ``--code-prior-weight``, and starts the code at ``mean`` unless
``--init-code`` is given (our options, not in the paper); ``--tta T`` / ``--smooth-sigma S`` average an estimated
field over T flips / transposes of the photo / over neighbouring pixels (our option). ``--prior-width`` /
``--prior-levels`` shrink ``blind_bks``'s deep image prior for a CPU.
``--report`` also writes ``<OUT>_report.png``: blurry | field (kernels or trajectories drawn on the photo; for
``blind_bks`` the re-blurred result F(x, k)) | result. Errors print ``error: ...`` and exit with status 2.
"""
import argparse
import os
import sys

from basicsr_blurfield.cli import add_averaging_arguments

METHODS = ('rl_tv', 'cg', 'blind_bks')
DEFAULT_ITERS = {'rl_tv': 30, 'cg': None, 'blind_bks': 1000}


class RestoreError(Exception):
    """A user mistake the command reports as ``error: ...`` (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m basicsr_blurfield.restore',
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:6]))
    parser.add_argument('--method', required=True, choices=METHODS, help='restoration method')
    parser.add_argument('--blurry', required=True, help='blurry photo (any format OpenCV reads)')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--field', help='blur field of the photo (.npz from save_field), for rl_tv / cg')
    source.add_argument(
        '--estimator',
        help='checkpoint (or reference-model name, e.g. ufpnet-ke-reference): field estimator (rl_tv '
        '/ cg) or blur operator F (blind_bks)')
    parser.add_argument('-o', '--output', required=True, help='restored image (PNG or any format OpenCV writes)')
    parser.add_argument(
        '--iters',
        type=int,
        default=None,
        help='rl_tv: iterations (30); cg: CG steps (12) or, with --prior tv, half-quadratic rounds of 8 '
        'steps (3); blind_bks: most outer steps (1000)')
    parser.add_argument('--prior', choices=('gradient', 'tv'), default='gradient', help='cg prior (default gradient)')
    parser.add_argument(
        '--weight', type=float, default=None, help='prior weight (rl_tv 2e-3; cg 4e-3 gradient / 1e-3 tv)')
    parser.add_argument(
        '--precondition',
        choices=('none', 'auto', 'circulant', 'mixture'),
        default='none',
        help='cg: preconditioned CG; auto = mixture on basis fields (region-wise blur), circulant on the others '
        '(default none)')
    parser.add_argument(
        '--mode',
        choices=('alternating', 'joint'),
        default='alternating',
        help='blind_bks: Algorithm 1 (alternating) or the released joint updates')
    parser.add_argument(
        '--perceptual-weights',
        default=None,
        help='blind_bks --mode joint: torchvision vgg19 weights for the perceptual term (optional)')
    parser.add_argument(
        '--constraint',
        choices=('quadratic', 'bilinear'),
        default='quadratic',
        help='two-endpoint MotionOffsetNet checkpoints: trajectory constraint (default quadratic)')
    parser.add_argument('--seed', type=int, default=0, help='blind_bks: seed of the deep image priors')
    parser.add_argument('--warmup', type=int, default=100, help='blind_bks: warm-up steps of the image prior (100)')
    parser.add_argument(
        '--prior-width',
        type=int,
        default=128,
        help='blind_bks: width of the deep image prior (released 128; benchmarks/bench_blind_deblur.py uses 32 on a '
        'CPU)')
    parser.add_argument(
        '--prior-levels',
        type=int,
        default=5,
        help='blind_bks: levels of the deep image prior (released 5; the benchmark 4)')
    parser.add_argument(
        '--init-code',
        default=None,
        help='blind_bks: .npy kernel code (1, D, 1, 1) or (1, D, h, w) the code generator is first fitted to, e.g. '
        'the mean code of training pairs (benchmarks/bench_blind_deblur.py --save-init-code)')
    parser.add_argument(
        '--code-prior',
        default=None,
        help='blind_bks: .npz with arrays mean and std, (1, D, 1, 1) or (1, D, h, w): a Gaussian over F\'s training '
        'codes whose negative log-likelihood joins the objective; the code starts at mean unless --init-code is given '
        '(benchmarks/bench_blind_deblur.py --save-code-prior)')
    parser.add_argument(
        '--code-prior-weight', type=float, default=1e-2, help='blind_bks: weight of --code-prior (default 1e-2)')
    add_averaging_arguments(parser, 'rl_tv / cg with --estimator: ')
    parser.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda (default cpu)')
    parser.add_argument('--save-field', default=None, help='also save the estimated field (.npz)')
    parser.add_argument('--report', action='store_true', help='also write <output>_report.png (side by side)')
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Checks the arguments and files before anything heavy is imported or loaded."""
    if not os.path.isfile(args.blurry):
        raise RestoreError(f'--blurry {args.blurry}: no such file')
    if args.method == 'blind_bks':
        if args.estimator is None:
            raise RestoreError('--method blind_bks needs --estimator F.pth (a BlurOperatorFamily checkpoint); '
                               '--field is for rl_tv and cg')
    elif args.field is None and args.estimator is None:
        raise RestoreError(f'--method {args.method} needs --field F.npz or --estimator CKPT')
    for name in ('init_code', 'code_prior'):
        if getattr(args, name) is not None and args.method != 'blind_bks':
            raise RestoreError(f'--{name.replace("_", "-")} is for --method blind_bks, not {args.method}')
    if not 0 <= args.code_prior_weight < float('inf'):
        raise RestoreError(f'--code-prior-weight: expected a finite number >= 0, got {args.code_prior_weight}')
    if (args.smooth_sigma or args.tta > 1) and (args.method == 'blind_bks' or args.estimator is None):
        raise RestoreError('--smooth-sigma and --tta average an estimated field: use them with --method rl_tv or cg '
                           'and --estimator')
    if not 0 <= args.smooth_sigma < float('inf'):
        raise RestoreError(f'--smooth-sigma: expected a finite number of pixels >= 0, got {args.smooth_sigma}')
    for name in ('field', 'estimator', 'perceptual_weights', 'init_code', 'code_prior'):
        path = getattr(args, name)
        # a bare --estimator word may name a shipped reference model; it is resolved (or refused) when loaded
        maybe_name = name == 'estimator' and path is not None and os.sep not in path and '.' not in path
        if path is not None and not os.path.isfile(path) and not maybe_name:
            raise RestoreError(f'--{name.replace("_", "-")} {path}: no such file')
    if args.iters is not None and args.iters < 0:
        raise RestoreError(f'--iters: expected a non-negative number, got {args.iters}')
    if args.weight is not None and not (args.weight > 0 or (args.weight == 0 and args.method == 'rl_tv')):
        raise RestoreError(f'--weight: expected a positive number (0 only for rl_tv: plain Richardson-Lucy), '
                           f'got {args.weight}')
    if args.prior_width < 1 or args.prior_levels < 1:
        raise RestoreError(f'--prior-width / --prior-levels: expected positive numbers, got {args.prior_width} / '
                           f'{args.prior_levels}')
    if args.warmup < 0:
        raise RestoreError(f'--warmup: expected a non-negative number, got {args.warmup}')
    if os.path.splitext(args.output)[1].lower() not in ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'):
        raise RestoreError(f'-o {args.output}: expected an image file name (.png, .jpg, .bmp, .tif, .webp)')


def read_image(path: str, device):
    """Reads a photo as (1, 3, H, W) float32 RGB in [0, 1] (16-bit files keep their precision), with the checks of
    :func:`basicsr_blurfield.cli.read_image_rgb` (missing, empty, corrupt, too small)."""
    from basicsr_blurfield.cli import ScriptError, read_image_rgb, rgb_tensor

    try:
        return rgb_tensor(read_image_rgb(path, '--blurry', any_depth=True)).to(device)
    except ScriptError as error:
        raise RestoreError(str(error)) from None


def to_bgr8(image):
    """(1, 3, H, W) in [0, 1] -> uint8 (H, W, 3) BGR."""
    import cv2
    import numpy as np

    rgb = image[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.round(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def code_tensor(code, label: str, device):
    """A kernel code array (1, D, 1, 1) or (1, D, h, w) of floats as a float32 tensor; its fit to F and the image is
    checked by :func:`~basicsr_blurfield.restoration.blind_deblur.blind_deblur`."""
    import numpy as np
    import torch

    if code.ndim != 4 or code.shape[0] != 1 or not np.issubdtype(code.dtype, np.floating) or code.size == 0:
        raise RestoreError(f'{label}: expected a float array of shape (1, D, 1, 1) or (1, D, h, w), got '
                           f'{code.dtype} {code.shape}')
    if not np.isfinite(code).all():
        raise RestoreError(f'{label}: the code holds NaN or infinite values')
    return torch.from_numpy(code.astype(np.float32)).to(device)


def load_init_code(path: str, device):
    """A kernel code saved with ``numpy.save`` (see :func:`code_tensor`)."""
    import numpy as np

    try:
        code = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise RestoreError(f'--init-code {path}: not a .npy array written by numpy.save ({error})') from None
    if not isinstance(code, np.ndarray):
        raise RestoreError(f'--init-code {path}: expected one array (.npy), got an archive of several (.npz)')
    return code_tensor(code, f'--init-code {path}', device)


def load_code_prior(path: str, device) -> tuple:
    """``(mean, std)`` of a code Gaussian saved with ``numpy.savez`` (arrays ``mean`` and ``std``, see
    :func:`code_tensor`; std > 0)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, AttributeError, TypeError) as error:
        raise RestoreError(f'--code-prior {path}: not a .npz archive written by numpy.savez ({error})') from None
    if set(arrays) != {'mean', 'std'}:
        raise RestoreError(f'--code-prior {path}: expected the arrays mean and std, got {sorted(arrays)}')
    mean, std = (code_tensor(arrays[name], f'--code-prior {path} {name}', device) for name in ('mean', 'std'))
    if mean.shape != std.shape or not bool((std > 0).all()):
        raise RestoreError(f'--code-prior {path}: mean and std must have one shape and std > 0, got '
                           f'{tuple(mean.shape)} / {tuple(std.shape)}, min std {float(std.min()):.3g}')
    return mean, std


def load_field_for(path: str, blurry, device):
    """A saved field, checked against the photo."""
    from basicsr_blurfield.fields import load_field

    try:
        field = load_field(path, device=device)
    except (ValueError, TypeError, OSError, EOFError) as error:
        raise RestoreError(f'--field {path}: not a blur-field archive written by save_field ({error})') from None
    if (field.height, field.width) != tuple(blurry.shape[-2:]):
        raise RestoreError(f'--field {path}: the field is {field.height}x{field.width} but the photo is '
                           f'{blurry.shape[-2]}x{blurry.shape[-1]}; estimate the field on this photo (--estimator) '
                           'or resize the photo to the field')
    return field.to(dtype=blurry.dtype)


def estimate(args: argparse.Namespace, blurry):
    """Loads ``--estimator`` and returns (kind, network)."""
    from basicsr_blurfield.restoration.estimators import ESTIMATOR_KINDS, OPERATOR_KIND, load_network

    try:
        kind, net = load_network(args.estimator, constraint=args.constraint, device=args.device)
    except (ValueError, OSError) as error:
        raise RestoreError(f'--estimator {error}') from None
    if args.method == 'blind_bks' and kind != OPERATOR_KIND:
        raise RestoreError(f'--estimator {args.estimator}: --method blind_bks needs a {OPERATOR_KIND} checkpoint '
                           f'(F of the blur-kernel space), got a {kind} one (use it with --method rl_tv or cg)')
    if args.method != 'blind_bks' and kind not in ESTIMATOR_KINDS:
        raise RestoreError(f'--estimator {args.estimator}: a {kind} is no field estimator; use it with --method '
                           f'blind_bks, or give one of {ESTIMATOR_KINDS}')
    return kind, net


def draw_field(blurry, field):
    """The field drawn over the photo: trajectories for an OffsetField, kernels otherwise (uint8 RGB)."""
    from basicsr_blurfield.fields import OffsetField, draw_kernel_grid, draw_trajectories

    step = max(16, min(blurry.shape[-2:]) // 8)
    if isinstance(field, OffsetField):
        return draw_trajectories(blurry, field, step=step)
    return draw_kernel_grid(blurry, field, step=step)


def write_report(path: str, panels) -> None:
    """Writes the labelled panels ``[(title, uint8 BGR image)]`` side by side, atomically."""
    import cv2
    import numpy as np

    from basicsr_blurfield.atomic import imwrite

    tiles = []
    for title, image in panels:
        tile = np.ascontiguousarray(image)
        cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    imwrite(path, np.concatenate(tiles, axis=1))


def run(args: argparse.Namespace) -> str:
    """Runs one restoration; returns the summary line printed on success."""
    import time

    import cv2
    import torch

    import basicsr_blurfield  # noqa: F401  (applies compat, registers the archs)
    from basicsr_blurfield.atomic import imwrite
    from basicsr_blurfield.fields import save_field

    blurry = read_image(args.blurry, args.device)
    iters = DEFAULT_ITERS[args.method] if args.iters is None else args.iters
    start = time.perf_counter()
    if args.method == 'blind_bks':
        from basicsr_blurfield.restoration.blind_deblur import blind_deblur, vgg_perceptual

        _, operator = estimate(args, blurry)
        perceptual = vgg_perceptual(args.perceptual_weights) if args.perceptual_weights else None
        init_code = load_init_code(args.init_code, args.device) if args.init_code else None
        code_prior = load_code_prior(args.code_prior, args.device) if args.code_prior else None
        if init_code is None and code_prior is not None:
            init_code = code_prior[0]
        try:
            result = blind_deblur(
                blurry,
                operator,
                mode=args.mode,
                num_iter=iters,
                warmup_iter=args.warmup,
                seed=args.seed,
                perceptual=perceptual,
                init_code=init_code,
                code_prior=code_prior,
                code_prior_weight=args.code_prior_weight,
                num_feat=args.prior_width,
                num_levels=args.prior_levels)
        except ValueError as error:
            if init_code is None and code_prior is None:
                raise
            given = ' / '.join(f'--{name.replace("_", "-")} {getattr(args, name)}'
                               for name in ('init_code', 'code_prior') if getattr(args, name))
            raise RestoreError(f'{given}: {error}') from None
        restored, middle = result.image, ('F(x, k)', to_bgr8(result.reblurred))
        detail = f'{result.steps} steps{" (stopped early)" if result.stopped_early else ""}'
    else:
        from basicsr_blurfield.reference_models import averaged_estimator
        from basicsr_blurfield.restoration.deconvolution import deconvolve_cg, richardson_lucy_tv

        if args.field is not None:
            field, source = load_field_for(args.field, blurry, args.device), args.field
        else:
            kind, net = estimate(args, blurry)
            net = averaged_estimator(net, args.tta, args.smooth_sigma)
            with torch.no_grad():
                field = net(blurry).detach()
            source = f'{kind} {args.estimator}'
        if args.save_field:
            save_field(args.save_field, field)
        try:
            if args.method == 'rl_tv':
                weight = 2e-3 if args.weight is None else args.weight
                restored = richardson_lucy_tv(blurry, field, num_iter=iters, tv_weight=weight)
            else:
                budget = {}
                if iters is not None:
                    budget = {'cg_iter': iters} if args.prior == 'gradient' else {'num_iter': iters}
                precondition = {'none': False, 'auto': True}.get(args.precondition, args.precondition)
                restored = deconvolve_cg(
                    blurry, field, prior=args.prior, weight=args.weight, precondition=precondition, **budget)
        except (ValueError, TypeError) as error:
            raise RestoreError(f'{source}: {error}') from None
        middle = (f'{type(field).__name__}', cv2.cvtColor(draw_field(blurry, field), cv2.COLOR_RGB2BGR))
        detail = f'field from {source}'
    seconds = time.perf_counter() - start
    imwrite(args.output, to_bgr8(restored))
    size = f'{blurry.shape[-2]}x{blurry.shape[-1]}'
    summary = f'{args.output}: {args.method} on a {size} photo in {seconds:.1f} s ({detail})'
    if args.report:
        report = f'{os.path.splitext(args.output)[0]}_report.png'
        write_report(report, [('blurry', to_bgr8(blurry)), middle, (args.method, to_bgr8(restored))])
        summary += f'; report {report}'
    return summary


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        print(run(args))
    except RestoreError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
