"""Hostile use of the newer surfaces (segrefine, ONNX caching, MagNet and CRM evaluation, make_table, training):
each case gets a message naming the file or flag, and no input or result is lost. The checks live in shared
mechanisms (:mod:`util.atomic`, :mod:`util.runner`, :mod:`util.devices`), so each test exercises one example
of a class."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
import eval_post as eval_post_cli
import refine as refine_cli
import segrefine
import train as train_cli
from models.checkpoint import CheckpointError, save_checkpoint
from models.registry import build_model
from models.seeded import seed_model
from scripts import make_table
from util.devices import DeviceError, parse_device


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


def _blob(h: int = 40, w: int = 56, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from conftest import blob_scene
    return blob_scene(h, w, seed)


# --- outputs that would replace an input or each other -------------------------------------------------------

def test_make_table_refuses_to_overwrite_its_input(tmp_path, capsys):
    results = tmp_path / 'r.json'
    results.write_text(json.dumps({'summary': {'old_iou': 0.5, 'new_iou': 0.6, 'old_mba': 0.4, 'new_mba': 0.5}}))
    before = results.read_bytes()
    assert make_table.main([f'PSP={results}', '--output', str(results)]) == 2
    assert 'is the input PSP' in capsys.readouterr().err and results.read_bytes() == before
    (tmp_path / 'folder.md').mkdir()
    assert make_table.main([f'PSP={results}', '--output', str(tmp_path / 'folder.md')]) == 2
    assert 'is a folder' in capsys.readouterr().err


def test_refine_refuses_two_outputs_of_one_name(tmp_path, caplog):
    image, mask = _blob()
    Image.fromarray(image).save(tmp_path / 'a.jpg')
    Image.fromarray(mask).save(tmp_path / 'a.png')
    for flag in ('--visualize', '--cutout'):
        assert refine_cli.main([str(tmp_path / 'a.jpg'), str(tmp_path / 'a.png'), '-o', str(tmp_path / 'x.png'),
                                flag, str(tmp_path / 'x.png')]) == 2
        assert f'{flag} {tmp_path / "x.png"} and -o' in caplog.text and 'same file' in caplog.text
    assert not (tmp_path / 'x.png').exists()


def test_refine_dir_refuses_images_whose_outputs_collide(tmp_path, caplog, scenes):
    """a's panel is a_panel.png, which is also the mask of an image named a_panel: neither is written over the
    other; a third image goes on."""
    src, out = scenes(tmp_path / 'in', ['a', 'a_panel', 'b']), tmp_path / 'out'
    assert refine_cli.main(['--dir', str(src), '--output', str(out), '--visualize', '--L', '64']) == 1
    assert 'a_panel.png would also be written by a, a_panel' in caplog.text.replace(str(out) + '/', '')
    assert sorted(p.name for p in out.glob('*.png')) == ['b.png', 'b_panel.png']


def test_crm_scale_outputs_never_replace_another_samples_mask(tmp_path, caplog, scenes):
    """CRM writes 0.5_a_mask.png for sample a: a sample named 0.5_a would be overwritten and scored wrongly."""
    crm = tmp_path / 'crm.pth'
    save_checkpoint(crm, seed_model(build_model('crm'), 4))
    src, out = scenes(tmp_path / 'in', ['a', '0.5_a', 'c'], '{}_im.png', '{}_seg.png'), tmp_path / 'out'
    assert eval_cli.main(['--dir', str(src), '--output', str(out), '--model', str(crm), '--scales', '0.5', '1.0']) == 1
    assert '0.5_a_mask.png would also be written by 0.5_a, a' in caplog.text.replace(str(out.resolve()) + '/', '')
    assert not (out / '0.5_a_mask.png').exists() and (out / 'c_mask.png').is_file()


def _magnet_files(tmp_path: Path, lines: list[str]) -> list[str]:
    from models.magnet.refinement import RefinementMagNet
    from models.magnet.system import MagNetSystem
    from models.seeded import seeded_state_dict
    torch.save({'model.' + k: v for k, v in seeded_state_dict(MagNetSystem('fpn', 7).backbone, 0).items()},
               tmp_path / 'fpn.pth')
    torch.save(seeded_state_dict(RefinementMagNet(7), 3), tmp_path / 'ref.pth')
    (tmp_path / 'list.txt').write_text('\n'.join(lines) + '\n')
    return ['--method', 'magnet', '--dataset', 'deepglobe', '--root', str(tmp_path), '--datalist',
            str(tmp_path / 'list.txt'), '--scales', '12-8,24-16', '--crop_size', '12', '8', '--input_size', '16', '12',
            '--model', 'fpn', '--pretrained', str(tmp_path / 'fpn.pth'), '--pretrained_refinement',
            str(tmp_path / 'ref.pth'), '--num_classes', '7', '--save_pred', '--save_dir', str(tmp_path / 'out')]


def test_magnet_images_of_one_stem_in_two_folders(tmp_path, caplog, capsys):
    for folder in ('data', 'data/b', 'data/c'):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ('data/0_sat.png', 'data/b/0_sat.png', 'data/c/1_sat.png'):
        Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(tmp_path / name)
    argv = _magnet_files(tmp_path, ['data/0_sat.png', 'data/b/0_sat.png', 'data/c/1_sat.png'])
    assert eval_cli.main(argv) == 1
    assert '0_sat_pred.png would also be written by' in caplog.text
    assert sorted(p.name for p in (tmp_path / 'out').glob('*.png')) == ['1_sat_coarse.png', '1_sat_pred.png']


def test_magnet_without_labels_is_not_scored(tmp_path, caplog, capsys):
    (tmp_path / 'data').mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(
        tmp_path / 'data' / 'x.png')
    assert eval_cli.main(_magnet_files(tmp_path, ['data/x.png'])) == 0
    assert 'No labels: not scored (predictions written)' in capsys.readouterr().out
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert results['scored_images'] == 0 and 'refined' not in results and (tmp_path / 'out' / 'x_pred.png').is_file()


def test_eval_post_checks_its_output_files_before_the_work(tmp_path, caplog):
    gt = np.zeros((20, 30), np.uint8)
    gt[5:15, 5:25] = 255
    for suffix in ('gt', 'seg', 'mask'):
        Image.fromarray(gt).save(tmp_path / f'a_{suffix}.png')
    for name in ('results_post.json', 'results_post.txt'):
        (tmp_path / name).mkdir()
        assert eval_post_cli.main(['--dir', str(tmp_path), '--workers', '1']) == 2
        assert f'{tmp_path / name}: is a folder' in caplog.text
        (tmp_path / name).rmdir()
        caplog.clear()
    assert not (tmp_path / 'results_post.json').exists()


def test_eval_post_explains_an_undefined_iou(tmp_path):
    empty = np.zeros((20, 30), np.uint8)
    for suffix in ('gt', 'seg', 'mask'):
        Image.fromarray(empty).save(tmp_path / f'a_{suffix}.png')
    assert eval_post_cli.main(['--dir', str(tmp_path), '--workers', '1']) == 0
    assert 'IoU is undefined (nan): no foreground' in (tmp_path / 'results_post.txt').read_text()


# --- the ONNX export cache ------------------------------------------------------------------------------------

def test_two_processes_exporting_into_one_cache(tmp_path, monkeypatch):
    """Each exporter writes a folder of its own and renames it into place: a second exporter starting while the
    first is half-way never deletes the first's files (before, the first died with FileNotFoundError)."""
    from inference import onnx_backend

    def slow_export(model, folder):
        folder = Path(folder)
        for name in ('global.onnx', 'local.onnx', 'local3.onnx'):
            (folder / name).write_bytes(b'graph')
            time.sleep(0.2)
        (folder / onnx_backend.META).write_text('{}')
        return folder
    monkeypatch.setattr(onnx_backend, 'export_cascade', slow_export)
    monkeypatch.setattr(onnx_backend, 'GRAPHS', {'global': (), 'local': (), 'local3': ()})
    model = build_model('lite')
    results, errors = [], []

    def run() -> None:
        try:
            results.append(onnx_backend.cached_export(model, tmp_path))
        except Exception as e:  # noqa: BLE001 - the test reports whatever the race raised
            errors.append(e)
    first = threading.Thread(target=run)
    first.start()
    time.sleep(0.3)
    run()
    first.join()
    assert not errors and len(results) == 2 and results[0] == results[1] and onnx_backend.is_export(results[0])
    assert [p.name for p in (tmp_path / 'onnx').iterdir()] == [results[0].name]  # no temporary folder left


