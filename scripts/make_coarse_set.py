"""Write an evaluation folder (BIG layout: NAME_im / NAME_seg / NAME_gt) of coarse masks made from the
ground truths of a split (dataset/coarse_sets.py). With several families, names get a FAMILY_ prefix.

    python -m scripts.make_coarse_set --data_root DATA --family lowres perturbed --every 6 \
        --output data/val_mixed
"""
from __future__ import annotations

import argparse
import sys

from dataset.coarse_sets import FAMILIES, write_coarse_folder
from dataset.splits import VAL_SPLIT, split_pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_root', default='data', help='folder holding SOURCE/STEM.jpg|png')
    parser.add_argument('--split', default=str(VAL_SPLIT), help='split file (default: the held-out split)')
    parser.add_argument('--family', nargs='+', choices=FAMILIES, default=['lowres', 'perturbed'])
    parser.add_argument('--every', type=int, default=1, help='use every N-th pair of the split (a subset for validation)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', required=True)
    args = parser.parse_args(argv)
    try:
        pairs = split_pairs(args.data_root, args.split)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    pairs = pairs[::max(1, args.every)]
    for family in args.family:
        write_coarse_folder(pairs, family, args.output, args.seed, f'{family}_' if len(args.family) > 1 else '')
    print(f'{args.output}: {len(pairs)} pairs x {len(args.family)} families')
    return 0


if __name__ == '__main__':
    sys.exit(main())
