"""Train the arbiter (models/cascadepsp/arbiter.py) of a refinement network and save both in one checkpoint.

    python -m scripts.train_arbiter --output lite_new.pth          # the shipped arbiter's recipe, on the bundled network
    python -m scripts.train_arbiter --model saves/RUN/checkpoint_final.pth --output new.pth --images 600 \
        --families lowres_wide=5 perturb=2 --no-evidence

With no other flag it runs the recipe of the shipped arbiter (methods/cascadepsp/arbiter_recipe.py,
``ArbiterConfig``), on the data root ($CASCADEPSP_DATA or data). It is also the last stage of
``train.py --preset lite``. An arbiter the network already has is replaced.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from methods.cascadepsp.arbiter_recipe import ArbiterConfig, train_arbiter
from models.checkpoint import CheckpointError
from models.hub import resolve_weights
from util.atomic import OverwritesInput, refuse_overwriting_inputs
from util.cli import add_dataclass_flags, dataclass_from_args

log = logging.getLogger('train_arbiter')


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='lite',
                        help='the network (a name or checkpoint; an arbiter it has is replaced)')
    parser.add_argument('--output', required=True, help='checkpoint to write: the network with its new arbiter')
    add_dataclass_flags(parser, ArbiterConfig, skip=('families',))
    shipped = ' '.join(f'{k}={v:g}' for k, v in ArbiterConfig().families.items())
    parser.add_argument('--families', nargs='+', metavar='NAME=WEIGHT', dest='family_weights',
                        help=f'coarse-mask families and their weights (default, as shipped: {shipped}; '
                             'dataset/degrade.py lists the synthetic ones, mediapipe is the real segmenter\'s)')
    args = parser.parse_args(argv)
    try:
        cfg = dataclass_from_args(ArbiterConfig, args)
        if args.family_weights:
            try:
                families = {name: float(weight) for name, _, weight in (f.partition('=') for f in args.family_weights)}
            except ValueError:
                parser.error(f'--families: NAME=WEIGHT pairs, got {" ".join(args.family_weights)}')
            cfg = dataclasses.replace(cfg, families=families)
    except ValueError as e:
        parser.error(str(e))
    try:
        source = resolve_weights(args.model)
        refuse_overwriting_inputs({'--output': args.output}, {'--model': source})
        train_arbiter(source, args.output, cfg)
    except (FileNotFoundError, ValueError, CheckpointError, OverwritesInput) as e:
        log.error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
