"""``eval.py --method magnet``: the authors' ``test.py`` over a datalist, through the method registry.

    python eval.py --method magnet --dataset deepglobe --root data/deepglobe --datalist data/list/deepglobe/test.txt \\
        --scales 612-612,1224-1224,2448-2448 --crop_size 612 612 --input_size 508 508 --model fpn \\
        --pretrained deepglobe_fpn.pth --pretrained_refinement deepglobe_refinement.pth --num_classes 7 \\
        --n_points 0.75 --n_patches -1 --smooth_kernel 11 --save_pred --save_dir OUT
    python eval.py --method magnet --preset deepglobe       # the same: the authors' test_magnet.sh
    python eval.py --method magnet --preset cityscapes_fast --root /data/cityscapes   # a flag overrides a preset

Presets (methods/magnet/presets.py): cityscapes, cityscapes_fast, deepglobe, deepglobe_fast, the authors'
test_magnet.sh and test_magnet_fast.sh of each dataset.

Per image, with ``--save_pred``: ``NAME_pred.png`` (refined class indices, uint8, the image's size) and
``NAME_coarse.png`` (the backbone's), NAME = the image file's name without its extension. Prints the coarse and
refined mean IoU as the authors do, and writes ``results.json`` (mean, frequency-weighted and per-class IoU,
both confusion matrices, label pixels of unknown id or colour) into ``--save_dir``.
``--pretrained magnet_cityscapes|magnet_deepglobe`` alone loads a released system by name.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from dataset.magnet import DATASETS, Item, read_class_map, read_datalist
from evaluation.confusion import confusion_matrix, iou_scores
from inference.predict import refine_image
from methods import METHODS
from methods.magnet.presets import TEST_PRESETS
from models.hub import MAGNET_SYSTEMS, load_named_system, load_system
from models.checkpoint import CheckpointError
from models.magnet.system import BACKBONES
from util import image_io
from util.atomic import OverwritesInput, ensure_folder, refuse_overwriting_inputs, write_image, write_text
from util.cli import add_dataclass_flags, dataclass_from_args
from util.devices import parse_device
from util.image_io import ImageReadError, read_rgb
from util.malloc import keep_freed_memory
from util.runner import run_items

log = logging.getLogger('eval')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='eval.py --method magnet', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', choices=sorted(TEST_PRESETS),
                        help="the flags of one of the authors' test scripts; explicit flags override them")
    parser.add_argument('--dataset', choices=sorted(DATASETS), help='required, unless a --preset gives it')
    parser.add_argument('--root', default='.', help='folder the datalist\'s paths are relative to')
    parser.add_argument('--datalist', help='IMAGE<TAB>LABEL lines (the authors\' format); required, unless a --preset '
                                           'gives it')
    parser.add_argument('--model', choices=sorted(BACKBONES), help='the backbone (with --pretrained FILE)')
    parser.add_argument('--pretrained',
                        help=f'the backbone\'s file, or a released system by name: {", ".join(MAGNET_SYSTEMS)}; '
                             'required, unless a --preset gives it')
    parser.add_argument('--pretrained_refinement', nargs='+', default=[],
                        help='refinement module file(s): one for every stage, or one per stage')
    parser.add_argument('--num_classes', type=int, help='classes of the backbone (default: the dataset\'s)')
    parser.add_argument('--save_pred', action='store_true', help='write NAME_pred.png and NAME_coarse.png')
    parser.add_argument('--save_dir', default='results', help='predictions and results.json go here')
    parser.add_argument('--device', default='auto', help='cpu, cuda, cuda:N, mps or auto (a GPU if there is one)')
    parser.add_argument('--num_workers', type=int, default=0, help='accepted as the authors\' test.py accepts it')
    parser.add_argument('--max_pixels', type=int, default=image_io.MAX_PIXELS,
                        help='refuse images above this many pixels before decoding them (0: no limit)')
    add_dataclass_flags(parser, METHODS['magnet'].InferConfig)
    return parser


def parse(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line, a ``--preset``'s values as the defaults that explicit flags override."""
    parser = _parser()
    preset = parser.parse_known_args(argv)[0].preset
    if preset:
        parser.set_defaults(**TEST_PRESETS[preset])
    args = parser.parse_args(argv)
    if missing := [f'--{name}' for name in ('dataset', 'datalist', 'pretrained') if not getattr(args, name)]:
        parser.error(f'{", ".join(missing)} required (or a --preset that gives them)')
    return parser, args


