"""MagNet's refinement training for the generic loop (MAGNET.md §9): the authors' random scale pairs, the frozen
backbone, the refinement module called as ``R(coarse crop, fine prediction)`` in train mode (the order is swapped
at test time, Q1), OHEM cross-entropy."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from dataset.magnet import DATASETS, Item, LabelSpec, map_class_ids, random_pair, read_datalist
from methods.base import Recipe
from methods.magnet.config import MagNetTrainConfig
from methods.magnet.geometry import roi_align
from methods.magnet.loss import OhemCrossEntropy
from models.checkpoint import CheckpointError, load_weights
from models.hub import resolve_weights
from models.magnet.system import BACKBONES
from util.image_io import ImageReadError, read_labels, read_rgb
from util.transforms import denormalize_image, normalize_image

log = logging.getLogger(__name__)

#: A batch: (coarse image N x 3 x ih x iw, fine crop N x 3 x ih x iw, fine labels N x ih x iw int64, the crop's
#: box in coarse pixels N x 1 x 4 float32).
MagNetBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class MagNetTrainingSet(Dataset):
    """The authors' ``RandomPair`` over a datalist: Python's ``random`` picks the fine scale, numpy's global RNG
    the crop (each loader worker has its own seeds)."""

    def __init__(self, items: list[Item], spec: LabelSpec, cfg: MagNetTrainConfig) -> None:
        if missing := [str(i.image) for i in items if i.label is None]:
            raise ValueError(f'training needs a label per image; none for {", ".join(missing[:5])}')
        self.items, self.spec = items, spec
        self.fine_scales = [tuple(s) for s in cfg.scales[1:]]
        self.crop, self.input = tuple(cfg.crop_size), tuple(cfg.input_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MagNetBatch:
        item = self.items[index]
        image = read_rgb(item.image)
        raw = read_rgb(item.label) if self.spec.colour else read_labels(item.label)
        if raw.shape[:2] != image.shape[:2]:
            raise ImageReadError(f'{item.label}: size {raw.shape[1]}x{raw.shape[0]} differs from {item.image} '
                                 f'({image.shape[1]}x{image.shape[0]})')
        pair = random_pair(image, raw, self.fine_scales, self.crop, self.input, random, np.random)
        label, _ = map_class_ids(pair.fine_label, self.spec)
        as_tensor = lambda rgb: normalize_image(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0]  # noqa: E731
        return as_tensor(pair.coarse), as_tensor(pair.fine), torch.from_numpy(label), torch.from_numpy(pair.coord)


def training_step(refinement: nn.Module, backbone: nn.Module, batch: MagNetBatch, criterion: nn.Module
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One authors' step without the optimiser: (OHEM loss, outputs). ``backbone`` is frozen (eval, no grad)."""
    coarse, fine, label, coord = batch
    with torch.no_grad():
        coarse_pred = torch.softmax(backbone(coarse), dim=1)
        fine_pred = torch.softmax(backbone(fine), dim=1)
        crops = roi_align(coarse_pred, list(coord), tuple(fine.shape[-2:]))
    logits = refinement(crops, fine_pred)  # the coarse crop first, as the authors train (Q1)
    return criterion(logits, label), {'logits': logits, 'crops': crops, 'fine_pred': fine_pred}


def recipe(cfg: MagNetTrainConfig) -> Recipe:
    if cfg.dataset not in DATASETS:
        raise ValueError(f'--dataset: unknown {cfg.dataset!r}; known: {", ".join(DATASETS)}')
    spec = DATASETS[cfg.dataset]
    if spec.num_classes != cfg.num_classes:
        log.warning('--num_classes %d differs from %s\'s %d classes', cfg.num_classes, spec.name, spec.num_classes)
    if not cfg.pretrained:
        raise ValueError('--pretrained: MagNet trains its refinement module on a frozen, trained backbone; give its '
                         'weights (a released file such as deepglobe_fpn.pth, or a name: deepglobe_fpn.pth)')
    if cfg.model not in BACKBONES:
        raise ValueError(f'--model: unknown {cfg.model!r}; known: {", ".join(BACKBONES)}')
    backbone = BACKBONES[cfg.model](cfg.num_classes)
    load_weights(backbone, resolve_weights(cfg.pretrained))
    backbone.eval().requires_grad_(False)
    criterion = OhemCrossEntropy(spec.ignore_label)

    def step(model: nn.Module, batch: MagNetBatch, amp) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        backbone.to(batch[0].device)
        with amp:
            loss, outputs = training_step(model, backbone, batch, criterion)
        return {'total_loss': loss, 'ohem_loss': loss}, outputs

    @torch.no_grad()
    def metrics(batch: MagNetBatch, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        label = batch[2]
        valid = label != spec.ignore_label
        def accuracy(probs: torch.Tensor) -> float:
            return float((probs.argmax(1) == label)[valid].float().mean()) if valid.any() else float('nan')
        return {'pixel_acc/refined': accuracy(outputs['logits']), 'pixel_acc/fine_backbone': accuracy(outputs['fine_pred'])}

    def images(batch: MagNetBatch, outputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        scale = max(cfg.num_classes - 1, 1)
        as_grey = lambda probs: probs.argmax(1, keepdim=True).float() / scale  # noqa: E731
        return [denormalize_image(batch[1]).clamp(0, 1), as_grey(outputs['crops']), as_grey(outputs['fine_pred']),
                as_grey(outputs['logits']), (batch[2].clamp(min=0).unsqueeze(1).float() / scale).clamp(0, 1)]

    def pairs() -> list[Item]:
        if not cfg.datalist:
            raise ValueError('--datalist: MagNet trains on the images its datalist names (IMAGE<TAB>LABEL lines)')
        return read_datalist(cfg.root, cfg.datalist)

    def prepare(model: nn.Module) -> None:
        if getattr(model, 'arch', '') != 'magnet_refinement':
            raise CheckpointError(f'MagNet trains a magnet_refinement module, not {getattr(model, "arch", "?")!r}')

    return Recipe(dataset=lambda items: MagNetTrainingSet(items, spec, cfg),
                  to_device=lambda batch, device: tuple(t.to(device, non_blocking=True) for t in batch),
                  step=step, metrics=metrics, images=images, prepare=prepare, pairs=pairs)
