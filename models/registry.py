"""Architectures by name (timm-style): the name and hyper-parameters travel with the weights.

    model = build_model('lite')                     # fresh weights
    model = build_model('lite', gf_radius=6)        # hyper-parameters as keyword arguments
    model = load_model('saves/RUN/checkpoint_final.pth')   # the architecture is read from the file
"""
from __future__ import annotations

from typing import Any, Callable

from models.lite import LiteRefinementModule
from models.refinement import RefinementModule
from models.three_level import ThreeLevelCascade

#: name -> constructor taking the architecture's hyper-parameters as keyword arguments.
ARCHITECTURES: dict[str, Callable[..., ThreeLevelCascade]] = {
    'cascadepsp': RefinementModule,   # the authors' RM (ResNet-50 PSPNet); loads the released weights
    'lite': LiteRefinementModule,     # compact RM for CPUs; the bundled weights
}


def build_model(arch: str = 'cascadepsp', **hparams: Any) -> ThreeLevelCascade:
    """A freshly initialised model of architecture ``arch``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f'unknown architecture {arch!r}; known: {", ".join(ARCHITECTURES)}')
    try:
        return ARCHITECTURES[arch](**hparams)
    except TypeError as e:
        raise ValueError(f'architecture {arch!r}: bad hyper-parameters {hparams} ({e})') from e
