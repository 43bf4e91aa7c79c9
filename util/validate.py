"""Validation during training: refine an _im/_seg/_gt folder in memory and score it (IoU, mBA)."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from models.cascade import CascadeConfig
from models.refiner import refine_image
from util.metrics import score_image, summarize
from util.refine_folder import find_samples, load_sample
from util.transforms import normalize_image, normalize_mask, probability_to_uint8


def validate(model: nn.Module, folder: str | Path, L: int = 900, stride: int = 450,
             global_only: bool = False) -> dict:
    """IoU and mBA of ``model`` on a validation folder (samples without ground truth are ignored).

    Returns the :func:`util.metrics.summarize` dict (``new_iou``, ``new_mba``, ``old_*``, ...). The model
    is left in eval mode; the caller switches it back to training.
    """
    samples, _ = find_samples(folder)
    samples = [s for s in samples if s.gt is not None]
    if not samples:
        raise FileNotFoundError(f'{folder}: no NAME_im / NAME_seg / NAME_gt triplets to validate on')
    model.eval()
    cfg = CascadeConfig(L=L, stride=stride)
    scores = []
    for s in samples:
        image, seg, gt = load_sample(s)
        prob, _ = refine_image(model, normalize_image(image), normalize_mask(seg), cfg, global_only)
        scores.append(score_image(s.name, gt, seg, probability_to_uint8(prob[0, 0])))
    return summarize(scores)
