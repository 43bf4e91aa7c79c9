"""torchrun eval.py: the folder split across ranks (two CPU processes, gloo), each image written once, rank 0
printing the summary, outputs identical to a single-process run."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes(tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / 'data'
    data.mkdir()
    for i in range(5):
        image = rng.integers(0, 256, (40 + 4 * i, 52, 3), dtype=np.uint8)
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[8:30, 10:40] = 255
        Image.fromarray(image).save(data / f's{i}_im.png')
        Image.fromarray(mask).save(data / f's{i}_seg.png')
    (data / 'bad_im.png').write_bytes(b'not an image')
    Image.fromarray(mask).save(data / 'bad_seg.png')
    common = ['--dir', str(data), '--model', 'lite', '--L', '48', '--device', 'cpu']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    single = subprocess.run([sys.executable, 'eval.py', *common, '--output', str(tmp_path / 'one')], cwd=ROOT,
                            env=env, capture_output=True, text=True)
    assert single.returncode == 1, single.stderr  # the bad image
    sharded = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                              f'--master_port={_free_port()}', 'eval.py', *common, '--output', str(tmp_path / 'two')],
                             cwd=ROOT, env=env, capture_output=True, text=True)
    assert sharded.returncode != 0, sharded.stderr  # the bad image fails on its rank
    log = sharded.stderr + sharded.stdout
    assert '2 ranks' in log and '5 image(s) refined' in log and '1 failed' in log and 'bad' in log
    one = sorted(p.name for p in (tmp_path / 'one').glob('*_mask.png'))
    two = sorted(p.name for p in (tmp_path / 'two').glob('*_mask.png'))
    assert one == two and len(one) == 5
    for name in one:
        assert (tmp_path / 'one' / name).read_bytes() == (tmp_path / 'two' / name).read_bytes()
    assert not list((tmp_path / 'two').glob('*.tmp*'))
