"""The authors' all_plus_one.py: shift scene-parser outputs from 0..149 to ADE labels 1..150 (255 -> 0, void).

    python -m scripts.ade_plus_one --input PRED_DIR --output SEG_DIR

Needed for models (RefineNet, EncNet, PSPNet on ADE20K) whose label maps number the 150 classes from 0;
ground truths and already-shifted maps must not be shifted again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.scene_parsing import all_plus_one
from util.atomic import OverwritesInput, refuse_overwriting_inputs, write_image
from util.image_io import ImageReadError, read_labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True)
    parser.add_argument('--output', required=True)
    args = parser.parse_args(argv)
    try:  # a second shift of the same maps would be silently wrong
        refuse_overwriting_inputs({'--output': args.output}, {'--input': args.input})
    except OverwritesInput as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if not Path(args.input).is_dir():
        print(f'error: {args.input}: no such input folder', file=sys.stderr)
        return 2
    failed = 0
    for path in sorted(Path(args.input).glob('*.png')):
        try:
            write_image(Path(args.output) / path.name, all_plus_one(read_labels(path)))
        except (ImageReadError, OSError) as e:
            print(f'error: {e}', file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
