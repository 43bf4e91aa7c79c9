"""Loading and saving refinement-module weights.

Accepted files (all loaded with ``torch.load(weights_only=True)``):
  * a released file: a bare state dict, often saved from ``nn.DataParallel`` (keys start with ``module.``),
    recognised by its keys (:data:`models.registry.RELEASED_LAYOUTS`: today the authors' CascadePSP
    ``model``); a bare state dict of no known layout is an error that lists the known layouts;
  * this project's checkpoints: a dict with ``'model'`` (the state dict, float32 or float16), ``'arch'``
    (a name of :mod:`models.registry`) and ``'hparams'`` (its keyword arguments), so
    :func:`load_model` rebuilds the right model from the file alone.
Loading is strict: a file that does not describe exactly the architecture raises
:class:`CheckpointError` naming the file and the missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.resnet import ResNet50
from models.registry import RELEASED_HPARAMS, RELEASED_LAYOUTS, build_model, recognise_layout
from util.atomic import atomic_path

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A weights file cannot be read or does not match the model."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` on CPU, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # truncated zip, pickle with code objects, not a torch file, ...
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})') from e
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a state dict or a checkpoint dict, got {type(data).__name__}')
    return data


#: The extra entry of HRNet-Semantic-Segmentation's ``FullModel(model, loss)`` files (MagNet's backbones).
_FULL_MODEL_EXTRA = 'loss.criterion.weight'


def extract_state_dict(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint, with any ``module.`` (DataParallel/DDP) prefix removed, and a
    ``FullModel`` file (every key ``model.``-prefixed, plus the loss's class weights; MagNet's released
    backbones) reduced to the model's own keys."""
    state = data['model'] if isinstance(data.get('model'), dict) else data
    state = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state.items()}
    rest = [k for k in state if k != _FULL_MODEL_EXTRA]
    if rest and all(k.startswith('model.') for k in rest):
        state = {k[len('model.'):]: state[k] for k in rest}
    return state


def checkpoint_arch(data: dict[str, Any], source: str = 'checkpoint') -> tuple[str, dict[str, Any]]:
    """(architecture name, hyper-parameters) recorded in a checkpoint, or recognised from a bare state dict's
    keys (:func:`models.registry.recognise_layout`). Raises :class:`CheckpointError` naming the known layouts
    when a bare state dict matches none."""
    if isinstance(data.get('model'), dict) and 'arch' in data:
        hparams = data.get('hparams') or {}
        if not isinstance(hparams, dict):
            raise CheckpointError(f'{source}: its hyper-parameters are not a mapping ({type(hparams).__name__})')
        return str(data['arch']), dict(hparams)
    state = extract_state_dict(data)
    arch = recognise_layout(set(state))
    if arch is None:
        layouts = '; '.join(f'{a} (keys such as {", ".join(keys[:2])})' for a, keys in RELEASED_LAYOUTS.items())
        raise CheckpointError(f'{source}: a bare state dict of no known layout; known released layouts: {layouts}. '
                              'A checkpoint of this project records its architecture.')
    return arch, RELEASED_HPARAMS[arch](state) if arch in RELEASED_HPARAMS else {}


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                     new: tuple[str, ...] = ()) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``model``'s keys and shapes; keys under the
    prefixes ``new`` (modules the file predates) may be missing."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(tuple(new))]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}'
                 for k, v in expected.items()
                 if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)]
    if missing or unexpected or misshaped:
        def fmt(name: str, items: list[str]) -> str:
            shown = ', '.join(items[:10]) + (f', ... ({len(items)} in all)' if len(items) > 10 else '')
            return f'\n  {name} ({len(items)}): {shown}' if items else ''
        raise CheckpointError(f'{source}: does not match the {getattr(model, "arch", "") or "refinement"} module'
                              + fmt('missing keys', missing) + fmt('unexpected keys', unexpected)
                              + fmt('mis-shaped keys', misshaped))


