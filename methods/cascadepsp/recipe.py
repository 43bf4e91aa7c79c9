"""CascadePSP's training recipe for the generic loop: the data (random crops with a degraded ground truth as
the input mask), the six-output loss, the optional local pass, the logged IoUs and image grid."""
from __future__ import annotations

import torch
import torch.nn as nn

from dataset.training_set import TrainingSet
from methods.base import Recipe
from methods.cascadepsp.config import CascadeTrainConfig
from methods.cascadepsp.loss import LOSS_OUTPUTS, CascadeLoss, LossWeights
from models.checkpoint import load_imagenet_backbone
from util.transforms import denormalize_image

#: A batch: (image B x 3 x S x S normalised, input mask B x 1 x S x S in [-1, 1], ground truth B x 1 x S x S in [0, 1]).
CascadeBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _add_local_pass(model: nn.Module, criterion: CascadeLoss, image: torch.Tensor, outputs: dict[str, torch.Tensor],
                    gt: torch.Tensor, terms: dict[str, torch.Tensor], amp) -> dict[str, torch.Tensor]:
    """Also train the pass the Local step makes: levels 2-3 with the binarised level-3 output as the mask
    and the stride-4 output in place of level 1 (see methods.cascadepsp.inference.local_step); its loss is
    added. At inference that pass refines the model's own output, which the authors' training never shows it."""
    with torch.no_grad():
        seg2 = (outputs['pred_224'] > 0.5).to(image.dtype) * 2 - 1
        s8 = outputs['pred_56_2'].to(image.dtype) * 2 - 1
    with amp:
        second = model(image, seg2, s8)
    extra = criterion({**outputs, **second}, gt)  # level 1 (out_28) is not rerun: the first pass's stands in
    return {k: v + extra[k] for k, v in terms.items()}


@torch.no_grad()
def iou_per_output(batch: CascadeBatch, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Batch IoU of every output (and of the input mask) against the ground truth, thresholds at 0.5/0."""
    _, seg, gt = batch
    hard = gt > 0.5

    def iou(pred: torch.Tensor) -> float:
        union = (pred | hard).sum()
        return float((pred & hard).sum() / union) if union else 1.0

    values = {f'iou/{name}': iou(outputs['pred_' + suffix] > 0.5) for suffix, name in LOSS_OUTPUTS}
    values['iou/input'] = iou(seg > 0)
    return values


def image_columns(batch: CascadeBatch, outputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Image, input mask, ground truth, then the stride 8 / 4 / 1 predictions (each B x C x S x S in [0, 1])."""
    image, seg, gt = batch
    return [denormalize_image(image.float()).clamp(0, 1), (seg + 1) / 2, gt] + [
        outputs[k] for k in ('pred_28_3', 'pred_56_2', 'pred_224')]


def recipe(cfg: CascadeTrainConfig) -> Recipe:
    """The recipe of ``cfg`` (see :class:`methods.base.Recipe`)."""
    criterion = CascadeLoss(LossWeights(cfg.ce_weight, cfg.l1_weight, cfg.l2_weight, cfg.grad_weight))

    def step(model: nn.Module, batch: CascadeBatch, amp) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        image, seg, gt = batch
        with amp:
            outputs = model(image, seg)
        terms = criterion.to(image.device)(outputs, gt)
        if cfg.local_pass and torch.rand(()) < cfg.local_pass:
            terms = _add_local_pass(model, criterion, image, outputs, gt, terms, amp)
        return terms, outputs

    def prepare(model: nn.Module) -> None:
        if cfg.backbone:
            load_imagenet_backbone(model, cfg.backbone)

    return Recipe(
        dataset=lambda pairs: TrainingSet(pairs, cfg.crop_size, degradation=cfg.degradation,
                                          scale_range=tuple(cfg.scale_range)),
        to_device=lambda batch, device: tuple(t.to(device, non_blocking=True) for t in batch),
        step=step, metrics=iou_per_output, images=image_columns, prepare=prepare,
        # The arbiter was fitted on the loaded network's outputs: a network trained further needs its own fit
        # (the preset's arbiter stage, or scripts/train_arbiter.py).
        not_trained=('arbiter.',), single_process='--local_pass' if cfg.local_pass else None)
