"""``eval.py``'s folder body, on the runner (:func:`util.runner.run_items`) that every command working
through a folder shares (``eval.py``, ``eval.py --ade``, ``refine.py --dir``, ``split_scene.py``).

``eval.py``'s input folder is ``NAME_im.jpg|png``,
``NAME_seg.png`` and optionally ``NAME_gt.png``; its output folder gets ``NAME_im.png``, ``NAME_seg.png``,
``NAME_gt.png`` (when given), ``NAME_mask.png`` = floor(p * 255), and ``{key}_NAME_mask.png`` for every
named extra output of the method (e.g. CRM's scales), each written atomically; ``NAME_mask.png`` is
written last and marks the image as finished.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dataset.folders import Sample, find_samples, load_sample
from inference.engine import precision_scope
from inference.predict import default_config, image_tensors, refine_image
from inference.visualize import refinement_panel
from methods import method_of_model
from methods.base import model_device
from models.checkpoint import weights_digest
from util.atomic import ensure_folder, write_image, write_text
from util.runner import RunReport, drop_colliding, run_items
from util.transforms import probability_to_uint8

log = logging.getLogger(__name__)

def _refine_sample(model: nn.Module, sample: Sample, output: Path, cfg: Any, visualize: Path | None) -> dict[str, float]:
    image, seg, gt = load_sample(sample)
    refined = refine_image(model, *image_tensors(image, seg), cfg)
    mask = probability_to_uint8(refined.probs[0, 0])
    write_image(output / f'{sample.name}_im.png', image)
    write_image(output / f'{sample.name}_seg.png', seg)
    if gt is not None:
        write_image(output / f'{sample.name}_gt.png', gt)
    for key, probs in refined.extra.items():
        write_image(output / f'{key}_{sample.name}_mask.png', probability_to_uint8(probs[0, 0]))
    if visualize is not None:
        write_image(visualize / f'{sample.name}_panel.png', refinement_panel(image, seg, mask, gt))
    write_image(output / f'{sample.name}_mask.png', mask)  # last: it marks the image as finished
    return refined.stats


SETTINGS_FILE = 'refine_settings.json'


class SettingsMismatch(ValueError):
    """An output folder holds results made with other settings or another model."""


def run_settings(model: nn.Module, cfg: Any, precision: str = 'fp32') -> dict:
    """What decides a folder's results: the network (architecture, hyper-parameters, a digest of its
    weights), the method's inference settings and a reduced ``precision`` (fp32 is not recorded, as before
    the option existed). JSON-ready."""
    if hasattr(cfg, 'resolved'):  # defaults that depend on the network (CascadePSP's stride), as they ran
        cfg = cfg.resolved(model)
    chosen = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
              if not f.metadata.get('same_results')}  # speed/memory settings (batch, chunk) may change
    settings = {'arch': getattr(model, 'arch', ''), 'hparams': getattr(model, 'hparams', {}),
                'weights_sha1': weights_digest(model), 'settings': chosen}
    if precision != 'fp32':
        settings['precision'] = precision
    return json.loads(json.dumps(settings))


def check_settings(output: Path, model: nn.Module, cfg: Any, overwrite: bool, precision: str = 'fp32') -> None:
    """Record the run's settings in ``output`` (:data:`SETTINGS_FILE`); a folder already holding results of
    other settings is refused, naming what differs, unless ``overwrite`` (which redoes every image)."""
    settings = run_settings(model, cfg if cfg is not None else default_config(model), precision)
    path = output / SETTINGS_FILE
    if path.is_file() and not overwrite:
        recorded = json.loads(path.read_text())
        if recorded != settings:
            differ = sorted(k for k in settings['settings'] if recorded.get('settings', {}).get(k) != settings['settings'][k])
            differ += [k for k in ('arch', 'hparams', 'weights_sha1', 'precision') if recorded.get(k) != settings.get(k)]
            raise SettingsMismatch(f'{output} holds results made with other settings ({", ".join(differ)} differ, '
                                   f'see {path}); use another --output, or --overwrite to redo every image')
    write_text(path, json.dumps(settings, indent=1) + '\n')


def refine_folder(model: nn.Module, input_dir: str | Path, output_dir: str | Path, cfg: Any = None,
                  overwrite: bool = False, clear_cache: bool = False, progress: bool = True,
                  visualize_dir: str | Path | None = None, shard: tuple[int, int] = (0, 1),
                  precision: str = 'fp32') -> RunReport:
    """Refine every sample of ``input_dir`` into ``output_dir`` with ``model``'s method and ``cfg`` (its
    inference config); a bad sample is reported and skipped. ``visualize_dir``: also write
    ``NAME_panel.png`` there (see :mod:`inference.visualize`). ``shard`` = (index, count): refine only every
    count-th sample from the index-th (one rank of a torchrun evaluation), so each image is written once.
    ``precision``: the network's arithmetic (:data:`inference.engine.PRECISIONS`), recorded with the settings."""
    output = ensure_folder(output_dir)
    if visualize_dir:
        ensure_folder(visualize_dir)
    check_settings(output, model, cfg, overwrite, precision)
    cfg = cfg if cfg is not None else default_config(model)
    samples, problems = find_samples(input_dir)
    keys = method_of_model(model).extra_outputs(cfg)
    visualize = Path(visualize_dir) if visualize_dir else None

    def files(s: Sample) -> list[Path]:
        names = [f'{s.name}_{k}.png' for k in ('im', 'seg', 'gt', 'mask')] + [f'{k}_{s.name}_mask.png' for k in keys]
        return [output / n for n in names] + ([visualize / f'{s.name}_panel.png'] if visualize else [])
    index, count = shard
    report = RunReport()
    # Samples whose outputs collide (CRM's 0.5_a_mask.png for sample a, and sample 0.5_a's own mask) are dropped
    # on every rank alike, before sharding; rank 0 reports them.
    samples = drop_colliding(samples, lambda s: s.name, files, report if index == 0 else RunReport())
    # Shard the sorted list before looking at the outputs: other ranks are writing them meanwhile.
    samples, problems = samples[index::count], problems if index == 0 else []
    report.failures += problems
    for p in problems:
        log.error(p)
    todo = [s for s in samples if overwrite or not (output / f'{s.name}_mask.png').is_file()]
    report.skipped = len(samples) - len(todo)
    if report.skipped:
        log.info('%d image(s) already refined in %s (use --overwrite to redo them)', report.skipped, output)
    empty_cache = (lambda: torch.cuda.empty_cache()) if clear_cache and torch.cuda.is_available() else None
    with precision_scope(precision, model_device(model)):
        return run_items(todo, lambda s: _refine_sample(model, s, output, cfg, visualize), lambda s: s.name,
                         report, progress, empty_cache)