def non_finite_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_weights(model: nn.Module, path: str | os.PathLike, data: dict[str, Any] | None = None,
                 new: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> nn.Module:
    """Load a released or project checkpoint into ``model`` strictly; returns ``model``.

    ``data``: the file's content when the caller has already read it (see :func:`read_checkpoint`).
    ``new``: parameter-name prefixes of modules the file may lack (they keep their initialisation; training
    only, e.g. a head added to a trained network).
    ``drop``: parameter-name prefixes of modules the file may hold and ``model`` lacks, which are left out (with a
    log line; training only, e.g. ``lite``'s arbiter, fitted after the network and so not part of its training).
    """
    data = read_checkpoint(path) if data is None else data
    if isinstance(data.get('model'), dict) and 'arch' in data:
        arch = str(data['arch'])
    else:  # a bare state dict: the strict key check below names what does not match
        arch = recognise_layout(set(extract_state_dict(data))) or getattr(model, 'arch', '')
    if getattr(model, 'arch', arch) != arch:
        raise CheckpointError(f'{path}: holds a {arch!r} model, not {model.arch!r}')
    state = extract_state_dict(data)
    if drop:
        own = model.state_dict()
        dropped = [k for k in state if k.startswith(drop) and k not in own]
        if dropped:
            log.info('%s: left out %d tensor(s) the model does not have: %s', path, len(dropped),
                     ', '.join(sorted({k.split('.')[0] for k in dropped})))
            state = {k: v for k, v in state.items() if k not in dropped}
    check_state_dict(model, state, str(path), new)
    bad = non_finite_keys(state)
    if bad:
        raise CheckpointError(f'{path}: non-finite values (NaN or infinity) in {len(bad)} tensor(s): '
                              + ', '.join(bad[:10]) + (' ...' if len(bad) > 10 else ''))
    reference = model.state_dict()  # fp16 exports load into the model's own dtype
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()}, strict=not new)
    log.info('loaded weights from %s', path)
    return model


def load_model(path: str | os.PathLike) -> nn.Module:
    """Build the architecture recorded in ``path`` (see the module docstring) and load its weights."""
    data = read_checkpoint(path)
    arch, hparams = checkpoint_arch(data, str(path))
    try:
        model = build_model(arch, **hparams)
    except ValueError as e:
        raise CheckpointError(f'{path}: {e}') from e
    return load_weights(model, path, data)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, half: bool = False, **extra: Any) -> None:
    """Atomically save ``{'model': state dict, 'arch': name, 'hparams': ..., **extra}`` to ``path``.

    ``half``: store floating-point tensors as float16 (a shipped model; :func:`load_weights` restores
    the model's dtype).
    """
    module = model.module if hasattr(model, 'module') else model  # unwrap DDP/DataParallel
    state = module.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    try:
        with atomic_path(path) as tmp:
            torch.save({'model': state, 'arch': getattr(module, 'arch', 'cascadepsp'),
                        'hparams': dict(getattr(module, 'hparams', {})), **extra}, tmp)
    except RuntimeError as e:  # torch.save's own stream errors on a full or failing disk ("basic_ios::clear")
        raise OSError(f'{path}: could not write the checkpoint ({e}); is the disk full? Nothing was left there') from e


def load_imagenet_backbone(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Initialise ``model.feats`` from a torchvision ImageNet ResNet-50 state dict file.

    Works with ``resnet50-19c8e357.pth`` and ``resnet50-0676ba61.pth``. The stem conv of the file has
    3 input channels; the 3 mask channels are zero-initialised, as the authors did, so training starts
    from the ImageNet features of the RGB input. The classifier (``fc.*``) is dropped.
    """
    if not isinstance(getattr(model, 'feats', None), ResNet50):
        raise CheckpointError(f'{path}: an ImageNet ResNet-50 initialises a ResNet-50 encoder (cascadepsp, crm), '
                              f'not the {getattr(model, "arch", "")!r} network')
    state = extract_state_dict(read_checkpoint(path))
    state = {k: v for k, v in state.items() if not k.startswith('fc.')}
    stem = state.get('conv1.weight')
    if stem is None or stem.ndim != 4 or stem.shape[1] != 3:
        raise CheckpointError(f'{path}: not an ImageNet ResNet-50 state dict (no 3-channel conv1.weight)')
    extra = torch.zeros(stem.shape[0], model.feats.in_channels - 3, *stem.shape[2:], dtype=stem.dtype)
    state['conv1.weight'] = torch.cat([stem, extra], 1)
    check_state_dict(model.feats, state, str(path))
    model.feats.load_state_dict(state, strict=True)
    log.info('initialised the backbone from ImageNet weights %s', path)
    return model


def weights_digest(model: nn.Module) -> str:
    """SHA-1 of ``model``'s state dict (names and values): which weights a result or an export came from."""
    digest = hashlib.sha1()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
