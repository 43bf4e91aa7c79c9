"""Draw a held-out split (run once; the result is committed as dataset/splits/val.txt).

    python -m scripts.make_split --data_root DATA --take ecssd=100 DUTS-TE=200 --seed 2026 \
        --output dataset/splits/val.txt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dataset.readers import flat_pairs
from dataset.splits import pair_key
from util.atomic import write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_root', required=True)
    parser.add_argument('--take', nargs='+', required=True, help='SOURCE=COUNT')
    parser.add_argument('--seed', type=int, default=2026)
    parser.add_argument('--output', required=True)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    lines = [f'# held-out split: {" ".join(args.take)}, numpy default_rng({args.seed}) over sorted pairs']
    for item in args.take:
        source, sep, count = item.partition('=')
        if not sep or not count.isdigit():
            parser.error(f'--take {item}: expected SOURCE=COUNT, e.g. ecssd=100')
        if not (Path(args.data_root) / source).is_dir():
            parser.error(f'--take {item}: no folder {Path(args.data_root) / source}')
        pairs, _ = flat_pairs(Path(args.data_root) / source)
        chosen = sorted(rng.choice(len(pairs), int(count), replace=False))
        lines += [pair_key(pairs[i]) for i in chosen]
    write_text(args.output, '\n'.join(lines) + '\n')
    print(f'{args.output}: {len(lines) - 1} pairs')
    return 0


if __name__ == '__main__':
    sys.exit(main())