def main(argv: list[str] | None = None) -> int:
    parser, args = parse(argv)
    method = METHODS['magnet']
    try:
        cfg = dataclass_from_args(method.InferConfig, args)
    except ValueError as e:
        parser.error(str(e))
    spec = DATASETS[args.dataset]
    classes = args.num_classes or spec.num_classes
    save_dir = Path(args.save_dir)
    try:
        args.device = str(parse_device(args.device))  # before any weights load or download
        if args.pretrained in MAGNET_SYSTEMS and not args.pretrained_refinement:
            system = load_named_system(args.pretrained)
        else:
            if not args.model:
                parser.error('--model fpn|hrnet18+ocr is needed with a backbone file')
            system = load_system(args.model, classes, args.pretrained, args.pretrained_refinement)
        system.to(args.device)
        items = read_datalist(args.root, args.datalist)
        refuse_overwriting_inputs({'--save_dir': save_dir}, {'--datalist': args.datalist, '--root': args.root})
        ensure_folder(save_dir)
    except (CheckpointError, OverwritesInput, OSError, ValueError) as e:
        log.error('%s', e)
        return 2
    n = system.num_classes
    totals = {'coarse': np.zeros((n, n)), 'refined': np.zeros((n, n))}
    unknown: dict[str, int] = {}
    scored: list[str] = []  # images with a label

    def prediction_files(item: Item) -> dict[str, Path]:
        return {kind: save_dir / f'{item.image.stem}_{suffix}.png'
                for kind, suffix in (('refined', 'pred'), ('coarse', 'coarse'))} if args.save_pred else {}

    def process(item: Item) -> dict[str, float]:
        image = read_rgb(item.image)
        label = None
        if item.label is not None:
            label, bad = read_class_map(item.label, spec)
            if label.shape != image.shape[:2]:
                raise ImageReadError(f'{item.label}: size {label.shape[1]}x{label.shape[0]} differs from '
                                     f'{item.image} ({image.shape[1]}x{image.shape[0]})')
            if bad:
                unknown[str(item.label)] = bad
                log.warning('%s: %d pixel(s) of no %s %s, counted as class 0 as the authors do', item.label, bad,
                            spec.name, 'colour' if spec.colour else 'label id')
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].to(args.device)  # PIL arrays are read-only
        result = refine_image(system, tensor, None, cfg)  # the method by the registry; non-finite refused
        preds = {'refined': result.probs.argmax(1)[0].cpu().numpy(),
                 'coarse': result.extra['coarse'].argmax(1)[0].cpu().numpy()}
        outputs = prediction_files(item)
        refuse_overwriting_inputs(outputs, {'image': item.image, 'label': item.label})
        for kind, path in outputs.items():
            write_image(path, preds[kind].astype(np.uint8))
        if label is not None:
            for kind, pred in preds.items():
                totals[kind] += confusion_matrix(label, pred, n, spec.ignore_label)
            scored.append(str(item.image))
        return result.stats

    # Two images of one stem (data/0_sat.png, data/b/0_sat.png) would write the same NAME_pred.png: both refused.
    with keep_freed_memory(), image_io.pixel_limit(args.max_pixels):  # a command line owns its process
        report = run_items(items, process, lambda item: str(item.image),
                           outputs=lambda item: list(prediction_files(item).values()))
    results = {'dataset': spec.name, 'images': report.done, 'scored_images': len(scored),
               'failures': report.failures, 'settings': vars(args), 'label_pixels_of_unknown_id_or_colour': unknown}
    print('-------SUMMARY-------')
    if scored:
        scores = {kind: iou_scores(matrix, spec.mean_from) for kind, matrix in totals.items()}
        print(f'Coarse IoU: {scores["coarse"]["mIoU"] * 100:.2f}')
        print(f'Refinement IoU: {scores["refined"]["mIoU"] * 100:.2f}')
        results.update({kind: {**score, 'confusion_matrix': totals[kind].astype(np.int64).tolist()}
                        for kind, score in scores.items()})
    else:
        print('No labels: not scored' + (' (predictions written)' if args.save_pred and report.done else ''))
        log.warning('%s lists no label for any image that was refined: no IoU is computed', args.datalist)
    write_text(save_dir / 'results.json', json.dumps(results, indent=1, default=str) + '\n')
    log.info('%s', report.summary())
    if report.failures:
        log.error('%d image(s) failed; each is reported above by file name', len(report.failures))
    return 1 if report.failures else 0
