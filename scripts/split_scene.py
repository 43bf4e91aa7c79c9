"""Scene parsing, step 2: split every label map into per-class components (the authors' ade_expand_inst.py).

    python -m scripts.split_scene --im_dir IM --gt_dir GT --seg_dir SEG --output SPLIT
    python -m scripts.split_scene IM GT SEG SPLIT            # the authors' positional order

IM/NAME.jpg, GT/NAME.png and SEG/NAME.png (labels 1..150, 0 = void; shift model outputs first with
scripts/ade_plus_one.py). Writes SPLIT/NAME_<class>.<id>_seg.png, _gt.png and NAME_im.jpg.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evaluation.scene_folders import split_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('positional', nargs='*', metavar='IM GT SEG OUT', help="the authors' positional order")
    for name in ('im_dir', 'gt_dir', 'seg_dir', 'output'):
        parser.add_argument(f'--{name}')
    args = parser.parse_args(argv)
    if args.positional:
        if len(args.positional) != 4 or any((args.im_dir, args.gt_dir, args.seg_dir, args.output)):
            parser.error(f'give the four folders IM GT SEG OUT (got {len(args.positional)}), or the four --flags '
                         'instead, not both')
        args.im_dir, args.gt_dir, args.seg_dir, args.output = args.positional
    if not all((args.im_dir, args.gt_dir, args.seg_dir, args.output)):
        parser.error('--im_dir, --gt_dir, --seg_dir and --output are required')
    if missing := [d for d in (args.im_dir, args.gt_dir, args.seg_dir) if not Path(d).is_dir()]:
        parser.error(f'no such input folder: {", ".join(missing)}')
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    report = split_folder(args.im_dir, args.gt_dir, args.seg_dir, args.output)
    logging.info('%d label map(s) split into %s, %d failed', report.done, args.output, len(report.failures))
    return 1 if report.failures else 0


if __name__ == '__main__':
    sys.exit(main())
