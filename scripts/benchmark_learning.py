"""Score the bundled (or any) model on the held-out split against the coarse input and a guided filter.

    python -m scripts.benchmark_learning [--data_root DATA] [--model lite previous=FILE ...]
        [--every 1] [--family ...] [--samples samples/cascadepsp] [--output output/benchmark_learning]
        [--settings LABEL='{"scales": [0.5, 1.0]}' ...]

Builds (once, under --work) the families of coarse masks of dataset/coarse_sets.py from the split's
ground truths: lowres4 / lowres / lowres16 (x4 / x8 / x16 area-down, bilinear up, threshold 127), perturbed
(training perturbation at IoU U[0.8, 0.9)), jitter (a smooth displacement plus a dilation or erosion, in
no training recipe), and mediapipe / mediapipe_x8 (a real segmenter's masks, at the photo's size and as it
would be on a photo eight times larger; pairs whose mask has IoU >= 0.6). Prints, per family, IoU and mBA (x100)
of the input, of the classical alternatives (a colour guided filter at each of nine (radius, eps) settings;
closed-form matting on trimaps eroded 10 px and (H+W)/100 px from the mask, with the optional pymatting; the
table keeps the best per family, as a user tuning them would), and of each model (its method's defaults:
Global+Local at L=900 for CascadePSP), and each model's per-image win/tie/loss count on mBA against that best
alternative (a tie: within 0.1 point). With --samples, also scores the H36M frames
against the authors' released model's outputs. Lists each model's --worst losses against that filter per
family (with --panels, a picture of each: the filter's and the model's boundaries on the ground truth's).
Writes results.md (the tables) and results.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import progressbar
import torch

from dataset.coarse_sets import FAMILIES, write_coarse_folder
from dataset.paths import SAMPLES, data_root
from dataset.splits import VAL_SPLIT, split_pairs
from dataset.folders import find_samples, load_sample
from evaluation.learning import (best_filter, comparison_markdown, guided_filter_methods,
                                losses_markdown, matting_methods, model_method, results_markdown, score_against_reference,
                                score_folder, worst_losses)
from inference.visualize import comparison_panel
from inference.predict import default_config
from models.hub import load_pretrained, resolve_weights
from util.atomic import write_image, write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_root', default=data_root(), help='the data root (default: $CASCADEPSP_DATA or data)')
    parser.add_argument('--split', default=str(VAL_SPLIT))
    parser.add_argument('--every', type=int, default=1, help='score every N-th pair of the split')
    parser.add_argument('--family', nargs='+', choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument('--model', nargs='+', default=['lite'], help='names or checkpoint files (LABEL=PATH allowed)')
    parser.add_argument('--L', type=int, default=900)
    parser.add_argument('--settings', action='append', default=[], metavar='LABEL=JSON',
                        help='inference settings of the model labelled LABEL, e.g. crm2=\'{"scales": [0.5, 1.0]}\' '
                             '(the same file may appear under several labels with different settings)')
    parser.add_argument('--samples', default=str(SAMPLES), help="folder with the H36M frames ('' to skip)")
    parser.add_argument('--work', default='data/benchmark_learning', help='where the coarse folders are built')
    parser.add_argument('--output', default='output/benchmark_learning')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--worst', type=int, default=5, help="list each model's N worst losses against the best filter")
    parser.add_argument('--panels', action='store_true',
                        help='also draw them: OUTPUT/worst/FAMILY_MODEL_IMAGE.png (the methods are run again on those images)')
    parser.add_argument('--filters', action=argparse.BooleanOptionalAction, default=True,
                        help='score the guided-filter settings too (--no-filters: only the models, e.g. to fill the cache)')
    parser.add_argument('--matting', action=argparse.BooleanOptionalAction, default=True,
                        help='score closed-form matting too (needs pymatting, in the development extra)')
    parser.add_argument('--cache', action=argparse.BooleanOptionalAction, default=True,
                        help="reuse each method's per-image scores stored under --work (keyed by the weights' digest)")
    args = parser.parse_args(argv)
    if args.panels and not args.filters:
        parser.error('--panels draws the losses against the best guided filter: it needs the filters (no --no-filters)')
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = {}
    for item in args.settings:
        label, _, text = item.partition('=')
        try:
            settings[label] = json.loads(text)
        except json.JSONDecodeError as e:
            parser.error(f'--settings {item}: not JSON ({e})')
    methods = guided_filter_methods() if args.filters else {}
    if args.filters and args.matting:
        try:
            methods.update(matting_methods())
        except ImportError as e:
            parser.error(f'--matting: {e}; or --no-matting')
    labels, keys = [], {}
    for spec in args.model:
        label, _, path = spec.rpartition('=')
        model = load_pretrained(path)
        labels.append(label or spec)
        extra = settings.get(label or spec, {})
        methods[label or spec] = model_method(model, default_config(model, **{'L': args.L, **extra}))
        digest = hashlib.sha1(resolve_weights(path).read_bytes()).hexdigest()[:12]
        tag = ''.join(f'_{k}={v}' for k, v in sorted(extra.items()))
        keys[label or spec] = f'{label or spec}@{digest}_L{args.L}{tag}'  # cached scores follow weights and settings

    pairs = split_pairs(args.data_root, args.split)[::max(1, args.every)]
    results = {}
    for family in args.family:
        folder = write_coarse_folder(pairs, family, Path(args.work) / f'{family}_every{args.every}')
        count = sum(1 for _ in folder.glob('*_gt.png'))  # the segmenter's families keep fewer pairs
        bar = progressbar.ProgressBar(max_value=count, prefix=f'{family}: ')
        results[family] = score_folder(folder, methods, bar.update, folder / 'scores' if args.cache else None, keys)
        bar.finish()
    samples = Path(args.samples) if args.samples else None
    if samples and (samples / 'H36M_test_im1.jpg').is_file():
        triplets = [(f'H36M_{i}', samples / f'H36M_test_im{i}.jpg', samples / f'H36M_test_mask{i}.jpg',
                     samples / f'H36M_output{i}.jpg') for i in (1, 2, 3)]
        results['H36M vs the released model'] = score_against_reference(triplets, methods)

    if args.panels:
        for family in args.family:
            draw_worst(results[family], Path(args.work) / f'{family}_every{args.every}', methods, labels, args.worst,
                       Path(args.output) / 'worst', family)
    table = comparison_markdown(results, labels) + '\n\nEvery setting:\n\n' + results_markdown(results)
    if args.worst and args.filters:
        table += f'\n\nWorst {args.worst} losses against the best filter:\n\n' + losses_markdown(results, labels, args.worst)
    print(f'{len(pairs)} held-out pairs ({args.split}, every {args.every})\n{table}')
    out = Path(args.output)
    write_text(out / 'results.md', table + '\n')
    write_text(out / 'results.json', json.dumps({f: {m: dict(r.summary, seconds=r.seconds, per_image_mba=[
        s.mask_mba for s in r.scores]) for m, r in rs.items()} for f, rs in results.items()}, indent=1) + '\n')
    return 0


def draw_worst(results: dict, folder: Path, methods: dict, models: list[str], k: int, output: Path, family: str) -> None:
    """Write a :func:`inference.visualize.comparison_panel` (input, best filter, model) of each model's ``k`` worst
    losses against the best filter, running both again on those images."""
    gf = best_filter(results)
    output.mkdir(parents=True, exist_ok=True)
    samples = {s.name: s for s in find_samples(folder)[0]}
    for m in models:
        for a, b in worst_losses(results[m], gf, k):
            image, coarse, gt = load_sample(samples[a.name])
            panel = comparison_panel(image, gt, {f'input: mBA {100 * a.seg_mba:.1f}': coarse,
                                                 f'filter: mBA {100 * b.mask_mba:.1f}': methods[gf.method](image, coarse),
                                                 f'{m}: mBA {100 * a.mask_mba:.1f}': methods[m](image, coarse)})
            write_image(output / f'{family}_{m}_{a.name}.png', panel)


if __name__ == '__main__':
    sys.exit(main())
