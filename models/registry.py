"""Architectures by name (timm-style): the name and hyper-parameters travel with the weights.

    model = build_model('lite')                     # fresh weights
    model = build_model('lite', gf_radius=6)        # hyper-parameters as keyword arguments
    model = load_model('saves/RUN/checkpoint_final.pth')   # the architecture is read from the file
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

from models.cascadepsp.lite import LiteRefinementModule
from models.cascadepsp.refinement import RefinementModule
from models.crm.network import CRMNet
from models.magnet.fpn import ResnetFPN
from models.magnet.hrnet_ocr import HRNetOCR
from models.magnet.refinement import RefinementMagNet
from models.magnet.system import MagNetSystem

#: name -> constructor taking the architecture's hyper-parameters as keyword arguments. Every network has
#: an ``arch`` attribute (its name here) and ``hparams`` (its keyword arguments), saved with its weights.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    'cascadepsp': RefinementModule,   # the authors' RM (ResNet-50 PSPNet); loads the released weights
    'lite': LiteRefinementModule,     # compact RM for CPUs; the bundled weights
    'crm': CRMNet,                    # CRM (ResNet-50 features + implicit decoder); loads the released weights
    'magnet_refinement': RefinementMagNet,  # MagNet's refinement module; loads the released files
    'magnet_fpn': ResnetFPN,          # MagNet's DeepGlobe backbone (ResNet-50 FPN)
    'magnet_hrnet18_ocr': HRNetOCR,   # MagNet's Cityscapes backbone (HRNet-W18-Small-v2 + OCR)
    'magnet': MagNetSystem,           # a MagNet backbone with its refinement module(s)
}

#: Released files are bare state dicts (no architecture recorded): each architecture with a released file
#: names keys that only its layout has (after any ``module.`` prefix is removed), and a bare state dict
#: holding all of them is read as that architecture, with default hyper-parameters.
RELEASED_LAYOUTS: dict[str, tuple[str, ...]] = {
    'cascadepsp': ('feats.conv1.weight', 'psp.stages.0.1.weight', 'final_11.weight', 'final_21.weight'),
    'crm': ('feats.conv1.weight', 'aspp_.last_conv.0.weight', 'imnet.layers.0.weight'),
    'magnet_refinement': ('bn0.weight', 'residual.0.conv1.weight', 'seg_conv.weight'),
    'magnet_fpn': ('resnet_backbone.conv1.weight', 'toplayer.weight', 'classify.weight'),
    'magnet_hrnet18_ocr': ('conv1.weight', 'stage4.0.branches.0.0.conv1.weight', 'cls_head.weight'),
}
#: Hyper-parameters a released layout's shapes imply (the files record none): arch -> state dict -> hparams.
RELEASED_HPARAMS: dict[str, Callable[[dict], dict[str, Any]]] = {
    'magnet_refinement': lambda state: {'num_classes': int(state['seg_conv.weight'].shape[0])},
    'magnet_fpn': lambda state: {'num_classes': int(state['classify.weight'].shape[0])},
    'magnet_hrnet18_ocr': lambda state: {'num_classes': int(state['cls_head.weight'].shape[0])},
}


def recognise_layout(keys: set[str]) -> str | None:
    """The architecture whose released layout ``keys`` (a bare state dict's, unprefixed) match, or None."""
    for arch, signature in RELEASED_LAYOUTS.items():
        if all(k in keys for k in signature):
            return arch
    return None


def build_model(arch: str = 'cascadepsp', **hparams: Any) -> nn.Module:
    """A freshly initialised model of architecture ``arch``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f'unknown architecture {arch!r}; known: {", ".join(ARCHITECTURES)}')
    try:
        return ARCHITECTURES[arch](**hparams)
    except TypeError as e:
        raise ValueError(f'architecture {arch!r}: bad hyper-parameters {hparams} ({e})') from e
