"""One entry point from the drivers to a method: :func:`refine_image` finds the model's method in the
registry and runs its inference with its config."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from methods import Refined, method_of_model
from util.malloc import keep_freed_memory
from util.transforms import mask_tensor, rgb_tensor  # noqa: F401 (mask_tensor: re-exported)

#: Whether :func:`refine_image` keeps freed memory in the process while it runs, when its caller does not say
#: (:mod:`util.malloc`; on glibc, faster for a higher peak RSS: docs/performance.md). Off for library callers:
#: glibc's setting is process-wide, so it would change what other threads see mid-call. The command lines turn it
#: on for their whole run, and ``SEGREFINE_KEEP_FREED_MEMORY=1`` in the environment turns it on here.
KEEP_FREED_MEMORY = os.environ.get('SEGREFINE_KEEP_FREED_MEMORY', '0') == '1'


def image_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 x 3 x H x W uint8 RGB sharing the array's memory, 1 x 1 x H x W coarse mask in [0, 1]) from uint8
    arrays. Methods normalise the image where they need it: a full-resolution float copy of a 100-megapixel
    photo is 1.2 GB."""
    return rgb_tensor(image), mask_tensor(mask)


def default_config(model: nn.Module, **overrides: Any) -> Any:
    """The inference config of ``model``'s method, with its defaults and ``overrides``."""
    return method_of_model(model).InferConfig(**overrides)


@torch.inference_mode()
def refine_image(model: nn.Module, image: torch.Tensor, coarse: torch.Tensor, cfg: Any = None,
                 keep_freed: bool | None = None) -> Refined:
    """Refine with ``model``'s method (:data:`methods.METHODS`).

    Args:
        model: a registered network in eval mode, on any device.
        image: B x 3 x H x W RGB, normalised float or uint8 0..255 (see :func:`image_tensors`), on the
            aggregation device (normally the CPU).
        coarse: B x 1 x H x W coarse masks in [0, 1], same device.
        cfg: the method's inference config (default: its defaults).
        keep_freed: keep freed memory in the process while it runs (:func:`util.malloc.keep_freed_memory`,
            process-wide on glibc; default :data:`KEEP_FREED_MEMORY`, off unless the environment turns it on).

    Returns:
        :class:`methods.Refined` (probabilities B x C x H x W in [0, 1], named extras, stats).
    """
    method = method_of_model(model)
    with keep_freed_memory(KEEP_FREED_MEMORY if keep_freed is None else keep_freed):
        refined = method.refine(model, image, coarse, cfg if cfg is not None else method.InferConfig())
    if refined.probs.dtype != torch.float32:  # a reduced --precision: outputs are float32 whatever ran
        refined.probs = refined.probs.float()
    if not bool(torch.isfinite(refined.probs).all()):  # never write a silently empty mask
        raise ValueError('the model produced non-finite probabilities (NaN or infinity)')
    return refined
