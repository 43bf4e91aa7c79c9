"""Refine your own image and mask (any segmenter's output) and look at the result.

    python refine.py IMAGE MASK -o OUT.png [--visualize PANEL.png] [--cutout CUT.png] [--binary]
                     [--fast] [--L 900] [--model lite|cascadepsp|PATH] [--device cpu|cuda] [--resize_mask]
    python refine.py IMAGE LABELS.png --instances -o OUT_LABELS.png     # every object of a label map
    python refine.py --dir IN --output OUT [--mask_suffix .png] [--visualize] [--cutout]

IMAGE: any image PIL reads (JPEG with its EXIF orientation, PNG, WebP, TIFF; grey, RGBA or 16-bit).
MASK: grey, RGB, {0,1} labels, soft (thresholded at 127), or an RGBA cut-out (its alpha is the mask).
OUT: 8-bit soft mask floor(p * 255) at the image's size (--binary: 0/255).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from inference.cli import add_model_flags, parse_with_model
from inference.files import RefineOptions, find_pairs, refine_directory, refine_file
from inference.refiner import Refiner
from models.checkpoint import CheckpointError
from util.devices import DeviceError
from util.atomic import OverwritesInput, check_output_file, ensure_folder, refuse_overwriting_inputs
from util.image_io import ImageReadError, pixel_limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', nargs='?', help='the image (single mode)')
    parser.add_argument('mask', nargs='?', help='its coarse mask, or an instance label map with --instances')
    parser.add_argument('-o', '--output', help='output mask file (single mode) or folder (--dir)')
    parser.add_argument('--dir', help='folder of X.jpg|png|webp with masks X<mask_suffix>')
    parser.add_argument('--mask_suffix', default='.png', help='with --dir: mask name = image stem + this')
    parser.add_argument('--visualize', nargs='?', const=True, default=None,
                        help='write the panel (single mode: its path; --dir: X_panel.png)')
    parser.add_argument('--cutout', nargs='?', const=True, default=None,
                        help='write the RGBA cut-out (single mode: its path; --dir: X_cutout.png)')
    parser.add_argument('--binary', action='store_true', help='write 0/255 (threshold 127) instead of the soft mask')
    parser.add_argument('--instances', action='store_true', help='MASK is a label map (0 = background): '
                        'refine every object and write a label map')
    parser.add_argument('--resize_mask', action='store_true', help='resize a mask of another size (nearest)')
    add_model_flags(parser)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('refine')
    try:
        args, model, cfg = parse_with_model(parser, argv, {'batch': 'crops / object windows per forward pass'})
    except (CheckpointError, DeviceError) as e:
        log.error('%s', e)
        return 2
    if bool(args.dir) == bool(args.image):
        parser.error('give IMAGE MASK -o OUT, or --dir IN --output OUT')
    if args.image and (not args.mask or not args.output):
        parser.error('single mode needs IMAGE MASK -o OUT')
    if args.dir and not args.output:
        parser.error('--dir needs --output')
    if args.image and (args.visualize is True or args.cutout is True):
        parser.error('in single mode, --visualize and --cutout take a file name')
    try:
        if args.dir:
            suffixes = ['.png'] + ['_panel.png'] * bool(args.visualize) + ['_cutout.png'] * bool(args.cutout)
            planned = [Path(args.output) / f'{name}{suffix}' for name, _, _ in find_pairs(args.dir, args.mask_suffix)[0]
                       for suffix in suffixes]
            inputs = [p for p in Path(args.dir).iterdir()] if Path(args.dir).is_dir() else []
            # Outputs of two images that collide with each other are refused per image by the runner, which
            # refines the others; here, before any work, no output may be an input.
            refuse_overwriting_inputs({f'--output file {p.name}': p for p in planned}, {p.name: p for p in inputs})
            ensure_folder(args.output)
        else:
            outputs = {'-o': args.output, '--visualize': args.visualize, '--cutout': args.cutout}
            refuse_overwriting_inputs(outputs, {'IMAGE': args.image, 'MASK': args.mask})
            for flag, path in outputs.items():  # before the work: a name that cannot be written
                if path is not None:
                    check_output_file(path, flag)
    except (OverwritesInput, OSError) as e:
        log.error('%s', e)
        return 2
    opts = RefineOptions(binary=args.binary, resize_mask=args.resize_mask, instances=args.instances, cfg=cfg)
    # A command line owns its process: it keeps freed memory for the whole run (util.malloc).
    refiner = Refiner(model=model, device=args.device, precision=args.precision, exact=args.exact,
                      keep_freed_memory=True)
    with pixel_limit(args.max_pixels):
        return _run(refiner, args, opts, log)


def _run(refiner: Refiner, args: argparse.Namespace, opts: RefineOptions, log: logging.Logger) -> int:
    if args.dir:
        report = refine_directory(refiner, args.dir, args.output, args.mask_suffix, opts,
                                  bool(args.visualize), bool(args.cutout))
        log.info('%s', report.summary())
        return 1 if report.failures else 0
    try:
        refine_file(refiner, args.image, args.mask, args.output, opts, args.visualize, args.cutout)
    except (ImageReadError, ValueError, OSError) as e:
        log.error('%s', e)
        return 1
    log.info('wrote %s', args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