def test_a_damaged_cached_export_is_made_again(tmp_path, monkeypatch, caplog):
    from inference import onnx_backend, refiner
    calls = []
    monkeypatch.setattr(refiner, 'cache_dir', lambda: tmp_path)
    monkeypatch.setattr(onnx_backend, 'cached_export', lambda model, cache, again=False: calls.append(again) or tmp_path)

    class Cascade:
        def __init__(self, folder):
            if len(calls) < 2:
                raise ValueError(f'{folder}/global.onnx: cannot load the ONNX graph: INVALID_PROTOBUF')
    monkeypatch.setattr(onnx_backend, 'OnnxCascade', Cascade)
    assert isinstance(refiner.Refiner._onnx(None, build_model('lite')), Cascade)
    assert calls == [False, True] and 'INVALID_PROTOBUF; exporting' in caplog.text


# --- devices -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('spec,expected', [('CPU', 'cpu'), (' cpu ', 'cpu'), ('auto', None), (None, None)])
def test_device_strings(spec, expected):
    assert str(parse_device(spec)) == (expected or ('cuda' if torch.cuda.is_available() else 'cpu'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message of a machine without a GPU')
@pytest.mark.parametrize('spec', ['cuda', 'cuda:0', 'gpu', 'GPU', 'cuda:7'])
def test_no_gpu_is_one_message(spec, tmp_path, caplog):
    with pytest.raises(DeviceError, match='use --device cpu'):
        parse_device(spec)
    image, mask = _blob()
    Image.fromarray(image).save(tmp_path / 'a.jpg')
    Image.fromarray(mask).save(tmp_path / 'a.png')
    assert refine_cli.main([str(tmp_path / 'a.jpg'), str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o.png'),
                            '--device', spec]) == 2
    assert f'--device {spec}: ' in caplog.text and 'use --device cpu' in caplog.text
    assert eval_cli.main(['--dir', str(tmp_path), '--output', str(tmp_path / 'o'), '--device', spec]) == 2


@pytest.mark.parametrize('spec,message', [('tpu', 'unknown device'), ('cuda:x', 'unknown device'),
                                          ('cpu:3', 'no index'), (3, 'a device is a string')])
def test_malformed_device_strings(spec, message):
    with pytest.raises(DeviceError, match=message):
        parse_device(spec)


# --- segrefine's arguments -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def pip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('pip')
    state = seed_model(build_model('cascadepsp'), 0).state_dict()
    torch.save({'module.' + k: v for k, v in state.items()}, folder / 'model')
    return folder


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(max_size=-1), ValueError, 'max_size must be at least 8'),
    (dict(max_size='500'), TypeError, 'max_size must be an integer'),
    (dict(device='mps'), DeviceError, 'MPS'),
])
def test_segrefine_constructor_arguments(pip_folder, kwargs, error, message):
    with pytest.raises(error, match=message):
        segrefine.Refiner(model_folder=pip_folder, download_and_check_model=False, **kwargs)


