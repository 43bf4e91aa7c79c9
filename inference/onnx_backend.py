"""ONNX Runtime backend for the three-level cascade networks (``lite``, ``cascadepsp``).

The Global+Local procedure stays :mod:`methods.cascadepsp.inference`; only its network calls run on ONNX
Runtime. A network is exported as two graphs with dynamic batch, height and width (multiples of 8: the
procedure pads as for PyTorch):

* ``global.onnx``: (image, mask) -> (pred_224, pred_56_2), all three levels (the Global step and the fast mode);
* ``local.onnx``: (image, mask, inter_s8) -> pred_224, levels 2 and 3 (the Local step's crops: the binarised global
  mask as the input mask, the global stride-4 map in place of level 1's output);
* ``local3.onnx``: (image, mask, inter_s8, inter_s4) -> pred_224, level 3 alone (the Local step with
  ``local_levels`` 1, ``lite``'s default: the global stride-4 map in place of both level-2 outputs);

and ``meta.json`` (architecture, hyper-parameters, a digest of the weights, opset), so an export folder
describes itself. A network's arbiter (:mod:`models.cascadepsp.arbiter`, run by the procedure on the result) is
not a graph: its weights go into ``arbiter.pt`` and it runs in PyTorch. ``onnx``, ``onnxscript`` (to export) and
``onnxruntime`` (to run) are optional extras::

    pip install onnx onnxscript onnxruntime
    python -m scripts.export_onnx lite exports/lite
    refiner = Refiner('exports/lite', backend='onnx')   # or Refiner('lite', backend='onnx'): exported once, cached
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from models.checkpoint import non_finite_keys, weights_digest
from models.cascadepsp.arbiter import Arbiter
from models.registry import ARCHITECTURES

#: graph -> (input names, output keys of :data:`models.cascadepsp.three_level.OUTPUT_KEYS`).
GRAPHS = {'global': (('image', 'mask'), ('pred_224', 'pred_56_2')),
          'local': (('image', 'mask', 'inter_s8'), ('pred_224',)),
          'local3': (('image', 'mask', 'inter_s8', 'inter_s4'), ('pred_224',))}
META = 'meta.json'
ARBITER = 'arbiter.pt'


class MissingExtra(ImportError):
    """An optional package (onnx, onnxscript, onnxruntime) is not installed."""


def _require(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise MissingExtra(f'{purpose} needs the optional package {module!r}: pip install onnx onnxscript '
                           'onnxruntime') from e


class _Graph(nn.Module):
    """One exported graph: the cascade's forward with positional inputs and a tuple of outputs."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, image: torch.Tensor, mask: torch.Tensor, inter_s8: torch.Tensor | None = None,
                inter_s4: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(image, mask, inter_s8, inter_s4)
        return tuple(out[k] for k in self.outputs)


