"""Score refined masks with IoU and mBA exactly as the authors' eval_post did.

    python eval_post.py --dir OUT [--output DIR] [--mask_prefix 0.125_] [--workers N] [--multiclass]

Reads NAME_gt.png, NAME_seg.png and {mask_prefix}NAME_mask.png; writes results_post.txt (the authors'
wording) and results_post.json (the same numbers and a per-image table). A refined mask of another size than
its ground truth is resized to it as the authors' eval_post does (PIL bilinear; nearest for --multiclass label
maps), with a warning naming it; --strict_sizes refuses such a folder instead. With a prefix the files are
named {prefix}results_post.*, so several scales of one run can be scored into one folder.

    python eval_post.py --ade --mask_dir MASKS --seg_dir SEG --gt_dir GT --split_dir SPLIT --output OUT
                        [--visualize]                                   # scene parsing, step 4

--ade fuses the refined components into label maps and scores them as the authors' eval_post_ade.py
(pixel accuracy, per-class IoU, mIoU over the 150 classes, multi-class mBA).
"""
from __future__ import annotations

import argparse
import logging
import sys

from evaluation.scene_folders import fuse_and_score_folder
from util.atomic import check_writable, ensure_folder
from util.image_io import ImageReadError
from evaluation.post_eval import evaluate_folder, format_results, results_files, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dir', help='folder with NAME_gt/_seg/_mask.png')
    parser.add_argument('--output', help='where to write results_post.* (default: --dir)')
    parser.add_argument('--mask_prefix', default='', help="prefix of the refined masks, e.g. '0.125_'")
    parser.add_argument('--workers', type=int, default=None, help='processes (default: all cores)')
    parser.add_argument('--multiclass', action='store_true',
                        help='label maps (scene parsing): union of per-class bands, label 0 is void')
    parser.add_argument('--strict_sizes', action='store_true',
                        help="refuse refined masks whose size differs from their ground truth's (default: resize "
                             "them to it, PIL bilinear, nearest with --multiclass, as the authors' eval_post does)")
    parser.add_argument('--ade', action='store_true', help='scene parsing: fuse components and score label maps')
    for name in ('mask_dir', 'seg_dir', 'gt_dir', 'split_dir'):
        parser.add_argument(f'--{name}', help='with --ade')
    parser.add_argument('--visualize', action='store_true', help='with --ade: write colour-coded NAME_labels.png')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('eval_post')
    if args.ade:
        missing = [f'--{n}' for n in ('mask_dir', 'seg_dir', 'gt_dir', 'split_dir', 'output') if not getattr(args, n)]
        if missing:
            parser.error(f'--ade needs {", ".join(missing)}')
        try:
            ensure_folder(args.output)
            _, printed = fuse_and_score_folder(args.mask_dir, args.seg_dir, args.gt_dir, args.split_dir,
                                               args.output, args.visualize)
        except (ImageReadError, ValueError, OSError) as e:
            log.error('%s', e)
            return 1
        sys.stdout.write(printed)
        log.info('wrote %s/results_post.txt and results_post.json', args.output)
        return 0
    if not args.dir:
        parser.error('--dir is required (or --ade with its folders)')

    stem = f'{args.mask_prefix}results_post'
    try:
        ensure_folder(args.output or args.dir)
        for path in results_files(args.output or args.dir, stem):  # before the work, not after it
            check_writable(path)
    except OSError as e:
        log.error('%s', e)
        return 2
    summary, scores, problems = evaluate_folder(args.dir, args.mask_prefix, args.workers, args.multiclass,
                                               strict_sizes=args.strict_sizes)
    if problems:
        for p in problems:
            log.error(p)
        log.error('%d problem(s); no results written (a partial folder is not comparable)', len(problems))
        return 1
    txt, js = write_results(args.output or args.dir, summary, scores, stem)
    sys.stdout.write(format_results(summary))
    log.info('wrote %s and %s', txt, js)
    return 0


if __name__ == '__main__':
    sys.exit(main())
