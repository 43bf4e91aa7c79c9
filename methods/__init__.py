"""Refinement methods by name: the one registry through which drivers reach a method.

    method = METHODS['cascadepsp']
    method = method_of('lite')            # the method that runs an architecture

Adding a method: its folder under ``methods/`` (config, inference, loss, recipe, a ``METHOD``) and one line
here; its network folder under ``models/`` and one line in :data:`models.registry.ARCHITECTURES`.
"""
from __future__ import annotations

import torch.nn as nn

from methods import cascadepsp, crm, magnet
from methods.base import Method, Recipe, Refined, Stage, TrainConfig

METHODS: dict[str, Method] = {
    'cascadepsp': cascadepsp.METHOD,
    'crm': crm.METHOD,
    'magnet': magnet.METHOD,
}


def method_of(arch: str) -> Method:
    """The method that runs (or is made of) architecture ``arch``."""
    for method in METHODS.values():
        if arch in method.archs or arch in method.components:
            return method
    known = ', '.join(f'{a} ({m.name})' for m in METHODS.values() for a in (*m.archs, *m.components))
    raise ValueError(f'no method runs architecture {arch!r}; known: {known}')


def method_of_model(model: nn.Module) -> Method:
    """The method of a built network (its ``arch`` attribute, as every registered architecture has). Raises
    ValueError for a network without one: which procedure to run is never guessed."""
    module = model.module if hasattr(model, 'module') else model
    arch = getattr(module, 'arch', None)
    if arch is None:
        raise ValueError(f'{type(module).__name__} has no arch attribute: build networks with models.registry '
                         '(or load them with models.hub / models.checkpoint) so that their method is known')
    return method_of(arch)


__all__ = ['METHODS', 'Method', 'Recipe', 'Refined', 'Stage', 'TrainConfig', 'method_of', 'method_of_model']
