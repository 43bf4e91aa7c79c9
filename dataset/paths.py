"""Where the data and the bundled samples are.

The training and evaluation images live under one data root, in the download layout (``download_dataset.py``):
``$CASCADEPSP_DATA`` when set (read here, and nowhere else), else ``data`` in the folder a command runs in.
Every ``--data_root`` flag and preset defaults to it.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The environment variable naming the data root.
DATA_ENV = 'CASCADEPSP_DATA'
#: The photos of the authors' repository bundled with this one (MIT licence): Figure 1, the Human3.6M frames with
#: the released model's outputs, the motorbike.
SAMPLES = Path(__file__).resolve().parents[1] / 'samples' / 'cascadepsp'


def data_root() -> str:
    """``$CASCADEPSP_DATA``, or ``data``."""
    return os.environ.get(DATA_ENV) or 'data'
