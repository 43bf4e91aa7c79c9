"""The paper's Table 3 layout (coarse input, then refined with deltas) from results_post.json files."""
from __future__ import annotations

import json
import os
from pathlib import Path


def _pct(x: float | None) -> str:
    return '—' if x is None else f'{100 * x:.2f}'


def _delta(d: float | None) -> str:
    if d is None:
        return ''
    return f' (↑{100 * d:.2f})' if d >= 0 else f' (↓{-100 * d:.2f})'


def results_table(entries: list[tuple[str, str | os.PathLike]], method: str = 'CascadePSP') -> str:
    """Markdown table with, per (label, results_post.json), the input row and the refined row.

    IoU and mBA are in percent; the refined row shows the change from the input as ↑/↓.
    """
    rows = ['| Method | IoU (%) | mBA (%) |', '|---|---|---|']
    for label, path in entries:
        s = json.loads(Path(path).read_text())['summary']
        rows.append(f"| {label} | {_pct(s['old_iou'])} | {_pct(s['old_mba'])} |")
        rows.append(f"| {label} + {method} | {_pct(s['new_iou'])}{_delta(s['iou_delta'])} "
                    f"| {_pct(s['new_mba'])}{_delta(s['mba_delta'])} |")
    return '\n'.join(rows) + '\n'
