"""Deterministic weights for reproducibility tests and benchmarks (no trained weights are needed).

The recipe is the one the reference vectors in ``tests/reference`` were made with: walk the state-dict
keys in sorted order and draw each tensor from ``numpy.random.RandomState(seed)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def seeded_state_dict(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a state dict with ``model``'s keys and shapes filled by the seeded recipe."""
    rng = np.random.RandomState(seed)
    reference = model.state_dict()
    state = {}
    for key in sorted(reference):
        tensor = reference[key]
        shape = tuple(tensor.shape)
        if key.endswith('num_batches_tracked'):
            state[key] = tensor.clone()
            continue
        if key.endswith('running_mean'):
            value = rng.standard_normal(shape) * 0.1
        elif key.endswith('running_var'):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) in (2, 4):  # conv and linear weights: He normal over fan-in (the 2-D rule is CRM's)
            value = rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
        elif key.endswith('.weight'):
            value = rng.uniform(0.5, 1.0, shape)
        else:
            value = rng.standard_normal(shape) * 0.05
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return state


def seed_model(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill ``model`` in place with :func:`seeded_state_dict` and return it."""
    model.load_state_dict(seeded_state_dict(model, seed), strict=True)
    return model
