"""The README's promises, as a stranger would try them: its Python blocks run as pasted from the repository root,
`-h` answers without loading (or downloading) weights, named weights that are absent give a message saying where
to put them, and no figure or term of the development history leaks into the user's pages."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    return re.findall(r'```python\n(.*?)```', (ROOT / 'README.md').read_text(), flags=re.S)


@pytest.mark.slow
def test_readme_python_blocks_run_as_pasted(tmp_path):
    blocks = _python_blocks()
    assert blocks, 'the README has a Python quick start'
    for block in blocks:
        env = {**os.environ, 'PYTHONPATH': str(ROOT)}
        proc = subprocess.run([sys.executable, '-c', block], cwd=ROOT, capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize('command', [['refine.py', '--model', 'cascadepsp', '-h'], ['eval.py', '--model', 'crm', '-h'],
                                     ['eval.py', '--method', 'magnet', '-h'], ['refine.py', '-h']])
def test_help_answers_without_weights(command, tmp_path):
    env = {**os.environ, 'CASCADEPSP_HOME': str(tmp_path / 'empty_cache')}
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and 'usage:' in proc.stdout, proc.stderr[-2000:]
    assert 'loaded weights' not in proc.stderr and not (tmp_path / 'empty_cache').exists()


@pytest.mark.parametrize('argv', [['refine.py', 'samples/cascadepsp/motorbike.jpg', 'samples/cascadepsp/motorbike.png',
                                   '-o', 'OUT/x.png', '--model', 'cascadepsp'],
                                  ['eval.py', '--dir', 'samples/heldout', '--output', 'OUT', '--model', 'crm']])
def test_absent_named_weights_say_where_to_put_them(argv, tmp_path, monkeypatch):
    """Offline (a download that fails at once), every named-weights path ends in a message, not a traceback."""
    env = {**os.environ, 'CASCADEPSP_HOME': str(tmp_path / 'cache'), 'HTTPS_PROXY': 'http://127.0.0.1:9',
           'HTTP_PROXY': 'http://127.0.0.1:9', 'NO_PROXY': ''}
    argv = [a.replace('OUT', str(tmp_path / 'out')) for a in argv]
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert str(tmp_path / 'cache') in proc.stderr


def test_user_pages_tell_no_development_story():
    pages = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
    code = [p for p in ROOT.rglob('*.py') if 'tests' not in p.parts]
    pattern = re.compile(r'issue [0-9]|this round|rounds ago|development (machine|cpu)', re.I)
    found = [f'{p.relative_to(ROOT)}: {m.group(0)}' for p in pages + code for m in pattern.finditer(p.read_text())]
    assert not found, found
    readme = (ROOT / 'README.md').read_text()
    assert len(readme.splitlines()) <= 200 and len(readme.encode()) <= 14 * 1024
