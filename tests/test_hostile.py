"""Hostile and careless use: an output that would replace an input is refused before any work, naming both
paths, and every input stays byte for byte as it was."""
from __future__ import annotations

import hashlib
import json
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


def _save_pair(folder: Path, name: str, image: np.ndarray, mask: np.ndarray, im_suffix: str = '.png') -> None:
    Image.fromarray(image).save(folder / f'{name}_im{im_suffix}')
    Image.fromarray(mask).save(folder / f'{name}_seg.png')


def _blob(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4:max(h // 4 + 1, 3 * h // 4), w // 4:3 * w // 4] = 255
    image[mask > 0] //= 3
    return image, mask


@pytest.mark.parametrize('h,w,L', [(4, 4000, 900), (8, 4000, 300), (4000, 5, 900)])
def test_extreme_aspect_ratios_are_refined(tmp_path, h, w, L):
    src = tmp_path / 'in'
    src.mkdir()
    _save_pair(src, 'line', *_blob(h, w))
    _save_pair(src, 'normal', *_blob(40, 56))
    assert eval_cli.main(['--dir', str(src), '--output', str(tmp_path / 'out'), '--L', str(L)]) == 0
    assert np.asarray(Image.open(tmp_path / 'out' / 'line_mask.png')).shape == (h, w)
    assert (tmp_path / 'out' / 'normal_mask.png').is_file()


def test_any_per_image_error_is_that_image_s_failure(tmp_path, monkeypatch, caplog):
    import methods.cascadepsp.inference as cascade
    src = tmp_path / 'in'
    src.mkdir()
    for name in ('a', 'b', 'c'):
        _save_pair(src, name, *_blob(30, 40))
    real = cascade.local_step

    def fails_on_b(model, image, pred_224, pred_56, cfg):
        if fails_on_b.calls == 1:
            fails_on_b.calls += 1
            raise RuntimeError('DefaultCPUAllocator: can\'t allocate memory')
        fails_on_b.calls += 1
        return real(model, image, pred_224, pred_56, cfg)
    fails_on_b.calls = 0
    caplog.set_level('INFO')
    monkeypatch.setattr(cascade, 'local_step', fails_on_b)
    assert eval_cli.main(['--dir', str(src), '--output', str(tmp_path / 'out')]) == 1
    assert "b: RuntimeError: DefaultCPUAllocator: can't allocate memory" in caplog.text
    assert sorted(p.name for p in (tmp_path / 'out').glob('*_mask.png')) == ['a_mask.png', 'c_mask.png']
    assert '2 image(s) refined' in caplog.text and '1 failed' in caplog.text


def test_non_finite_weights_are_refused(tmp_path, caplog):
    import torch
    from models.checkpoint import CheckpointError, load_model, read_checkpoint
    from models.hub import BUNDLED
    data = read_checkpoint(BUNDLED['lite'])
    data['model']['layer2.0.conv1.0.weight'][0, 0, 0, 0] = float('nan')
    torch.save(data, tmp_path / 'nan.pth')
    with pytest.raises(CheckpointError, match=r'nan.pth: non-finite values .* layer2.0.conv1.0.weight'):
        load_model(tmp_path / 'nan.pth')
    assert export_weights.main([str(tmp_path / 'nan.pth'), str(tmp_path / 'out.pth')]) == 2
    assert not (tmp_path / 'out.pth').exists()
    assert eval_cli.main(['--dir', str(tmp_path), '--output', str(tmp_path / 'o'), '--model', str(tmp_path / 'nan.pth')]) == 2
    assert 'non-finite values' in caplog.text and 'layer2.0.conv1.0.weight' in caplog.text


def test_non_finite_outputs_are_that_image_s_failure(tmp_path, monkeypatch, caplog):
    import torch
    import methods.cascadepsp.inference as cascade
    src = tmp_path / 'in'
    src.mkdir()
    _save_pair(src, 'img', *_blob(30, 40))
    monkeypatch.setattr(cascade, 'local_step', lambda model, image, pred_224, pred_56, cfg:
                        (torch.full(image.shape[:1] + (1,) + image.shape[2:], float('nan')), 0))
    assert eval_cli.main(['--dir', str(src), '--output', str(tmp_path / 'o')]) == 1
    assert 'img: the model produced non-finite probabilities' in caplog.text
    assert not (tmp_path / 'o' / 'img_mask.png').exists()


def test_masks_users_have(tmp_path):
    from inference.refiner import Refiner
    from util.image_io import read_mask, read_rgb
    image, mask = _blob(40, 56)
    red = np.zeros((40, 56, 3), np.uint8)
    red[..., 0] = mask  # a red object on black: its luma (76) is below the threshold
    Image.fromarray(red).save(tmp_path / 'red.png')
    assert np.array_equal(read_mask(tmp_path / 'red.png'), mask)
    refiner = Refiner()
    with pytest.raises(ValueError, match=r"Refiner\(device='cuda'\)"):  # the authors' package takes the device first
        Refiner('cuda')
    from_01 = refiner.refine(image, (mask > 0).astype(np.uint8), L=64)  # {0, 1} labels through the API
    assert np.array_equal(from_01, refiner.refine(image, mask, L=64)) and from_01.max() > 127
    deep = np.linspace(0, 4095, 40 * 56).reshape(40, 56).astype(np.uint16)  # 12 bits stored in a 16-bit PNG
    Image.fromarray(deep).save(tmp_path / 'deep.png')
    assert read_rgb(tmp_path / 'deep.png').max() == 255


def test_eval_applies_exif_orientation_and_names_collisions(tmp_path, caplog):
    src = tmp_path / 'in'
    src.mkdir()
    image, mask = _blob(30, 50)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(image, 1)))  # stored rotated, shown upright by EXIF 6
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(src / 'photo_im.jpg', exif=exif)
    Image.fromarray(mask).save(src / 'photo_seg.png')
    _save_pair(src, 'upper', *_blob(30, 40), im_suffix='.JPG')
    _save_pair(src, 'twice', *_blob(30, 40), im_suffix='.jpg')
    Image.fromarray(_blob(30, 40)[0]).save(src / 'twice_im.png')
    assert eval_cli.main(['--dir', str(src), '--output', str(tmp_path / 'out')]) == 1
    assert np.asarray(Image.open(tmp_path / 'out' / 'photo_mask.png')).shape == (30, 50)
    assert (tmp_path / 'out' / 'upper_mask.png').is_file() and 'upper' not in caplog.text.replace('upper_mask', '')
    assert 'twice: several files (twice_im.jpg, twice_im.png)' in caplog.text
    assert not (tmp_path / 'out' / 'twice_mask.png').exists()