def test_segrefine_refine_arguments_and_masks(pip_folder, caplog):
    refiner = segrefine.Refiner(model_folder=pip_folder, download_and_check_model=False)
    image, mask = _blob()
    for L in ('900', None, 3.5):
        with pytest.raises(TypeError, match='L must be an integer'):
            refiner.refine(image, mask, L=L)
    with pytest.raises(ValueError, match=r'mask must be H x W .*got shape \(40, 56, 3\)'):
        refiner.refine(image, np.repeat(mask[..., None], 3, 2), fast=True, L=64)
    empty = refiner.refine(image, (mask > 0).astype(np.float32), fast=True, L=64)  # 0..1: empty, as the package
    assert 'within [0, 1]' in caplog.text and empty.max() <= empty.min() + 255


def test_segrefine_paths_and_offline(tmp_path, monkeypatch):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    with pytest.raises(CheckpointError, match='model_folder .*: is a file'):
        segrefine.Refiner(model_folder=afile)
    (tmp_path / 'f' / 'model').mkdir(parents=True)
    with pytest.raises(CheckpointError, match='is a folder; the weights are a file'):
        segrefine.Refiner(model_folder=tmp_path / 'f')
    from util.fetch import DownloadError

    def offline(*args, **kwargs):
        raise DownloadError('https://example.invalid/model: <urlopen error [Errno -3] Temporary failure>')
    monkeypatch.setattr(segrefine, 'download_source', offline)
    with pytest.raises(CheckpointError, match='by hand and put it at .*empty/model'):
        segrefine.Refiner(model_folder=tmp_path / 'empty')


