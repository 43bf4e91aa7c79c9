"""scripts/benchmark_layers.py: the per-part breakdown of one cascade pass (a small input here)."""
from __future__ import annotations

from scripts import benchmark_layers


def test_every_part_is_timed_and_counted(capsys):
    assert benchmark_layers.main(['--model', 'lite', '--size', '64', '--repeat', '1']) == 0
    out = capsys.readouterr().out
    rows = {line.split(' | ')[0].lstrip('| '): line.split(' | ')[1:] for line in out.splitlines()
            if line.startswith('| ') and not line.startswith('| part')}
    assert {'layer4', 'psp', 'up_1', 'other (resizing between levels, concatenations)'} <= set(rows)
    seconds, share, gmac, _ = rows['layer4']
    assert float(seconds) >= 0 and float(gmac) > 0  # dilated convolutions at stride 8 count
    assert 'GMAC/s' in out.splitlines()[0]
