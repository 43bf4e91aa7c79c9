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


def test_bad_settings_are_refused_with_a_message(capsys):
    import pytest
    with pytest.raises(SystemExit):
        benchmark_layers.main(['--size', '100'])
    assert '--size must be a positive multiple of 8' in capsys.readouterr().err
    assert benchmark_layers.main(['--model', 'no_such_weights.pth']) == 2
    assert 'no_such_weights.pth' in capsys.readouterr().err
