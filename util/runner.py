"""The runner of every command that works through many items (images, pairs, components): one function per
item; a bad item is reported by name and the others go on; the run is timed and each item's statistics
are added up in one report type."""
from __future__ import annotations

import logging
import resource
import time
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import progressbar
import torch

from util.atomic import colliding_outputs
from util.image_io import ImageReadError

log = logging.getLogger(__name__)

Item = TypeVar('Item')
#: Names of statistics in the summary line.
_STAT_NAMES = {'crops': 'local crops'}


@dataclass
class RunReport:
    """What a folder run did: items done, skipped (already done), failed (with messages), seconds, and the
    sum of every item's statistics (e.g. the local crops run)."""
    done: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)

    def summary(self, what: str = 'image(s)') -> str:
        cpu_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
        gpu = (f', peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB'
               if torch.cuda.is_available() else '')
        per = f' ({self.seconds / self.done:.2f} s/image)' if self.done else ''
        stats = ''.join(f', {v:g} {_STAT_NAMES.get(k, k)}' for k, v in self.stats.items())
        return (f'{self.done} {what} refined in {self.seconds:.1f} s{per}{stats}, '
                f'{self.skipped} already done, {len(self.failures)} failed; peak CPU memory (RSS) {cpu_mb:.0f} MiB{gpu}')


def drop_colliding(items: Sequence[Item], name: Callable[[Item], str],
                   outputs: Callable[[Item], list[str | os.PathLike]], report: RunReport) -> list[Item]:
    """``items`` without those whose planned ``outputs`` are another item's files (:func:`util.atomic.
    colliding_outputs`); each dropped item is a failure of ``report``, logged by name, before any work."""
    clashes = colliding_outputs([(name(item), list(outputs(item))) for item in items])
    for i in sorted(clashes):
        report.failures.append(f'{name(items[i])}: {clashes[i]}')
        log.error('%s: %s', name(items[i]), clashes[i])
    return [item for i, item in enumerate(items) if i not in clashes]


def run_items(items: Sequence[Item], process: Callable[[Item], dict[str, float] | None], name: Callable[[Item], str],
              report: RunReport | None = None, progress: bool = True,
              after: Callable[[], None] | None = None,
              outputs: Callable[[Item], list[str | os.PathLike]] | None = None) -> RunReport:
    """Call ``process`` on every item. Any error (an unreadable file, a size mismatch, an allocation that
    fails, ...) is a failure of that item, logged with ``name(item)``; the others go on. ``process`` may return statistics
    to add up; ``after`` runs after every item (e.g. to free a GPU cache). ``outputs``: the files an item will
    write; items whose files collide with another item's are failures from the start (:func:`drop_colliding`),
    so no output of the run replaces another."""
    report = report or RunReport()
    if outputs is not None:
        items = drop_colliding(items, name, outputs, report)
    start = time.perf_counter()
    bar = progressbar.ProgressBar(max_value=len(items)) if progress and items else None
    for i, item in enumerate(items):
        try:
            for k, v in (process(item) or {}).items():
                report.stats[k] = report.stats.get(k, 0) + v
            report.done += 1
        except Exception as e:  # also out of memory, a shape the network refuses, ...: this item only
            # Our own errors name the file and the problem; others need their type to be understood.
            why = str(e) if isinstance(e, (ImageReadError, ValueError, OSError)) else f'{type(e).__name__}: {e}'
            report.failures.append(f'{name(item)}: {why}')
            log.error('%s: %s', name(item), why)
        if after:
            after()
        bar and bar.update(i + 1)
    bar and bar.finish()
    report.seconds += time.perf_counter() - start
    return report


