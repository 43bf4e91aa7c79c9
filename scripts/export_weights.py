"""Export a training checkpoint as shipped weights: float16, no optimizer state, architecture and training
configuration kept (the file models/weights/lite.pth was made this way).

    python -m scripts.export_weights saves/RUN/checkpoint_final.pth models/weights/lite.pth [--note TEXT]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from util.atomic import OverwritesInput, refuse_overwriting_inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint')
    parser.add_argument('output')
    parser.add_argument('--note', default='', help='free text stored with the weights (data, command, wall time)')
    args = parser.parse_args(argv)
    try:
        refuse_overwriting_inputs({'OUTPUT': args.output}, {'CHECKPOINT': args.checkpoint})
        model, data = load_model(args.checkpoint), read_checkpoint(args.checkpoint)
    except (CheckpointError, OverwritesInput) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    save_checkpoint(args.output, model, half=True, config=data.get('config'), iteration=data.get('iteration'),
                    note=args.note)
    size = Path(args.output).stat().st_size
    print(f'{args.output}: {model.arch} {model.hparams}, {size / 2**20:.2f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
