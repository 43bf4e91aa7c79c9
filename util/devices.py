"""Device strings, parsed once for every command line and API: one spelling rule and one message for a device
this machine does not have.

    parse_device('auto')     # cuda if a GPU is visible, else cpu
    parse_device('CPU')      # cpu (case does not matter); 'gpu' means cuda
    parse_device('cuda:1')   # DeviceError naming the GPUs there are, if there is no second one
"""
from __future__ import annotations

import re

import torch

#: Spellings users write for a device type, and what PyTorch calls it.
_ALIASES = {'cpu': 'cpu', 'cuda': 'cuda', 'gpu': 'cuda', 'mps': 'mps'}
_SPEC = re.compile(r'^(?P<kind>[a-z]+)(?::(?P<index>\d+))?$')


class DeviceError(ValueError):
    """A device string that is malformed, or names a device this machine (or this PyTorch build) lacks."""


def default_device() -> str:
    """'cuda' where a GPU is visible, else 'cpu'."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def parse_device(spec: str | torch.device | None, flag: str = '--device') -> torch.device:
    """``spec`` ('auto' or None: :func:`default_device`; 'cpu', 'cuda', 'cuda:N', 'gpu', 'mps', any case) as a
    ``torch.device`` that exists here. Raises :class:`DeviceError`, naming ``flag`` and what is available."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ('', 'auto')):
        return torch.device(default_device())
    if isinstance(spec, torch.device):
        text = str(spec)
    elif isinstance(spec, str):
        text = spec.strip().lower()
    else:
        raise DeviceError(f'{flag} {spec!r}: a device is a string such as cpu, cuda, cuda:0 or auto')
    match = _SPEC.match(text)
    if not match or match['kind'] not in _ALIASES:
        raise DeviceError(f'{flag} {spec}: unknown device; use cpu, cuda, cuda:N, mps or auto')
    kind, index = _ALIASES[match['kind']], match['index']
    if kind == 'cpu':
        if index not in (None, '0'):
            raise DeviceError(f'{flag} {spec}: the CPU has no index; use cpu')
        return torch.device('cpu')
    if kind == 'cuda':
        if not torch.cuda.is_available():
            why = 'this PyTorch was built without CUDA' if torch.version.cuda is None else 'no GPU is visible'
            raise DeviceError(f'{flag} {spec}: {why}; use --device cpu (or auto)')
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise DeviceError(f'{flag} {spec}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}')
        return torch.device('cuda', int(index)) if index is not None else torch.device('cuda')
    mps = getattr(torch.backends, 'mps', None)
    if mps is None or not mps.is_available():
        raise DeviceError(f'{flag} {spec}: Apple\'s MPS backend is not available here; use --device cpu (or auto)')
    return torch.device('mps')