def test_eval_post_resizes_a_mis_sized_refined_mask_as_the_authors(tmp_path, caplog):
    """A refined mask at half the ground truth's size is resized with PIL's bilinear filter, as the authors'
    eval_post does, scored, named in a warning and counted; --strict_sizes refuses it instead."""
    import eval_post as eval_post_cli
    from evaluation.metrics import score_image
    rng = np.random.default_rng(3)
    gt = np.zeros((60, 80), np.uint8)
    gt[10:50, 12:70] = 255
    seg = np.roll(gt, 2, axis=1)
    small = np.zeros((30, 40), np.uint8)
    small[6:24, 5:33] = 255
    small[rng.random((30, 40)) < 0.05] = 128  # grey levels that the bilinear filter and the threshold must meet
    for name, arr in (('a_gt', gt), ('a_seg', seg), ('a_mask', small), ('b_gt', gt), ('b_seg', seg), ('b_mask', gt)):
        Image.fromarray(arr).save(tmp_path / f'{name}.png')
    assert eval_post_cli.main(['--dir', str(tmp_path), '--workers', '1']) == 0
    assert 'a_mask.png: size 40x30 differs' in caplog.text and 'resized' in caplog.text
    data = json.loads((tmp_path / 'results_post.json').read_text())
    resized = np.asarray(Image.fromarray(small).resize((80, 60), Image.BILINEAR))  # the authors' line
    expected = score_image('a', gt, seg, resized)
    assert data['images'][0]['mask_mba'] == pytest.approx(expected.mask_mba, abs=1e-12)
    assert data['summary']['resized_masks'] == 1
    assert "resized to their ground truth's size: 1" in (tmp_path / 'results_post.txt').read_text()
    (tmp_path / 'results_post.txt').unlink()
    caplog.clear()
    assert eval_post_cli.main(['--dir', str(tmp_path), '--workers', '1', '--strict_sizes']) == 1
    assert 'a_mask.png: size 40x30 differs' in caplog.text and not (tmp_path / 'results_post.txt').exists()


def test_eval_post_resizes_label_maps_with_nearest(tmp_path):
    """--multiclass: a refined label map of another size is resized nearest-neighbour (no invented labels)."""
    import eval_post as eval_post_cli
    gt = np.zeros((40, 40), np.uint8)
    gt[:, 20:] = 3
    gt[:, :20] = 1
    Image.fromarray(gt).save(tmp_path / 'a_gt.png')
    Image.fromarray(gt).save(tmp_path / 'a_seg.png')
    Image.fromarray(gt[::2, ::2].copy()).save(tmp_path / 'a_mask.png')
    assert eval_post_cli.main(['--dir', str(tmp_path), '--workers', '1', '--multiclass']) == 0
    data = json.loads((tmp_path / 'results_post.json').read_text())
    assert data['summary']['new_mba'] == pytest.approx(1.0) and data['summary']['resized_masks'] == 1


