"""Train the arbiter (models/cascadepsp/arbiter.py) of a refinement network and save both in one checkpoint.

    python scripts/train_arbiter.py --model lite --output lite_new.pth --half --evidence --post_radius 0.5 \
        --images 1200 --families lowres_wide=5 perturb=2 blur=2 identity=1 lowres_near=10
        # the bundled weights: a new arbiter on the bundled network (its own arbiter is left out)

The recipe is methods/cascadepsp/arbiter_recipe.py (also the last stage of ``train.py --preset lite``, on the
stage-2 network in float32; the bundled file stores it in float16). On the 2-core development CPU, on a quiet
machine, the network's outputs and the features of 1000 images took 9 minutes, the fit 20 s.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset.paths import data_root  # noqa: E402
from methods.cascadepsp.arbiter_recipe import train_arbiter  # noqa: E402
from models.checkpoint import CheckpointError  # noqa: E402
from models.hub import resolve_weights  # noqa: E402
from util.atomic import OverwritesInput, refuse_overwriting_inputs  # noqa: E402

log = logging.getLogger('train_arbiter')


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='lite',
                        help='the network (a name or checkpoint; an arbiter it has is replaced)')
    parser.add_argument('--output', required=True, help='checkpoint to write: the network with its new arbiter')
    parser.add_argument('--data_root', default=data_root(), help='the data root (default: $CASCADEPSP_DATA or data)')
    parser.add_argument('--sources', nargs='+', default=['ecssd', 'DUTS-TE'])
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--samples', type=int, default=3000, help='band pixels per image')
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--evidence', action='store_true', help='the image-evidence cues (the bundled arbiter has them)')
    parser.add_argument('--post_radius', type=float, default=0.0,
                        help='final guided filter, radius in units of (H + W) / 300 px (0: none; bundled: 0.5)')
    parser.add_argument('--families', nargs='+', metavar='NAME=WEIGHT',
                        help='degradation families and their weights (default: lowres_wide=5 perturb=2 blur=2 '
                             'identity=1; dataset/degrade.py lists the names)')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--half', action='store_true', help='store float16 weights (as the bundled file)')
    args = parser.parse_args(argv)
    families = None
    if args.families:
        try:
            families = {name: float(weight) for name, _, weight in (f.partition('=') for f in args.families)}
        except ValueError:
            parser.error(f'--families: NAME=WEIGHT pairs, got {" ".join(args.families)}')
    try:
        source = resolve_weights(args.model)
        refuse_overwriting_inputs({'--output': args.output}, {'--model': source})
        train_arbiter(source, args.output, args.data_root, args.sources, args.images,
                      args.samples, args.epochs, args.hidden, args.seed, args.threads, args.half, args.evidence,
                      args.post_radius, families)
    except (FileNotFoundError, ValueError, CheckpointError, OverwritesInput) as e:
        log.error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
