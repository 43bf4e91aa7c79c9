"""Score refined masks with IoU and mBA exactly as the authors' eval_post did.

    python eval_post.py --dir OUT [--output DIR] [--mask_prefix 0.125_] [--workers N] [--multiclass]

Reads NAME_gt.png, NAME_seg.png and {mask_prefix}NAME_mask.png; writes results_post.txt (the authors'
wording) and results_post.json (the same numbers and a per-image table). With a prefix the files are
named {prefix}results_post.*, so several scales of one run can be scored into one folder.
"""
from __future__ import annotations

import argparse
import logging
import sys

from util.post_eval import evaluate_folder, format_results, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dir', required=True, help='folder with NAME_gt/_seg/_mask.png')
    parser.add_argument('--output', help='where to write results_post.* (default: --dir)')
    parser.add_argument('--mask_prefix', default='', help="prefix of the refined masks, e.g. '0.125_'")
    parser.add_argument('--workers', type=int, default=None, help='processes (default: all cores)')
    parser.add_argument('--multiclass', action='store_true',
                        help='label maps (scene parsing): union of per-class bands, label 0 is void')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('eval_post')

    summary, scores, problems = evaluate_folder(args.dir, args.mask_prefix, args.workers, args.multiclass)
    if problems:
        for p in problems:
            log.error(p)
        log.error('%d problem(s); no results written (a partial folder is not comparable)', len(problems))
        return 1
    txt, js = write_results(args.output or args.dir, summary, scores, f'{args.mask_prefix}results_post')
    sys.stdout.write(format_results(summary))
    log.info('wrote %s and %s', txt, js)
    return 0


if __name__ == '__main__':
    sys.exit(main())
