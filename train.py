"""Train the CascadePSP refinement module.

    python train.py EXP_ID [-i 45000] [-b 12] [--lr 2.25e-4] [--steps 22500 37500] [--data_root data] ...
    torchrun --nproc_per_node=N train.py EXP_ID ...      # N GPUs; -b is the global batch

Every field of util.config.TrainConfig is a flag; `python train.py -h` lists them. EXP_ID NULL runs
without TensorBoard logs or checkpoints. `--resume saves/RUN/checkpoint_N.pth` continues a killed run.
"""
from __future__ import annotations

import logging
import sys

from models.checkpoint import CheckpointError
from util.config import parse_args
from util.trainer import NonFiniteLoss, train


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    try:
        train(cfg)
    except NonFiniteLoss as e:
        logging.getLogger('train').error('%s', e)
        return 1
    except (FileNotFoundError, CheckpointError, ValueError) as e:  # bad data root, weights file, batch size
        logging.getLogger('train').error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
