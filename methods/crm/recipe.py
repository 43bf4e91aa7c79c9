"""CRM's training recipe for the generic loop: CascadePSP's online crops (the authors' perturbation) plus the
coordinates and cells of the whole crop, the single-output loss, IoU logs and an image grid."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from dataset.training_set import TrainingSet
from methods.base import Recipe
from methods.crm.config import CRMTrainConfig
from methods.crm.loss import CRMLoss
from models.checkpoint import load_imagenet_backbone
from models.crm.network import make_coord
from util.transforms import denormalize_image

#: A batch: (image B x 3 x S x S, input mask B x 1 x S x S in [-1, 1], ground truth B x 1 x S x S in [0, 1],
#: coord B x S*S x 2, cell B x S*S x 2).
CRMBatch = tuple[torch.Tensor, ...]


class CRMTrainingSet(Dataset):
    """:class:`dataset.training_set.TrainingSet` items plus every pixel centre of the crop as queries (the
    authors query all 224 x 224 centres; the cell is 2 / S, so rel_cell is 1 in training)."""

    def __init__(self, crops: TrainingSet) -> None:
        self.crops = crops
        size = crops.crop_size
        self.coord = make_coord((size, size))
        self.cell = torch.tensor([2 / size, 2 / size], dtype=torch.float32).expand_as(self.coord).contiguous()

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> CRMBatch:
        return (*self.crops[index], self.coord, self.cell)


def _as_map(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """B x Q x 1 query outputs as B x 1 x H x W (query q = row * W + column)."""
    return x.view(like.shape[0], 1, *like.shape[-2:])


@torch.no_grad()
def iou_metrics(batch: CRMBatch, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
    _, seg, gt = batch[:3]
    hard = gt > 0.5

    def iou(pred: torch.Tensor) -> float:
        union = (pred | hard).sum()
        return float((pred & hard).sum() / union) if union else 1.0

    return {'iou/output': iou(_as_map(outputs['pred_224'], gt) > 0.5), 'iou/input': iou(seg > 0)}


def recipe(cfg: CRMTrainConfig) -> Recipe:
    criterion = CRMLoss(cfg.ce_weight, cfg.l1_weight, cfg.l2_weight, cfg.grad_weight)

    def step(model: nn.Module, batch: CRMBatch, amp) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        image, seg, gt, coord, cell = batch
        with amp:
            outputs = model(image, seg, coord, cell)
        return criterion.to(image.device)(_as_map(outputs['out_224'], gt), gt), outputs

    def images(batch: CRMBatch, outputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        image, seg, gt = batch[:3]
        return [denormalize_image(image.float()).clamp(0, 1), (seg + 1) / 2, gt, _as_map(outputs['pred_224'], gt)]

    def prepare(model: nn.Module) -> None:
        if cfg.backbone:
            load_imagenet_backbone(model, cfg.backbone)

    return Recipe(
        dataset=lambda pairs: CRMTrainingSet(TrainingSet(pairs, cfg.crop_size, degradation=cfg.degradation,
                                                         scale_range=tuple(cfg.scale_range))),
        to_device=lambda batch, device: tuple(t.to(device, non_blocking=True) for t in batch),
        step=step, metrics=iou_metrics, images=images, prepare=prepare)
