"""Validation during training: refine an _im/_seg/_gt folder in memory with the model's method and score it
(IoU, mBA)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from dataset.folders import find_samples, load_sample
from evaluation.metrics import score_image, summarize
from inference.predict import image_tensors, refine_image
from util.transforms import probability_to_uint8


def validate(model: nn.Module, folder: str | Path, cfg: Any = None) -> dict:
    """IoU and mBA of ``model`` on a validation folder (samples without ground truth are ignored), refined
    with ``cfg`` (the method's inference config; default: its defaults).

    Returns the :func:`evaluation.metrics.summarize` dict (``new_iou``, ``new_mba``, ``old_*``, ...). The
    model is left in eval mode; the caller switches it back to training.
    """
    samples, _ = find_samples(folder)
    samples = [s for s in samples if s.gt is not None]
    if not samples:
        raise FileNotFoundError(f'{folder}: no NAME_im / NAME_seg / NAME_gt triplets to validate on')
    model.eval()
    scores = []
    for s in samples:
        image, seg, gt = load_sample(s)
        refined = refine_image(model, *image_tensors(image, seg), cfg)
        scores.append(score_image(s.name, gt, seg, probability_to_uint8(refined.probs[0, 0])))
    return summarize(scores)
