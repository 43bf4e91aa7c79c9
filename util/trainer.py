"""Training: setup helpers and the loop (``train``), used by ``train.py``.

One process per GPU under torchrun (DistributedDataParallel + SyncBatchNorm, each rank a share of the
global batch, rank 0 alone logs and saves), or a single process on one GPU or the CPU.
"""
from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime
from pathlib import Path

import progressbar
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from dataset.readers import training_pairs
from dataset.splits import exclude_split
from dataset.training_set import TrainingSet
from models.checkpoint import load_imagenet_backbone, load_weights, read_checkpoint, save_checkpoint
from models.hub import resolve_weights
from models.registry import build_model
from util import distributed
from util.atomic import write_text
from util.config import TrainConfig
from util.logger import TrainLogger
from util.loss import LOSS_OUTPUTS, CascadeLoss, LossWeights
from util.validate import validate

log = logging.getLogger('train')


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops without saving."""


def _batches(loader: DataLoader, epoch: int):
    """Endless iterator over the loader; reshuffles (per rank) every epoch."""
    while True:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


@torch.no_grad()
def _iou_per_output(outputs: dict[str, torch.Tensor], seg: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """Batch IoU of every output (and of the input mask) against the ground truth, thresholds at 0.5/0."""
    hard = gt > 0.5

    def iou(pred: torch.Tensor) -> float:
        union = (pred | hard).sum()
        return float((pred & hard).sum() / union) if union else 1.0

    values = {f'iou/{name}': iou(outputs['pred_' + suffix] > 0.5) for suffix, name in LOSS_OUTPUTS}
    values['iou/input'] = iou(seg > 0)
    return values


def _add_local_pass(model, criterion, image, outputs, gt, terms, amp):
    """Also train the pass the Local step makes: levels 2-3 with the binarised level-3 output as the mask
    and the stride-4 output in place of level 1 (see models.cascade.local_step); its loss is added. At
    inference that pass refines the model's own output, which the authors' training never shows it."""
    with torch.no_grad():
        seg2 = (outputs['pred_224'] > 0.5).to(image.dtype) * 2 - 1
        s8 = outputs['pred_56_2'].to(image.dtype) * 2 - 1
    with amp:
        second = model(image, seg2, s8)
    extra = criterion({**outputs, **second}, gt)  # level 1 (out_28) is not rerun: the first pass's stands in
    return {k: v + extra[k] for k, v in terms.items()}


def _repo_path(path: str) -> Path:
    """``path`` as given, or relative to the repository when it is not found from here."""
    p = Path(path)
    repo = Path(__file__).resolve().parents[1] / p
    return p if p.exists() or p.is_absolute() or not repo.exists() else repo


def _run_name(cfg: TrainConfig) -> str:
    return f"{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}_{cfg.exp_id}"


def _build_model(cfg: TrainConfig, device: torch.device, rank: int, local_rank: int, world: int):
    """Model (wrapped in DDP when world > 1), optimizer, scheduler, first iteration and run name."""
    try:
        hparams = json.loads(cfg.arch_args)
    except json.JSONDecodeError as e:
        raise ValueError(f'--arch_args is not JSON: {cfg.arch_args!r} ({e})') from e
    model = build_model(cfg.arch, **hparams)
    if cfg.backbone:
        load_imagenet_backbone(model, cfg.backbone)
    if cfg.load:
        load_weights(model, resolve_weights(cfg.load))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(cfg, optimizer)
    start, run = 0, _run_name(cfg)
    if cfg.resume:
        state = read_checkpoint(cfg.resume)
        load_weights(model, cfg.resume, state)
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        start, run = state['iteration'], state['run']
        torch.set_rng_state(state['rng'])  # rank 0's state: derive a distinct stream per rank from it
        torch.manual_seed(int(torch.randint(2**62, ())) + rank)
        log.info('resumed %s at iteration %d (lr %.3g)', cfg.resume, start, optimizer.param_groups[0]['lr'])
    if world > 1:
        if device.type == 'cuda':  # SyncBatchNorm is CUDA-only; CPU (gloo) runs are for testing the plumbing
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == 'cuda' else None)
    return model, optimizer, scheduler, start, run


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The authors' steps (``step``) or a cosine decay to 0 (``cosine``), after ``warmup`` linear iterations."""
    def factor(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup) if cfg.warmup else 1.0
        if cfg.schedule == 'cosine':
            return warm * 0.5 * (1 + math.cos(math.pi * min(it, cfg.iterations) / cfg.iterations))
        return warm * cfg.gamma ** sum(it >= s for s in cfg.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _build_loader(cfg: TrainConfig, device: torch.device, rank: int, world: int) -> DataLoader:
    pairs = training_pairs(cfg.data_root, cfg.sources or None)
    if cfg.holdout:
        pairs = exclude_split(pairs, _repo_path(cfg.holdout))
    dataset = TrainingSet(pairs, cfg.crop_size, degradation=cfg.degradation)
    sampler = DistributedSampler(dataset, world, rank, seed=cfg.seed) if world > 1 else RandomSampler(dataset)
    return DataLoader(dataset, cfg.batch_size // world, sampler=sampler, num_workers=cfg.workers,
                      drop_last=len(dataset) >= cfg.batch_size, pin_memory=device.type == 'cuda',
                      persistent_workers=cfg.workers > 0)


def train(cfg: TrainConfig) -> Path | None:
    """Train as configured. Returns the final checkpoint's path (None for an unnamed NULL run)."""
    rank, local_rank, world = distributed.init()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world:
        raise ValueError(f'batch size {cfg.batch_size} is not divisible by the {world} ranks')
    if cfg.local_pass and world > 1:  # two forward passes before one backward: DDP's reducer refuses that
        raise ValueError('--local_pass runs in a single process only (not under torchrun)')
    device = torch.device(f'cuda:{local_rank}' if cfg.device == 'cuda' and world > 1 else cfg.device)
    torch.manual_seed(cfg.seed + rank)  # ranks (and their loader workers) draw different crops
    main_rank = rank == 0
    model, optimizer, scheduler, start, run = _build_model(cfg, device, rank, local_rank, world)
    net = model.module if world > 1 else model
    criterion = CascadeLoss(LossWeights(cfg.ce_weight, cfg.l1_weight, cfg.l2_weight, cfg.grad_weight)).to(device)
    loader = _build_loader(cfg, device, rank, world)

    named = cfg.exp_id.upper() != 'NULL'
    save_dir = Path(cfg.save_dir) / run if named and main_rank else None
    logger = TrainLogger(Path(cfg.log_dir) / run if named and main_rank else None)
    if save_dir:
        write_text(save_dir / 'config.json', json.dumps(cfg.to_dict(), indent=1) + '\n')
        log.info('run %s: %d training pairs, %d rank(s), checkpoints in %s', run, len(loader.dataset), world, save_dir)

    def save(name: str, iteration: int) -> Path | None:
        if not save_dir:
            return None
        path = save_dir / name
        save_checkpoint(path, net, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        iteration=iteration, run=run, config=cfg.to_dict(), rng=torch.get_rng_state())
        log.info('saved %s', path)
        return path

    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == 'cuda')
    batches = _batches(loader, start // len(loader))  # a resumed run starts a fresh shuffle of its epoch
    bar = progressbar.ProgressBar(min_value=start, max_value=cfg.iterations) if main_rank else None
    tick, seen, waited = time.perf_counter(), 0, 0.0
    for it in range(start, cfg.iterations):
        t0 = time.perf_counter()
        image, seg, gt = (t.to(device, non_blocking=True) for t in next(batches))
        waited += time.perf_counter() - t0  # time the step waited for data: the loader is not keeping up
        with amp:
            outputs = model(image, seg)
        terms = criterion(outputs, gt)
        if cfg.local_pass and torch.rand(()) < cfg.local_pass:
            terms = _add_local_pass(model, criterion, image, outputs, gt, terms, amp)
        if distributed.all_reduce_mean((~torch.isfinite(terms['total_loss'])).float()) > 0:
            raise NonFiniteLoss(f'non-finite loss at iteration {it}; stopping without saving '
                                f'(last good checkpoint: the latest in {save_dir})')
        optimizer.zero_grad(set_to_none=True)
        terms['total_loss'].backward()
        optimizer.step()
        scheduler.step()
        seen += image.shape[0] * world

        if (it + 1) % cfg.log_interval == 0 or it + 1 == cfg.iterations:
            values = {k: float(distributed.all_reduce_mean(v.detach())) for k, v in terms.items()}  # every rank joins
            if main_rank:
                values |= _iou_per_output(outputs, seg, gt)
                elapsed = time.perf_counter() - tick
                values |= {'lr': scheduler.get_last_lr()[0], 'images_per_s': seen / elapsed,
                           'iterations_per_s': seen / (image.shape[0] * world) / elapsed,
                           'data_wait_fraction': waited / elapsed}
                if device.type == 'cuda':
                    values['gpu_peak_gib'] = torch.cuda.max_memory_allocated(device) / 2**30
                logger.scalars(values, it + 1, 'train/')
            tick, seen, waited = time.perf_counter(), 0, 0.0
        if main_rank and (it + 1) % cfg.image_interval == 0:
            logger.images(image, seg, gt, outputs, it + 1)
        if main_rank and (it + 1) % cfg.save_interval == 0 and it + 1 < cfg.iterations:
            save(f'checkpoint_{it + 1}.pth', it + 1)
        if cfg.val_dir and (it + 1) % cfg.val_interval == 0:
            if main_rank:  # the other ranks wait at the barrier: keep the validation folder small
                logger.scalars({k: v for k, v in validate(net, cfg.val_dir, cfg.val_L, cfg.val_stride,
                                                          cfg.val_global_only).items()
                                if isinstance(v, float) and not math.isnan(v)}, it + 1, 'val/')
                net.train()
            distributed.barrier()
        if bar:
            bar.update(it + 1)
    bar and bar.finish()
    final = save('checkpoint_final.pth', cfg.iterations) if main_rank else None
    logger.close()
    distributed.cleanup()
    return final
