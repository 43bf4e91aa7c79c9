"""Keep freed memory in the process for the length of a block (glibc's malloc), and give it back after.

A refinement network at 900 x 900 allocates and frees tensors of tens to hundreds of MB at every layer. glibc
serves blocks above 32 MB (its largest dynamic threshold) with ``mmap`` and unmaps them when they are freed,
so every layer's output is faulted in again page by page: on a 2-core AMD EPYC CPU, one CascadePSP
forward pass at 904 x 904 took about 4.5 M minor page faults and a quarter of its CPU time in the kernel
(37 s, against 25-28 s with freed memory kept; peak RSS 2.4 against 2.9 GiB). The cost is fragmentation:
freed blocks that the next request does not fit stay resident until the block ends.

:func:`keep_freed_memory` sets ``M_MMAP_MAX`` to 0 (every block from the heap) and ``M_TRIM_THRESHOLD`` to
its largest value (freed memory is not returned) for the block only; the outermost block restores glibc's
usual regime (:data:`_RESTORED`) and calls ``malloc_trim(0)``, which returns the free pages to the system. The
settings are process-wide while a block runs (other threads' allocations are served the same way). Elsewhere
than glibc (macOS, Windows, musl) it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Iterator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: What the outermost block leaves: glibc's DEFAULT_MMAP_MAX, and the thresholds its dynamic adjustment reaches
#: in a process that frees large blocks (mmap above 32 MiB, the adjustment's maximum on 64-bit; trim above
#: twice that). Any ``mallopt`` turns that adjustment off for good, so restoring its starting values (128 KiB)
#: would leave every tensor from 128 KiB up mmapped afresh for the rest of the process.
_RESTORED = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 * 2 ** 20), (_M_TRIM_THRESHOLD, 64 * 2 ** 20))
_INT_MAX = 2 ** 31 - 1

_lock = threading.Lock()
_depth = 0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
        libc.gnu_get_libc_version  # glibc only: musl has a mallopt that does nothing
        return libc
    except (OSError, AttributeError, TypeError):
        return None


_LIBC = _glibc()


def available() -> bool:
    """Whether this process runs on glibc, where :func:`keep_freed_memory` has an effect."""
    return _LIBC is not None


@contextlib.contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[None]:
    """Within the block, freed memory stays in the process and is reused instead of being unmapped and
    faulted in again; after the outermost block it is returned to the system. Blocks nest and may run in
    several threads (the settings hold until the last one ends). ``enabled=False``: no change."""
    global _depth
    if not enabled or _LIBC is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for param, value in _RESTORED:
                    _LIBC.mallopt(param, value)
                _LIBC.malloc_trim(0)


@contextlib.contextmanager
def returning_freed_memory() -> Iterator[None]:
    """Within the block, glibc's usual regime (:data:`_RESTORED`), after the free pages kept so far are returned
    (``malloc_trim``); the :func:`keep_freed_memory` settings come back after it if a block of those is still
    running. For a step that allocates a few large arrays once (where page faults cost little) after steps that
    kept much freed memory, which its arrays would not fit without growing the process further."""
    with _lock:
        active = _depth > 0 and _LIBC is not None
        if active:
            for param, value in _RESTORED:
                _LIBC.mallopt(param, value)
            _LIBC.malloc_trim(0)
    try:
        yield
    finally:
        with _lock:
            if active and _depth > 0:
                _LIBC.mallopt(_M_MMAP_MAX, 0)
                _LIBC.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
