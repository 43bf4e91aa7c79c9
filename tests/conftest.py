"""Shared fixtures. The reference vectors (``tests/reference``) and the sample photos (``samples/cascadepsp``) are
in the repository, so the tests against the authors' outputs always run. Only the training images come from
outside: ``$CASCADEPSP_SHARED/data`` (default ``../shared/data``); the few tests that read them skip, saying
so, when that folder is absent.
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
        pytest.skip(f'{path} not found: the training images are absent (set CASCADEPSP_SHARED to the folder '
                    'holding data/)')
    return path


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    return ROOT / 'tests' / 'reference'


@pytest.fixture(scope='session')
def samples_dir() -> Path:
    return ROOT / 'samples' / 'cascadepsp'



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


def make_tiny_data(root: Path, n: int = 3, size: tuple[int, int] = (40, 52)) -> Path:
    """``root/ecssd`` with n random images (X.jpg) and their box masks (X.png)."""
    from PIL import Image
    flat = root / 'ecssd'
    flat.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = size
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[8 + i:30, 10:40 - i] = 255
        image[mask > 0] //= 3
        Image.fromarray(image).save(flat / f'{i}.jpg')
        Image.fromarray(mask).save(flat / f'{i}.png')
    return root


@pytest.fixture()
def tiny_data(tmp_path):
    """A callable that writes the tiny training set under tmp_path/data (see :func:`make_tiny_data`)."""
    return lambda n=3, size=(40, 52): make_tiny_data(tmp_path / 'data', n, size)


@pytest.fixture()
def train_args(tmp_path):
    """A callable giving train.py arguments for 4 CPU iterations on the tiny set, plus ``extra``."""
    def args(*extra: str) -> list[str]:
        return ['tiny', '-i', '4', '-b', '2', '--data_root', str(tmp_path / 'data'), '--crop_size', '32',
                '--workers', '0', '--device', 'cpu', '--save_interval', '2', '--log_interval', '1',
                '--image_interval', '2', '--log_dir', str(tmp_path / 'runs'), '--save_dir', str(tmp_path / 'saves'),
                '--steps', '1', '3', *extra]
    return args


def blob_scene(h: int = 40, w: int = 56, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 noise image with a darker box, H x W uint8 0/255 mask of that box)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255
    image[mask > 0] //= 3
    return image, mask


def write_scenes(folder: Path, names: list[str], image: str = '{}.jpg', mask: str = '{}.png') -> Path:
    """A :func:`blob_scene` per name in ``folder`` (made), files named by the ``image`` and ``mask`` patterns."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        im, m = blob_scene(seed=i)
        Image.fromarray(im).save(folder / image.format(name))
        Image.fromarray(m).save(folder / mask.format(name))
    return folder


@pytest.fixture()
def scenes():
    """:func:`write_scenes`."""
    return write_scenes
