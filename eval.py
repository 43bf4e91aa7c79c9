"""Refine every coarse mask of a folder (BIG / relabeled-PASCAL layout) with the model's method
(CascadePSP's Global+Local for lite and cascadepsp).

    python eval.py --dir DIR --output OUT [--model lite|cascadepsp|PATH] [--L 900] [--stride 450]
                   [--global_only] [--clear] [--device cuda|cpu] [--batch N] [--overwrite] [--visualize DIR]

DIR holds NAME_im.jpg|png, NAME_seg.png and optionally NAME_gt.png; OUT receives NAME_im/_seg/_gt.png
and NAME_mask.png (floor(probability * 255)). The method's inference settings are flags (-h lists
them for --model). Then score OUT with eval_post.py.

    torchrun --nproc_per_node=N eval.py --dir DIR --output OUT ...       # N processes (GPUs), a share each

    python eval.py --ade --dir SPLIT --output MASKS [--global_only]      # scene parsing, step 3

    python eval.py --method magnet --dataset deepglobe --datalist LIST ...   # MagNet (see evaluation/magnet.py)

--ade reads a folder written by scripts/split_scene.py and refines every component inside its box,
writing MASKS/NAME_<class>.<id>_mask.png at the box's size (--global_only upscales crops under 224 px).
"""
from __future__ import annotations

import argparse
import logging
import sys

from inference.cli import add_model_flags, parse_with_model
from inference.engine import precision_scope
from inference.folders import SettingsMismatch, refine_folder
from evaluation import magnet as magnet_eval
from methods import method_of_model
from inference.scene import refine_split_folder
from models.checkpoint import CheckpointError
from util import distributed
from util.atomic import OverwritesInput, refuse_overwriting_inputs
from util.image_io import pixel_limit
from util.malloc import keep_freed_memory
from util.runner import RunReport


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--method')
    known, rest = pre.parse_known_args(argv)
    if known.method == 'magnet':  # a semantic-segmentation dataset with the authors' test.py flags
        logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
        return magnet_eval.main(rest)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dir', required=True, help='input folder')
    parser.add_argument('--output', required=True, help='output folder')
    add_model_flags(parser)
    parser.add_argument('--clear', action='store_true', help='empty the CUDA cache after each image')
    parser.add_argument('--overwrite', action='store_true', help='redo images already refined in --output')
    parser.add_argument('--visualize', metavar='DIR', help='write a panel per image (NAME_panel.png) into DIR')
    parser.add_argument('--method', help='magnet: see `eval.py --method magnet -h`; other methods follow --model')
    parser.add_argument('--ade', action='store_true', help='scene parsing: DIR is a split folder (split_scene.py)')
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    log = logging.getLogger('eval')
    rank, local_rank, world = distributed.init()  # under torchrun, each rank refines a share of the folder
    setup_error = None
    try:
        args, model, cfg = parse_with_model(parser, argv)
        if args.method and args.method != method_of_model(model).name:
            raise ValueError(f'--method {args.method}: the model {args.model} is a {method_of_model(model).name} model')
        if world > 1 and args.ade:
            raise ValueError('--ade runs in a single process (not under torchrun)')
        if world > 1 and str(args.device).startswith('cuda'):
            model.to(f'cuda:{local_rank}')
        refuse_overwriting_inputs({'--output': args.output, '--visualize': args.visualize}, {'--dir': args.dir})
        if args.ade:
            with keep_freed_memory(), pixel_limit(args.max_pixels), precision_scope(args.precision, args.device):
                ade = refine_split_folder(model, args.dir, args.output, cfg, args.overwrite)
        else:
            with keep_freed_memory(), pixel_limit(args.max_pixels):  # a command line owns its process
                report = refine_folder(model, args.dir, args.output, cfg, overwrite=args.overwrite,
                                       clear_cache=args.clear, visualize_dir=args.visualize, shard=(rank, world),
                                       progress=rank == 0, precision=args.precision)
    except (CheckpointError, OverwritesInput, SettingsMismatch, OSError, ValueError) as e:
        if world == 1:
            log.error('%s', e)
            return 2
        # Under torchrun a rank that stops must still meet the others where they gather their reports: leaving
        # would end their run in a raw "Connection closed by peer" traceback. Rank 0 says what went wrong, once.
        setup_error = str(e)
        report = RunReport()
    if world == 1 and args.ade:
        log.info('%s', ade.summary())
        return 1 if ade.failures else 0
    if world > 1:  # rank 0 reports for every rank
        reports, errors = zip(*distributed.gather_objects((report, setup_error)))
        distributed.cleanup()
        if any(errors):
            if rank == 0:
                for message in dict.fromkeys(m for m in errors if m):  # each distinct message once
                    ranks = [str(r) for r, m in enumerate(errors) if m == message]
                    log.error('%s%s', message, '' if len(ranks) == world else f' (rank {", ".join(ranks)})')
            return 2
        if rank:
            return 1 if report.failures else 0
        report = RunReport(done=sum(r.done for r in reports), skipped=sum(r.skipped for r in reports),
                           failures=[f for r in reports for f in r.failures],
                           seconds=max(r.seconds for r in reports),
                           stats={k: sum(r.stats.get(k, 0) for r in reports) for r in reports for k in r.stats})
        log.info('%d ranks', world)
    log.info('%s', report.summary())
    if report.failures:
        log.error('%d input(s) failed; each is reported above by file name', len(report.failures))
    return 1 if report.failures else 0


if __name__ == '__main__':
    sys.exit(main())