@pytest.mark.parametrize('flags,message', [
    (['--log_interval', '0'], 'must be at least 1: --log_interval 0'),
    (['--crop_size', '0'], 'must be at least 1: --crop_size 0'),
    (['--schedule', 'foo'], "schedule must be 'step' or 'cosine'"),
    (['-i', '-5'], 'must be at least 1: --iterations -5'),
    (['-i', '0'], 'must be at least 1: --iterations 0'),
])
def test_train_flags_out_of_range(flags, message, caplog):
    import train as train_cli
    assert train_cli.main(['x', '--device', 'cpu', *flags]) == 2
    assert message in caplog.text


def test_out_of_range_hyper_parameters_in_a_checkpoint(tmp_path):
    import torch
    from models.checkpoint import CheckpointError, load_model, read_checkpoint
    from models.hub import BUNDLED
    data = read_checkpoint(BUNDLED['lite'])
    torch.save({**data, 'hparams': {**data['hparams'], 'gf_radius': -5}}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='bad.pth: .*gf_radius -5'):
        load_model(tmp_path / 'bad.pth')
    torch.save({**data, 'hparams': [1, 2]}, tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='not a mapping'):
        load_model(tmp_path / 'list.pth')


def test_scene_scripts_refuse_a_missing_input_folder(tmp_path, capsys):
    from scripts import split_scene
    assert ade_plus_one.main(['--input', str(tmp_path / 'none'), '--output', str(tmp_path / 'o')]) == 2
    with pytest.raises(SystemExit) as e:
        split_scene.main([str(tmp_path / 'none'), str(tmp_path), str(tmp_path), str(tmp_path / 'o')])
    assert e.value.code == 2 and 'no such input folder' in capsys.readouterr().err


