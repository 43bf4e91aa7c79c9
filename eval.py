"""Refine every coarse mask of a folder (BIG / relabeled-PASCAL layout) with Global+Local CascadePSP.

    python eval.py --dir DIR --output OUT [--model lite|cascadepsp|PATH] [--L 900] [--stride 450]
                   [--global_only] [--clear] [--device cuda|cpu] [--batch N] [--overwrite] [--visualize DIR]

DIR holds NAME_im.jpg|png, NAME_seg.png and optionally NAME_gt.png; OUT receives NAME_im/_seg/_gt.png
and NAME_mask.png (floor(probability * 255)). Then score OUT with eval_post.py.

    python eval.py --ade --dir SPLIT --output MASKS [--global_only]      # scene parsing, step 3

--ade reads a folder written by scripts/split_scene.py and refines every component inside its box,
writing MASKS/NAME_<class>.<id>_mask.png at the box's size (--global_only upscales crops under 224 px).
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from models.cascade import CascadeConfig
from models.checkpoint import CheckpointError
from models.hub import load_pretrained
from evaluation.scene_folders import refine_split_folder
from util.refine_folder import refine_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dir', required=True, help='input folder')
    parser.add_argument('--model', default='lite',
                        help="lite (bundled, default), cascadepsp (the authors' weights, downloaded once), "
                             "or a path: the released 'model' file or a train.py checkpoint")
    parser.add_argument('--output', required=True, help='output folder')
    parser.add_argument('--L', type=int, default=900, help='global resolution and local crop side (px)')
    parser.add_argument('--stride', type=int, default=450, help='local crop stride (px); crops step stride-32')
    parser.add_argument('--global_only', action='store_true', help='Global step only')
    parser.add_argument('--min_size', type=int, default=None,
                        help='with --global_only: upscale images whose long side is under this (default L; '
                             '224 for ADE20K-style objects)')
    parser.add_argument('--clear', action='store_true', help='empty the CUDA cache after each image')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=1, help='local crops per forward pass')
    parser.add_argument('--overwrite', action='store_true', help='redo images already refined in --output')
    parser.add_argument('--visualize', metavar='DIR', help='write a panel per image (NAME_panel.png) into DIR')
    parser.add_argument('--ade', action='store_true', help='scene parsing: DIR is a split folder (split_scene.py)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('eval')

    try:
        cfg = CascadeConfig(L=args.L, stride=args.stride, batch=args.batch)
    except ValueError as e:
        parser.error(str(e))
    try:
        model = load_pretrained(args.model).to(args.device)
    except CheckpointError as e:
        log.error('%s', e)
        return 2
    if args.ade:
        ade = refine_split_folder(model, args.dir, args.output, args.L, args.stride, args.global_only,
                                  args.min_size or 224, args.batch, args.overwrite)
        log.info('%d component(s) refined, %d already done, %d failed', ade.done, ade.skipped, len(ade.failures))
        return 1 if ade.failures else 0
    report = refine_folder(model, args.dir, args.output, cfg, args.global_only, args.min_size,
                           overwrite=args.overwrite, clear_cache=args.clear, visualize_dir=args.visualize)
    log.info('%s', report.summary())
    if report.failures:
        log.error('%d input(s) failed; each is reported above by file name', len(report.failures))
    return 1 if report.failures else 0


if __name__ == '__main__':
    sys.exit(main())
