"""Shared fixtures. Reference vectors live in ../shared (next to the checkout, as on CI).

Tests that need them skip with a message when the folder is absent; set CASCADEPSP_SHARED to use
another location.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get('CASCADEPSP_SHARED', ROOT.parent / 'shared'))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f'{path} not found: the reference material of ../shared is absent '
                    '(set CASCADEPSP_SHARED to its location)')
    return path


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    return _need(SHARED / 'reference')


@pytest.fixture(scope='session')
def samples_dir() -> Path:
    return _need(SHARED / 'samples')


@pytest.fixture(scope='session')
def data_dir() -> Path:
    return _need(SHARED / 'data')


@pytest.fixture(scope='session')
def seeded_model():
    """The released architecture filled with the reference README's seeded weights (seed 0), eval mode."""
    from models import RefinementModule
    from models.seeded import seed_model
    return seed_model(RefinementModule(), 0).eval()


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
