"""download_dataset.py against a local HTTP server (127.0.0.1) serving archives built by the test."""
from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

import download_dataset
from dataset.readers import class_folder_pairs, flat_pairs


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
                data, start = outer.files[name], 0
                if self.headers.get('Range'):
                    start = int(self.headers['Range'].split('=')[1].split('-')[0])
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if name in outer.cut_once:
                    outer.cut_once.discard(name)
                    self.wfile.write(body[:len(body) // 2])
                    return  # connection closes: the client sees a short read
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

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
    args = ['--what', 'ecssd', 'fss', 'BIG', 'model', '--root', str(root), '--mirror', server.url]
    assert download_dataset.main(args) == 1  # the cut transfer fails, naming its URL and reason
    assert f'{server.url}/images.zip' in caplog.text and 'run again to continue' in caplog.text
    assert not (root / 'ecssd').exists() and (root / '.downloads' / 'images.zip.part').is_file()
    assert (root / 'fss').is_dir() and (root / 'BIG' / 'val' / 'a_gt.png').is_file()
    assert (root / 'model').read_bytes() == server.files['model']

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
    assert 'checksum mismatch' in caplog.text and not (root / 'BIG').exists()
    caplog.clear()
    assert download_dataset.main(['--what', 'PASCAL', '--root', str(root)]) == 1
    assert 'PASCAL: no download URL known' in caplog.text and '--url PASCAL=URL' in caplog.text
    caplog.clear()
    # An explicit URL works without a mirror; an unreachable one reports URL and reason.
    assert download_dataset.main(['--what', 'BIG', '--root', str(root), '--url', f'BIG={server.url}/BIG.zip']) == 0
    assert download_dataset.main(['--what', 'model', '--root', str(root), '--url', 'model=http://127.0.0.1:9/model']) == 1
    assert 'http://127.0.0.1:9/model' in caplog.text
    # A link that answers with a web page (Google Drive's virus-scan warning, a login page) is refused.
    server.files['model'] = b'<!DOCTYPE html><html><body>Google Drive can\'t scan this file</body></html>'
    caplog.clear()
    assert download_dataset.main(['--what', 'model', '--root', str(root), '--mirror', server.url]) == 1
    assert 'returned an HTML page' in caplog.text and not (root / 'model').exists()
