"""download_dataset.py against a local HTTP server (127.0.0.1) serving archives built by the test."""
from __future__ import annotations

import hashlib
import io
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

import download_dataset

from dataset.readers import class_folder_pairs, flat_pairs
from dataset.sources import SOURCES
from models.hub import WEIGHT_SOURCES
from util.fetch import Candidate, Remote, Source, drive_confirmation_url


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG')
    return buf.getvalue()


def _jpg(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='JPEG')
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _send_file(handler: BaseHTTPRequestHandler, data: bytes, cut: bool, content_type: str | None = None) -> None:
    """Answer with ``data`` (206 from the Range start when asked); ``cut`` sends half of it and closes."""
    start = 0
    if handler.headers.get('Range'):
        start = int(handler.headers['Range'].split('=')[1].split('-')[0])
        handler.send_response(206)
        handler.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
    else:
        handler.send_response(200)
    body = data[start:]
    if content_type:
        handler.send_header('Content-Type', content_type)
    handler.send_header('Content-Length', str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[:len(body) // 2] if cut else body)  # a cut: the client sees a short read


def _start(handler: type) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f'http://127.0.0.1:{httpd.server_address[1]}'


class _Server:
    """Serves ``files`` with Range support; a name in ``cut_once`` is cut after half its bytes, once."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut_once, self.requests = files, set(), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip('/')
                outer.requests.append((name, self.headers.get('Range')))
                if name not in outer.files:
                    self.send_error(404)
                    return
                cut = name in outer.cut_once
                outer.cut_once.discard(name)
                _send_file(self, outer.files[name], cut)

        self.httpd, self.url = _start(Handler)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    image = np.full((20, 30, 3), 90, np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 5:25] = 255
    files = {
        'images.zip': _zip({'images/0001.jpg': _jpg(image), 'images/0002.jpg': _jpg(image)}),
        'ground_truth_mask.zip': _zip({'ground_truth_mask/0001.png': _png(mask), 'ground_truth_mask/0002.png': _png(mask)}),
        'fewshot_data.zip': _zip({'fewshot_data/cat/1.jpg': _jpg(image), 'fewshot_data/cat/1.png': _png(mask // 255),
                                  'fewshot_data/dog/1.jpg': _jpg(image), 'fewshot_data/dog/1.png': _png(mask // 255)}),
        'BIG.zip': _zip({'BIG/val/a_im.jpg': _jpg(image), 'BIG/val/a_seg.png': _png(mask), 'BIG/val/a_gt.png': _png(mask)}),
        'model': b'\x00weights' * 1000,
    }
    files['SHA256SUMS'] = ''.join(f'{hashlib.sha256(d).hexdigest()}  {n}\n' for n, d in files.items()).encode()
    s = _Server(files)
    yield s
    s.close()


def test_download_resume_idempotent(server, tmp_path, caplog):
    root = tmp_path / 'data'
    server.cut_once.add('images.zip')
    args = ['--what', 'ecssd', 'fss', 'BIG', '--root', str(root), '--mirror', server.url]
    assert download_dataset.main(args) == 1  # the cut transfer fails, naming its URL and reason
    assert f'{server.url}/images.zip' in caplog.text and 'run again to continue' in caplog.text
    assert not (root / 'ecssd').exists() and (root / '.downloads' / 'images.zip.part').is_file()
    assert (root / 'fss').is_dir() and (root / 'BIG' / 'val' / 'a_gt.png').is_file()

    server.requests.clear()
    assert download_dataset.main(args) == 0
    fetched = [name for name, _ in server.requests if name != 'SHA256SUMS']
    assert fetched == ['images.zip', 'ground_truth_mask.zip']  # finished parts are not fetched again
    assert server.requests[1][1] is not None and server.requests[1][1].startswith('bytes=')  # resumed with Range
    pairs, problems = flat_pairs(root / 'ecssd')
    assert len(pairs) == 2 and not problems  # images and masks both arrive
    pairs, _ = class_folder_pairs(root / 'fss')
    assert sorted(p.image.parent.name for p in pairs) == ['cat', 'dog']
    assert not list((root / '.downloads').iterdir()) and not list(root.glob('.ecssd.*'))


def test_checksum_mismatch_and_missing_url(server, tmp_path, caplog):
    root = tmp_path / 'data'
    server.files['SHA256SUMS'] = f"{'0' * 64}  BIG.zip\n".encode()
    assert download_dataset.main(['--what', 'BIG', '--root', str(root), '--mirror', server.url]) == 1
    assert 'SHA-256 mismatch' in caplog.text and not (root / 'BIG').exists()
    caplog.clear()
    # An explicit URL works without a mirror; an unreachable one reports URL and reason.
    assert download_dataset.main(['--what', 'BIG', '--root', str(root), '--url', f'BIG={server.url}/BIG.zip']) == 0
    assert download_dataset.main(['--what', 'model', '--root', str(root), '--url', 'model=http://127.0.0.1:9/model']) == 1
    assert 'http://127.0.0.1:9/model' in caplog.text
    # A link that answers with a web page that is no Drive confirmation (a login page) is refused.
    server.files['model'] = b'<!DOCTYPE html><html><body>Sign in to continue</body></html>'
    caplog.clear()
    assert download_dataset.main(['--what', 'model', '--root', str(root), '--mirror', server.url]) == 1
    assert 'returned an HTML page' in caplog.text and not (root / 'model').exists()
    assert not (root / '.downloads' / 'model').exists()


class _Drive:
    """Imitates Google Drive: /uc?export=download&id=ID answers with the "can't scan this file for viruses"
    page, whose form (id, export, confirm, uuid) leads to /download, which alone serves the file (with Range).
    Unknown ids answer 404; a name in ``cut_once`` is cut after half its bytes, once."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests, self.cut_once = files, [], set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                outer.requests.append((url.path, q, self.headers.get('Range')))
                file_id = q.get('id')
                if file_id not in outer.files:
                    self.send_error(404)
                    return
                if url.path == '/uc':
                    page = (f'<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
                            f'<p>Google Drive can&#39;t scan this file for viruses.</p>'
                            f'<form id="download-form" action="{outer.url}/download" method="get">'
                            f'<input type="submit" value="Download anyway"/>'
                            f'<input type="hidden" name="id" value="{file_id}">'
                            f'<input type="hidden" name="export" value="download">'
                            f'<input type="hidden" name="confirm" value="t">'
                            f'<input type="hidden" name="uuid" value="0a1b2c3d"></form></body></html>').encode()
                    self.send_response(200)
                    self.send_header('Content-Type', 'text/html; charset=utf-8')
                    self.send_header('Content-Length', str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if url.path != '/download' or q != {'id': file_id, 'export': 'download', 'confirm': 't', 'uuid': '0a1b2c3d'}:
                    self.send_error(403)
                    return
                cut = file_id in outer.cut_once
                outer.cut_once.discard(file_id)
                _send_file(self, outer.files[file_id], cut, 'application/octet-stream')

        self.httpd, self.url = _start(Handler)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def drive(monkeypatch):
    image = np.full((20, 30, 3), 90, np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 5:25] = 255
    fss = _zip({'fewshot_data/cat/1.jpg': _jpg(image), 'fewshot_data/cat/1.png': _png(mask // 255)})
    big = _zip({'BIG/test/a_im.jpg': _jpg(image), 'BIG/test/a_seg.png': _png(mask), 'BIG/test/a_gt.png': _png(mask)})
    # FSS-1000 under its id; BIG only under its *backup* id (the primary answers 404).
    d = _Drive({SOURCES['fss'].remotes[0].candidates[0].drive_id: fss,
                SOURCES['BIG'].remotes[0].candidates[1].drive_id: big})
    monkeypatch.setenv('CASCADEPSP_DRIVE_URL', d.url + '/uc?export=download&id={id}')
    yield d
    d.close()


def test_google_drive_confirmation_backup_and_resume(drive, tmp_path, caplog):
    root = tmp_path / 'data'
    fss_id = SOURCES['fss'].remotes[0].candidates[0].drive_id
    drive.cut_once.add(fss_id)
    assert download_dataset.main(['--what', 'fss', 'BIG', '--root', str(root)]) == 1  # fss cut mid-way
    assert 'run again to continue' in caplog.text and not (root / 'fss').exists()
    primary, backup = (c.drive_id for c in SOURCES['BIG'].remotes[0].candidates)
    assert [(p, q['id']) for p, q, _ in drive.requests if q.get('id') in (primary, backup)][:2] == \
        [('/uc', primary), ('/uc', backup)]  # the primary's 404 hands over to the backup
    assert (root / 'BIG' / 'test' / 'a_gt.png').is_file()
    drive.requests.clear()
    assert download_dataset.main(['--what', 'fss', 'BIG', '--root', str(root)]) == 0
    confirmed = [(q, rng) for p, q, rng in drive.requests if p == '/download']
    assert len(confirmed) == 1 and confirmed[0][1].startswith('bytes=')  # resumed through the form, with Range
    assert confirmed[0][0]['confirm'] == 't' and confirmed[0][0]['uuid'] == '0a1b2c3d'
    pairs, _ = class_folder_pairs(root / 'fss')
    assert len(pairs) == 1


def test_drive_confirmation_url_parsing():
    page = ('<html><body><form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
            '<input type="hidden" name="id" value="ABC"><input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1"></form></body></html>')
    url = drive_confirmation_url(page, 'https://drive.google.com/uc?export=download&id=ABC')
    assert url == 'https://drive.usercontent.google.com/download?id=ABC&export=download&confirm=t&uuid=u-1'
    assert drive_confirmation_url('<html><body>Sign in</body></html>', 'https://x') is None


def _model_source(url: str, md5: str) -> Source:
    return Source('model', 'file', (Remote('model', (Candidate(url=url, md5=md5),)),))


def test_weights_by_name_md5_and_offline(server, tmp_path, monkeypatch, caplog):
    """'cascadepsp' resolves to $CASCADEPSP_HOME/model: fetched once, MD5-verified, atomically written."""
    from models.checkpoint import CheckpointError, save_checkpoint
    from models.hub import load_pretrained, resolve_weights
    from models.registry import build_model
    monkeypatch.setenv('CASCADEPSP_HOME', str(tmp_path / 'cache'))
    torch_file = tmp_path / 'weights.pth'  # a real (small) checkpoint stands in for the 259 MB release
    save_checkpoint(torch_file, build_model('lite', widths=(8, 8, 8, 8, 8), psp_channels=8, up_channels=(8, 8)))
    server.files['model'] = torch_file.read_bytes()
    md5 = hashlib.md5(server.files['model']).hexdigest()

    monkeypatch.setitem(WEIGHT_SOURCES, 'model', _model_source(f'{server.url}/model', '0' * 32))
    with pytest.raises(CheckpointError) as err:
        resolve_weights('cascadepsp')
    text = str(err.value)
    assert f'{server.url}/model' in text and 'expected ' + '0' * 32 in text and f'received {md5}' in text
    assert not (tmp_path / 'cache' / 'model').exists() and not (tmp_path / 'cache' / '.downloads' / 'model').exists()

    monkeypatch.setitem(WEIGHT_SOURCES, 'model', _model_source(f'{server.url}/model', md5))
    path = resolve_weights('cascadepsp')
    assert path == tmp_path / 'cache' / 'model' and path.read_bytes() == server.files['model']
    server.requests.clear()
    assert load_pretrained('cascadepsp').arch == 'lite'  # built from what the file records
    assert not server.requests  # found in the cache: not fetched again

    monkeypatch.setenv('CASCADEPSP_HOME', str(tmp_path / 'empty'))
    monkeypatch.setitem(WEIGHT_SOURCES, 'model', _model_source('http://127.0.0.1:9/model', md5))
    with pytest.raises(CheckpointError) as err:
        resolve_weights('cascadepsp')
    assert 'http://127.0.0.1:9/model' in str(err.value) and str(tmp_path / 'empty' / 'model') in str(err.value)
    import eval as eval_cli
    assert eval_cli.main(['--dir', str(tmp_path), '--output', str(tmp_path / 'o'), '--model', 'cascadepsp']) == 2
    assert 'put it at' in caplog.text


def test_crm_weights_need_a_url_and_the_right_size(server, tmp_path, monkeypatch, caplog):
    """CRM's file has no direct link (OneDrive): the error says where to get it; a file of the wrong size is
    refused and deleted whatever URL served it."""
    root = tmp_path / 'data'
    assert download_dataset.main(['--what', 'crm', '--root', str(root)]) == 1
    assert 'no download URL known' in caplog.text and 'High-Quality-Segmention' in caplog.text
    monkeypatch.setitem(WEIGHT_SOURCES, 'crm', Source('crm', 'file', (Remote('model_45705', (), size_range=(9000, 9100)),)))
    server.files['model_45705'] = b'\x00' * 100
    caplog.clear()
    assert download_dataset.main(['--what', 'crm', '--root', str(root), '--url', f'crm={server.url}/model_45705']) == 1
    assert '100 bytes, but model_45705 has 9000 to 9100' in caplog.text and not (root / 'crm').exists()
    server.files['model_45705'] = b'\x00' * 9050
    assert download_dataset.main(['--what', 'crm', '--root', str(root), '--url', f'crm={server.url}/model_45705']) == 0
    assert (root / 'crm').stat().st_size == 9050


def test_url_overrides_are_checked(server, tmp_path, caplog):
    root = tmp_path / 'data'
    for bad in (['--url', 'model'], ['--url', 'nosuch=http://x/y']):
        with pytest.raises(SystemExit) as e:
            download_dataset.main(['--what', 'model', '--root', str(root), *bad])
        assert e.value.code == 2
    # The published MD5 is the file's, whatever URL serves it: a truncated copy is refused and deleted.
    server.files['truncated'] = b'\x00weights' * 10
    assert download_dataset.main(['--what', 'model', '--root', str(root), '--url', f'model={server.url}/truncated']) == 1
    assert 'MD5 mismatch' in caplog.text and not (root / 'model').exists()
    # A corrupt archive is deleted, so the next run (here with a good link) fetches anew.
    server.files['corrupt.zip'] = b'PK\x03\x04 not really a zip'
    caplog.clear()
    assert download_dataset.main(['--what', 'BIG', '--root', str(root), '--url', f'BIG={server.url}/corrupt.zip']) == 1
    assert 'not a valid archive' in caplog.text and not (root / '.downloads' / 'BIG.zip').exists()
    assert download_dataset.main(['--what', 'BIG', '--root', str(root), '--url', f'BIG={server.url}/BIG.zip']) == 0
    assert (root / 'BIG' / 'val' / 'a_gt.png').is_file()
