"""MagNet as a method of this codebase: eval.py --method magnet on hostile inputs, the fixes of the authors'
crashes and bugs, train.py --method magnet (a few CPU iterations, then a resume), weights by name."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import download_dataset
import eval as eval_cli
import train as train_cli
from methods.magnet.config import MagNetConfig
from methods.magnet.inference import n_points, progressive
from models.checkpoint import CheckpointError, read_checkpoint
from models.magnet.refinement import RefinementMagNet
from models.magnet.system import MagNetSystem
from models.seeded import seed_model, seeded_state_dict

SMALL = dict(scales='12-8,24-16,48-32', crop_size=[12, 8], input_size=[16, 12])


@pytest.fixture(scope='module')
def system() -> MagNetSystem:
    model = MagNetSystem('fpn', 7, 1)
    seed_model(model.backbone, 0)
    seed_model(model.refinements[0], 3)
    return model.eval()


def _scene(rng, h: int = 32, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[:, : w // 2] //= 3
    label = np.zeros((h, w, 3), np.uint8)
    label[:, w // 2:] = (0, 255, 255)
    label[: h // 4] = (255, 255, 0)
    return image, label


def test_float_points_and_even_kernel_do_not_crash(system, rng):
    """Q7: a count above the refined area is a float and a TypeError in theirs; Q9: an even kernel breaks theirs."""
    image, _ = _scene(rng)
    cfg = MagNetConfig(**SMALL, n_patches=1, n_points=10_000.0, smooth_kernel=4)
    assert n_points(cfg, 24, 16, 1, 4) == 96  # capped at the refined area
    refined, coarse = progressive(system, image, cfg)
    assert refined.shape == coarse.shape == (1, 7, 32, 48) and torch.isfinite(refined).all()


def test_fast_as_paper_picks_the_most_uncertain_patches(system, rng):
    image, _ = _scene(rng)
    traces = {}
    for paper in (False, True):
        trace: list[dict] = []
        progressive(system, image, MagNetConfig(**SMALL, n_patches=1, n_points=0.9, fast_as_paper=paper), trace=trace)
        traces[paper] = trace[0]
    u = traces[False]['patch_uncertainty']
    assert int(traces[False]['selected_ids'][0]) == int(u.argmin())  # the authors' (Q3)
    assert int(traces[True]['selected_ids'][0]) == int(u.argmax())   # the paper's
    mask = traces[True]['mask']
    if mask.any():  # the error survives inside the refined patch, and is zero outside it
        assert float(traces[True]['error_raw'][~mask].abs().max()) == 0.0


def _files(tmp_path, rng, n_good: int = 2) -> list[str]:
    torch.save({**{'model.' + k: v for k, v in seeded_state_dict(MagNetSystem('fpn', 7).backbone, 0).items()},
                'loss.criterion.weight': torch.ones(7)}, tmp_path / 'fpn.pth')
    torch.save(seeded_state_dict(RefinementMagNet(7), 3), tmp_path / 'ref.pth')
    data = tmp_path / 'data'
    data.mkdir()
    lines = []
    for i in range(n_good):
        image, label = _scene(rng)
        label[0, 0] = (1, 2, 3)  # off the palette: counted, reported, read as class 0
        Image.fromarray(image).save(data / f'{i}_sat.png')
        Image.fromarray(label).save(data / f'{i}_mask.png')
        lines.append(f'data/{i}_sat.png\tdata/{i}_mask.png')
    Image.fromarray(_scene(rng)[0]).save(data / 'small_sat.png')
    Image.fromarray(_scene(rng, 16, 24)[1]).save(data / 'small_mask.png')  # a label of the wrong size
    (data / 'broken_sat.png').write_bytes(b'not a png')
    lines += ['data/small_sat.png\tdata/small_mask.png', 'data/broken_sat.png\tdata/0_mask.png']
    (tmp_path / 'list.txt').write_text('\n'.join(lines) + '\n')
    return ['--method', 'magnet', '--dataset', 'deepglobe', '--root', str(tmp_path), '--datalist',
            str(tmp_path / 'list.txt'), '--scales', SMALL['scales'], '--crop_size', '12', '8', '--input_size', '16',
            '12', '--model', 'fpn', '--pretrained', str(tmp_path / 'fpn.pth'), '--pretrained_refinement',
            str(tmp_path / 'ref.pth'), '--num_classes', '7', '--n_points', '0.5', '--smooth_kernel', '3']


def test_eval_reports_bad_items_and_goes_on(tmp_path, rng, caplog):
    argv = _files(tmp_path, rng) + ['--save_pred', '--save_dir', str(tmp_path / 'out')]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # not capsys: progress bars keep the first stderr they see
        assert eval_cli.main(argv) == 1  # two bad items
    text = caplog.text
    assert 'small_mask.png: size 24x16 differs from' in text and 'broken_sat.png: cannot read image' in text
    assert '1 pixel(s) of no deepglobe colour' in text
    for i in range(2):
        pred = np.asarray(Image.open(tmp_path / 'out' / f'{i}_sat_pred.png'))
        assert pred.dtype == np.uint8 and pred.shape == (32, 48) and pred.max() < 7
        assert (tmp_path / 'out' / f'{i}_sat_coarse.png').is_file()
    assert not list((tmp_path / 'out').glob('*.tmp*'))
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert results['images'] == 2 and len(results['failures']) == 2
    assert len(results['refined']['IoU']) == 7 and np.array(results['coarse']['confusion_matrix']).sum() == 2 * 32 * 48
    assert sum(results['label_pixels_of_unknown_id_or_colour'].values()) == 2
    out = printed.getvalue()
    assert 'Coarse IoU:' in out and 'Refinement IoU:' in out


def test_eval_refuses_a_wrong_checkpoint(tmp_path, rng, caplog):
    argv = _files(tmp_path, rng)
    torch.save(seeded_state_dict(RefinementMagNet(19), 0), tmp_path / 'ref.pth')  # 19 classes, not 7
    assert eval_cli.main(argv + ['--save_dir', str(tmp_path / 'out')]) == 2
    assert 'ref.pth' in caplog.text and 'mis-shaped' in caplog.text
    (tmp_path / 'fpn.pth').write_bytes(b'truncated')
    assert eval_cli.main(argv + ['--save_dir', str(tmp_path / 'out')]) == 2
    assert 'fpn.pth: not a readable PyTorch checkpoint' in caplog.text


def test_train_method_magnet_and_resume(tmp_path, rng, caplog):
    _files(tmp_path, rng)  # the weights and images; a datalist of the two good pairs below
    (tmp_path / 'list.txt').write_text('data/0_sat.png\tdata/0_mask.png\ndata/1_sat.png\tdata/1_mask.png\n')
    train_argv = ['--method', 'magnet', '--task_name', 'run', '--dataset', 'deepglobe', '--root', str(tmp_path), '--datalist',
                  str(tmp_path / 'list.txt'), '--scales', SMALL['scales'], '--crop_size', '12', '8', '--input_size',
                  '16', '12', '--model', 'fpn', '--pretrained', str(tmp_path / 'fpn.pth'), '--pretrained_refinement',
                  str(tmp_path / 'ref.pth'), '--num_classes', '7', '-b', '1', '--epochs', '3', '--milestones', '2',
                  '--num_workers', '0', '--device', 'cpu', '--save_dir', str(tmp_path / 'saves'),
                  '--log_dir', str(tmp_path / 'runs'), '--log_interval', '1']
    caplog.set_level('INFO')
    assert train_cli.main(train_argv) == 0
    (run,) = (tmp_path / 'saves').iterdir()
    final = read_checkpoint(run / 'checkpoint_final.pth')
    assert final['arch'] == 'magnet_refinement' and final['hparams']['num_classes'] == 7
    assert final['iteration'] == 6 and final['config']['optimizer'] == 'sgd'  # 3 epochs of 2 items at batch 1
    assert sorted(p.name for p in run.glob('checkpoint_*.pth')) == ['checkpoint_2.pth', 'checkpoint_4.pth',
                                                                     'checkpoint_final.pth']
    assert 'ohem_loss=' in caplog.text and 'lr=0.0001' in caplog.text  # x0.1 from epoch 2 (iteration 4)
    caplog.clear()
    (run / 'checkpoint_final.pth').unlink()  # as if killed after epoch 2
    assert train_cli.main(['--resume', str(run / 'checkpoint_4.pth')]) == 0
    assert 'at iteration 4' in caplog.text and 'it 5 train/' in caplog.text and 'it 1 train/' not in caplog.text
    assert read_checkpoint(run / 'checkpoint_final.pth')['iteration'] == 6


def test_weights_by_name(tmp_path, monkeypatch):
    """magnet_cityscapes: a backbone and three refinement files from the authors' server (a local one here),
    size-checked, each loaded strictly on the CPU."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    from models import hub
    from util.fetch import Remote, Source, url_candidate
    from models.magnet.hrnet_ocr import HRNetOCR
    files = {}
    for name in ('cityscapes_hrnet.pth', 'cityscapes_refinement_512.pth', 'cityscapes_refinement_1024.pth',
                 'cityscapes_refinement_2048.pth'):
        path = tmp_path / name
        if 'hrnet' in name:
            torch.save({**{'model.' + k: v for k, v in seeded_state_dict(HRNetOCR(19), 0).items()},
                        'loss.criterion.weight': torch.ones(19)}, path)
        else:
            torch.save(seeded_state_dict(RefinementMagNet(19), len(files)), path)
        files[name] = path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            data = files.get(self.path.lstrip('/'))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{httpd.server_address[1]}/'
    try:
        for name in files:  # the built-in sizes are the released files'; these seeded ones are the same layout
            size = hub.MAGNET_FILES[name]
            assert size <= len(files[name]) <= size + 2**20
            monkeypatch.setitem(hub.WEIGHT_SOURCES, name, Source(name, 'file', (
                Remote(name, (url_candidate(url + name),), size_range=(size, size + 2**20)),)))
        monkeypatch.setenv('CASCADEPSP_HOME', str(tmp_path / 'cache'))
        model = hub.load_pretrained('magnet_cityscapes')
        assert isinstance(model, MagNetSystem) and len(model.refinements) == 3 and model.num_classes == 19
        assert hashlib.md5((tmp_path / 'cache' / 'cityscapes_hrnet.pth').read_bytes()).digest() == \
            hashlib.md5(files['cityscapes_hrnet.pth']).digest()
        assert download_dataset.main(['--what', 'magnet_cityscapes', '--root', str(tmp_path / 'data')]) == 0
        assert sorted(p.name for p in (tmp_path / 'data').glob('*.pth')) == sorted(files)
        files['cityscapes_refinement_512.pth'] = b'\0' * 100  # the wrong size: refused whatever serves it
        monkeypatch.setenv('CASCADEPSP_HOME', str(tmp_path / 'other'))
        with pytest.raises(CheckpointError, match='100 bytes'):
            hub.load_pretrained('magnet_cityscapes')
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_predictions_never_replace_an_input(tmp_path, rng, caplog):
    argv = _files(tmp_path, rng)
    data = tmp_path / 'data'
    (data / '0_sat_pred.png').write_bytes((data / '0_mask.png').read_bytes())  # a label named like an output
    before = (data / '0_sat_pred.png').read_bytes()
    (tmp_path / 'list.txt').write_text('data/0_sat.png\tdata/0_sat_pred.png\ndata/1_sat.png\tdata/1_mask.png\n')
    assert eval_cli.main(argv + ['--save_pred', '--save_dir', str(data)]) == 1
    assert (data / '0_sat_pred.png').read_bytes() == before and 'refusing to write over an input' in caplog.text
    assert (data / '1_sat_pred.png').is_file()