def test_output_paths_that_cannot_be_written(tmp_path, caplog, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    _save_pair(src, 'a', *_blob(30, 40))
    Image.fromarray(_blob(30, 40)[0]).save(tmp_path / 'x.jpg')
    Image.fromarray(_blob(30, 40)[1]).save(tmp_path / 'x.png')
    (tmp_path / 'afile').write_text('in the way')
    assert eval_cli.main(['--dir', str(src), '--output', str(tmp_path / 'afile')]) == 2
    assert 'afile: cannot write output there' in caplog.text
    for out, message in ((tmp_path / 'noext', "unknown image suffix '(none)'"), (tmp_path / 'a.xyz', "'.xyz'"),
                         (tmp_path, 'is a folder'), (tmp_path / 'afile' / 'r.png', 'cannot write output there')):
        caplog.clear()
        assert refine_cli.main([str(tmp_path / 'x.jpg'), str(tmp_path / 'x.png'), '-o', str(out)]) == 2
        assert message in caplog.text, out
    import eval_post as eval_post_cli
    assert eval_post_cli.main(['--dir', str(src), '--output', str(tmp_path / 'afile')]) == 2
    from scripts import make_split, make_table
    (tmp_path / 'bad.json').write_text('{not json')
    assert make_table.main([f'A={tmp_path / "bad.json"}']) == 2 and 'not results_post.json' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        make_split.main(['--data_root', str(tmp_path), '--take', 'ecssd', '--output', str(tmp_path / 's.txt')])
    assert e.value.code == 2 and 'expected SOURCE=COUNT' in capsys.readouterr().err


def test_settings_recorded_in_the_output_folder(tmp_path, caplog):
    src = tmp_path / 'in'
    src.mkdir()
    _save_pair(src, 'a', *_blob(30, 40))
    out = str(tmp_path / 'out')
    assert eval_cli.main(['--dir', str(src), '--output', out]) == 0
    before = (tmp_path / 'out' / 'a_mask.png').read_bytes()
    assert eval_cli.main(['--dir', str(src), '--output', out, '--L', '300', '--global_only']) == 2
    assert 'other settings (L, global_only, stride differ' in caplog.text  # lite's stride follows L
    assert (tmp_path / 'out' / 'a_mask.png').read_bytes() == before
    assert eval_cli.main(['--dir', str(src), '--output', out, '--L', '300', '--global_only', '--overwrite']) == 0
    assert eval_cli.main(['--dir', str(src), '--output', out, '--L', '300', '--global_only']) == 0  # same settings


def test_pixel_limit_is_ours_not_pil_s(tmp_path, caplog):
    src = tmp_path / 'in'
    src.mkdir()
    _save_pair(src, 'a', *_blob(30, 40))
    assert eval_cli.main(['--dir', str(src), '--output', str(tmp_path / 'o'), '--max_pixels', '1000']) == 1
    assert '40x30 is 0 megapixels, over the limit of 0 (--max_pixels raises it)' in caplog.text
    from util import image_io
    assert image_io.Image.MAX_IMAGE_PIXELS is None  # PIL's bomb guard would stop 90-179 MP photos
    assert image_io._LIMIT.get() == image_io.MAX_PIXELS  # the command's limit did not outlive it
    with image_io.pixel_limit(1000):  # a parameter of a block, not global state
        with pytest.raises(image_io.ImageReadError, match='over the limit'):
            image_io.read_rgb(src / 'a_im.png')
    assert image_io.read_rgb(src / 'a_im.png').shape == (30, 40, 3)


def test_a_tar_member_outside_the_folder_is_a_message(tmp_path):
    import io
    import tarfile
    from util.fetch import Candidate, DownloadError, Remote, Source, download_source
    archive = tmp_path / 'evil.tar'
    with tarfile.open(archive, 'w') as t:
        data = b'x'
        info = tarfile.TarInfo('../escape.txt')
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    root = tmp_path / 'data'
    (root / '.downloads').mkdir(parents=True)
    archive.rename(root / '.downloads' / 'evil.tar')
    with pytest.raises(DownloadError, match='not a valid archive'):
        download_source(Source('evil', 'tree', (Remote('evil.tar', (Candidate(url='file:///unused'),)),)), root)
    assert not (tmp_path / 'escape.txt').exists() and not (root / '.downloads' / 'evil.tar').exists()


@pytest.mark.parametrize('h,w', [(6, 6), (4, 10), (5, 40)])
def test_objects_in_tiny_images_do_not_vanish(h, w):
    from inference.refiner import Refiner
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[1:h - 1, 1:w - 1] = 255
    out = Refiner().refine(image, mask) > 127
    assert (out & (mask > 0)).sum() / (out | (mask > 0)).sum() >= 0.6  # measured 0.69-1.0; 0 before the fix


def test_instances_on_a_soft_mask_is_refused(tmp_path, caplog):
    image, _ = _blob(40, 56)
    soft = (np.arange(40 * 56) % 256).reshape(40, 56).astype(np.uint8)  # 256 grey levels
    Image.fromarray(image).save(tmp_path / 'a.jpg')
    Image.fromarray(soft).save(tmp_path / 'soft.png')
    assert refine_cli.main([str(tmp_path / 'a.jpg'), str(tmp_path / 'soft.png'), '--instances', '-o',
                            str(tmp_path / 'o.png')]) == 1
    assert 'grey levels: a soft mask, not an instance label map' in caplog.text and not (tmp_path / 'o.png').exists()


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    import os
    import subprocess
    import sys
    from util.atomic import ensure_folder
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f'.a_mask.{pid}-x1y2.tmp.png').write_bytes(b'half')
    (tmp_path / f'.b_mask.{os.getpid()}-z3.tmp.png').write_bytes(b'live')  # this process's: kept
    (tmp_path / 'c_mask.png').write_bytes(b'result')
    ensure_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f'.b_mask.{os.getpid()}-z3.tmp.png', 'c_mask.png']


def test_eval_post_reads_01_label_masks(tmp_path):
    import json
    import eval_post as eval_post_cli
    gt = np.zeros((30, 40), np.uint8)
    gt[5:25, 5:35] = 255
    Image.fromarray(gt).save(tmp_path / 'a_gt.png')
    Image.fromarray(gt).save(tmp_path / 'a_seg.png')
    Image.fromarray((gt > 0).astype(np.uint8)).save(tmp_path / 'a_mask.png')  # {0, 1}
    assert eval_post_cli.main(['--dir', str(tmp_path), '--workers', '1']) == 0
    assert json.loads((tmp_path / 'results_post.json').read_text())['summary']['new_iou'] == 1.0


def test_unknown_model_names_and_table_outputs(tmp_path, caplog, capsys):
    assert eval_cli.main(['--dir', str(tmp_path), '--output', str(tmp_path / 'o'), '--model', 'litee']) == 2
    assert 'litee: no such weights file, and not a known name; known names: lite, cascadepsp' in caplog.text
    import json
    from scripts import make_table
    results = tmp_path / 'r.json'
    results.write_text(json.dumps({'summary': {'old_iou': 0.9, 'new_iou': 0.93, 'iou_delta': 0.03, 'old_mba': 0.6,
                                               'new_mba': 0.75, 'mba_delta': 0.15}}))
    (tmp_path / 'afile').write_text('in the way')
    assert make_table.main([f'A={results}', '--output', str(tmp_path / 'afile' / 't.md')]) == 2
    assert 'cannot write' in capsys.readouterr().err
