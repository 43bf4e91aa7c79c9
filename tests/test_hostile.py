"""Hostile and careless use: an output that would replace an input is refused before any work, naming both
paths, and every input stays byte for byte as it was."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eval as eval_cli
import refine as refine_cli
from scripts import ade_plus_one, export_weights


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def pair_folder(tmp_path):
    folder = tmp_path / 'd'
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), np.uint8)
    mask[6:18, 8:24] = 255
    Image.fromarray(image).save(folder / 'x.jpg')
    Image.fromarray(mask).save(folder / 'x.png')
    Image.fromarray(image).save(folder / 'x_im.png')
    Image.fromarray(mask).save(folder / 'x_seg.png')
    return folder


@pytest.mark.parametrize('case', ['refine_dir', 'refine_image', 'refine_mask', 'eval_dir', 'eval_visualize'])
def test_outputs_over_inputs_are_refused(pair_folder, case, caplog):
    before = _digests(pair_folder)
    d = str(pair_folder)
    argv, main, named = {
        'refine_dir': (['--dir', d, '--output', d], refine_cli.main, 'x.png'),
        'refine_image': ([f'{d}/x.jpg', f'{d}/x.png', '-o', f'{d}/x.jpg'], refine_cli.main, 'x.jpg'),
        'refine_mask': ([f'{d}/x.jpg', f'{d}/x.png', '-o', f'{d}/out.png', '--visualize', f'{d}/x.png'],
                        refine_cli.main, 'x.png'),
        'eval_dir': (['--dir', d, '--output', d], eval_cli.main, d),
        'eval_visualize': (['--dir', d, '--output', f'{d}_out', '--visualize', d], eval_cli.main, d),
    }[case]
    assert main(argv) == 2
    assert 'refusing to write over an input' in caplog.text and named in caplog.text
    assert _digests(pair_folder) == before and not Path(f'{d}_out').exists()


def test_scripts_refuse_to_write_over_their_input(tmp_path, capsys):
    labels = tmp_path / 'pred'
    labels.mkdir()
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(labels / 'a.png')
    before = _digests(labels)
    assert ade_plus_one.main(['--input', str(labels), '--output', str(labels)]) == 2
    assert _digests(labels) == before and 'refusing to write over an input' in capsys.readouterr().err
    from models.checkpoint import save_checkpoint
    from models.registry import build_model
    ckpt = tmp_path / 'c.pth'
    save_checkpoint(ckpt, build_model('lite', widths=(8, 8, 8, 8, 8), psp_channels=8, up_channels=(8, 8)),
                    optimizer={'state': {}})
    digest = hashlib.md5(ckpt.read_bytes()).hexdigest()
    assert export_weights.main([str(ckpt), str(ckpt)]) == 2
    assert hashlib.md5(ckpt.read_bytes()).hexdigest() == digest