def export_cascade(model: nn.Module, folder: str | os.PathLike, opset: int = 18) -> Path:
    """Export ``model`` (a three-level cascade, float32, the default arithmetic) into ``folder``: the graphs
    and ``meta.json``, written under temporary names and renamed, so an interrupted export leaves no folder
    that looks complete. Returns the folder."""
    _require('onnxscript', 'exporting to ONNX')
    folder = Path(folder)
    model = model.cpu().float().eval()
    h = torch.export.Dim('h', min=1, max=2048)
    w = torch.export.Dim('w', min=1, max=2048)
    batch = torch.export.Dim('batch', min=1, max=256)
    example = {'image': torch.randn(2, 3, 96, 128), 'mask': torch.rand(2, 1, 96, 128) * 2 - 1,
               'inter_s8': torch.rand(2, 1, 96, 128) * 2 - 1, 'inter_s4': torch.rand(2, 1, 96, 128) * 2 - 1}
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for name, (inputs, outputs) in GRAPHS.items():
            dims = {k: {0: batch, 2: 8 * h, 3: 8 * w} for k in inputs}
            with torch.no_grad():
                program = torch.onnx.export(_Graph(model, outputs).eval(), tuple(example[k] for k in inputs), dynamo=True,
                                            input_names=list(inputs), output_names=list(outputs),
                                            dynamic_shapes=dims, opset_version=opset, external_data=False,
                                            verbose=False)
            program.save(str(Path(tmp) / f'{name}.onnx'))
        meta = {'arch': model.arch, 'hparams': model.hparams, 'weights_sha1': weights_digest(model), 'opset': opset,
                'torch': torch.__version__, 'graphs': {k: {'inputs': list(i), 'outputs': list(o)}
                                                       for k, (i, o) in GRAPHS.items()}}
        (Path(tmp) / META).write_text(json.dumps(meta, indent=1) + '\n')
        names = [f'{g}.onnx' for g in GRAPHS]
        if getattr(model, 'arbiter', None) is not None:
            torch.save(model.arbiter.state_dict(), Path(tmp) / ARBITER)
            names.append(ARBITER)
        for name in names + [META]:  # meta.json last: its presence marks a whole export
            os.replace(Path(tmp) / name, folder / name)
    return folder


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by :func:`export_cascade` (with every graph of :data:`GRAPHS`)."""
    return (Path(path) / META).is_file() and all((Path(path) / f'{g}.onnx').is_file() for g in GRAPHS)


def cached_export(model: nn.Module, cache: Path, again: bool = False) -> Path:
    """The export of ``model`` under ``cache`` (``onnx/ARCH-DIGEST``), made on first use (``again``: made anew,
    e.g. when a cached file is damaged).

    Each process exports into a temporary folder of its own beside the target and renames it into place, so two
    processes exporting into one empty cache never touch each other's files: the first rename wins and the
    other's copy is dropped."""
    folder = cache / 'onnx' / f'{model.arch}-{weights_digest(model)[:16]}'
    if is_export(folder) and not again:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{folder.name}.{os.getpid()}-', dir=folder.parent))
    try:
        export_cascade(model, tmp)
        if folder.exists() and (again or not is_export(folder)):  # damaged, or left by an interrupted old export
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not is_export(folder):  # not another process's complete export: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class OnnxCascade(nn.Module):
    """A three-level cascade on ONNX Runtime, called as the PyTorch network is (``model(image, mask, inter_s8)``
    -> dict of B x 1 x H x W outputs), so the cascade's procedure runs unchanged.

    Args:
        folder: an export folder (:func:`export_cascade`).
        threads: intra-op threads (default: ``torch.get_num_threads()``, as PyTorch would use).
        providers: ONNX Runtime execution providers (default: the CPU).
    """

    def __init__(self, folder: str | os.PathLike, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        super().__init__()
        ort = _require('onnxruntime', 'the ONNX backend')
        folder = Path(folder)
        if not is_export(folder):
            raise FileNotFoundError(f'{folder}: not an ONNX export (no {META}, or not every graph of '
                                    f'{", ".join(GRAPHS)}); write one with scripts/export_onnx.py')
        try:
            meta = json.loads((folder / META).read_text())
            self.arch, self.hparams, self.folder = meta['arch'], meta['hparams'], folder
            if self.arch not in ARCHITECTURES:  # the Local step's defaults follow the architecture
                raise KeyError(f'unknown architecture {self.arch!r}')
            arbiter = Arbiter(**self.hparams['arbiter']) if self.hparams.get('arbiter') is not None else None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f'{folder / META}: not the description of an export ({e!r}); export again') from e
        self.arbiter = None
        if arbiter is not None:
            try:
                state = torch.load(folder / ARBITER, map_location='cpu', weights_only=True)
                arbiter.load_state_dict(state)
                bad = non_finite_keys(state)
                if bad:
                    raise ValueError(f'non-finite values in {", ".join(bad)}')
            except Exception as e:  # missing, truncated, non-finite or not the arbiter's weights
                raise ValueError(f'{folder / ARBITER}: cannot load the arbiter\'s weights ({e}); export again') from e
            self.arbiter = arbiter.eval()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.sessions = {}
        for name in GRAPHS:
            path = folder / f'{name}.onnx'
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options,
                                                           providers=providers or ['CPUExecutionProvider'])
            except Exception as e:  # onnxruntime raises its own types for unreadable or invalid files
                raise ValueError(f'{path}: cannot load the ONNX graph: {e}') from e

    def forward(self, image: torch.Tensor, mask: torch.Tensor, inter_s8: torch.Tensor | None = None,
                inter_s4: torch.Tensor | None = None, outputs: tuple[str, ...] | None = None
                ) -> dict[str, torch.Tensor]:
        """The outputs of the graph the inputs select (:data:`GRAPHS`); ``outputs`` narrows them further."""
        if inter_s4 is not None and inter_s8 is None:
            raise ValueError('inter_s4 needs inter_s8: level 3 takes both level-2 outputs')
        name = 'global' if inter_s8 is None else 'local' if inter_s4 is None else 'local3'
        feed = {k: np.ascontiguousarray(t.detach().float().cpu().numpy())
                for k, t in zip(GRAPHS[name][0], (image, mask, inter_s8, inter_s4))}
        keys = [k for k in GRAPHS[name][1] if outputs is None or k in outputs]
        return {k: torch.from_numpy(v) for k, v in zip(keys, self.sessions[name].run(keys, feed))}