# --- training ----------------------------------------------------------------------------------------------

def test_train_preset_of_another_method(caplog, capsys):
    with pytest.raises(SystemExit):
        train_cli.main(['NULL', '--preset', 'lite', '--method', 'magnet'])
    assert "invalid choice: 'lite'" in capsys.readouterr().err
    from methods import METHODS
    with pytest.raises(ValueError, match='the crm method has the presets crm_compact'):
        train_cli._run_stages(METHODS['crm'], 'lite', None, 'x', {})


def test_train_preset_chain_is_checked_before_the_first_stage(caplog):
    assert train_cli.main(['probe', '--preset', 'lite', '-i', '20']) == 2
    assert 'stage stage2 starts from checkpoint_2400.pth of stage stage1' in caplog.text
    assert 'ends at iteration 20' in caplog.text


def test_train_resume_from_shipped_weights(caplog):
    assert train_cli.main(['--resume', 'models/weights/lite.pth']) == 2
    assert 'holds no run to resume' in caplog.text and '--load models/weights/lite.pth' in caplog.text
    assert 'saves/' not in caplog.text


def test_training_on_a_full_disk(tmp_path, tiny_data, train_args, monkeypatch, caplog):
    tiny_data()

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b'\0' * 10)  # part of the file reached the disk, then the stream failed
        raise RuntimeError('[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: basic_ios::clear: '
                           'iostream error')
    monkeypatch.setattr(torch, 'save', full_disk)
    assert train_cli.main(train_args()) == 2
    assert 'could not write the checkpoint' in caplog.text and 'disk full' in caplog.text
    assert not [p for p in (tmp_path / 'saves').rglob('*.pth')] and not list((tmp_path / 'saves').rglob('.*tmp*'))


# --- scales and downloads ----------------------------------------------------------------------------------

def test_descending_scales(caplog):
    from methods.crm.config import CRMConfig
    from methods.magnet.config import MagNetConfig
    CRMConfig(scales=[0.5, 0.25])
    assert '--scales 0.5 0.25: not in increasing order' in caplog.text
    with pytest.raises(ValueError, match='larger than the one before'):
        MagNetConfig(scales='48-32,24-16,12-8', crop_size=[12, 8], input_size=[12, 8])


def test_a_trickling_download_stalls_with_an_honest_message(tmp_path, monkeypatch):
    """A server that sends a few bytes at a time would never hit the socket's timeout: the transfer is stopped
    when it receives less than 64 KiB within the timeout, and an empty .part file is not called partial data."""
    import http.server
    from util import fetch

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', '100000')
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b'x')
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/f'
        with pytest.raises(fetch.DownloadError, match=r'stalled: \d+ bytes in 1 s .* bytes kept in'):
            fetch.fetch(url, tmp_path / 'f', timeout=0.5, progress=False)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize('rank,ok_here', [(1, False), (0, True)])
def test_torchrun_rank_failing_its_setup_meets_the_others(tmp_path, monkeypatch, caplog, rank, ok_here, scenes):
    """Under torchrun, a rank that fails on a bad setting still meets the others where they gather their reports
    (so no rank dies on gloo's "Connection closed by peer"), and rank 0 prints the message once. Two ranks are
    played in one process: this one, and the other's gathered (report, error)."""
    from util import distributed
    from util.runner import RunReport
    src = scenes(tmp_path / 'in', ['a'], '{}_im.png', '{}_seg.png')
    (tmp_path / 'afile').write_text('x')
    other = (RunReport(done=1), None) if not ok_here else (RunReport(), f'{tmp_path / "afile"}: cannot write output')
    gathered = []

    def gather(obj):
        gathered.append(obj)
        return [obj, other] if rank == 0 else [other, obj]
    monkeypatch.setattr(distributed, 'init', lambda: (rank, rank, 2))
    monkeypatch.setattr(distributed, 'gather_objects', gather)
    output = tmp_path / ('out' if ok_here else 'afile')  # this rank's setup fails on a file in the way
    assert eval_cli.main(['--dir', str(src), '--output', str(output), '--L', '64', '--device', 'cpu']) == 2
    assert len(gathered) == 1 and (gathered[0][1] is None) == ok_here  # it reached the gathering, error or not
    errors = [r.message for r in caplog.records if r.levelname == 'ERROR']
    assert errors == ([] if rank else [f'{tmp_path / "afile"}: cannot write output (rank 1)'])
