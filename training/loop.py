"""The generic training loop (``train``), used by ``train.py`` for every method.

The method's recipe (:class:`methods.base.Recipe`) gives the data, the step (forward passes and loss terms),
the logged metrics and images; the loop owns the rest: optimizer and schedule, DDP, AMP, resuming at the
same iteration, the stop on a non-finite loss, atomic checkpoints, validation and logging. One process per
GPU under torchrun (DistributedDataParallel + SyncBatchNorm, each rank a share of the global batch, rank 0
alone logs and saves), or a single process on one GPU or the CPU.
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
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from dataset.readers import training_pairs
from dataset.splits import exclude_split
from methods import Recipe, TrainConfig, method_of
from models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from models.hub import resolve_weights
from models.registry import build_model
from training.logger import TrainLogger
from training.validate import validate
from util import distributed
from util.atomic import write_text
from util.devices import parse_device

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


def _repo_path(path: str) -> Path:
    """``path`` as given, or relative to the repository when it is not found from here."""
    p = Path(path)
    repo = Path(__file__).resolve().parents[1] / p
    return p if p.exists() or p.is_absolute() or not repo.exists() else repo


def _run_name(cfg: TrainConfig) -> str:
    return f"{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}_{cfg.exp_id}"


def _build_model(cfg: TrainConfig, recipe: Recipe, device: torch.device, rank: int, local_rank: int, world: int,
                 unit: int):
    """Model (wrapped in DDP when world > 1), optimizer, scheduler, first iteration and run name. ``unit``:
    iterations per schedule unit (an epoch with ``epoch_schedule``, else 1)."""
    model = build_model(cfg.arch, **cfg.arch_args)
    recipe.prepare(model)
    if cfg.load:
        load_weights(model, resolve_weights(cfg.load), new=tuple(cfg.load_new), drop=recipe.not_trained)
    params = freeze_except(model, cfg.train_only)
    model.to(device).train()
    if cfg.optimizer == 'sgd':
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(cfg, optimizer, unit)
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


def freeze_except(model: nn.Module, prefixes: list[str]) -> list[nn.Parameter]:
    """Train only the parameters whose names start with one of ``prefixes`` (all when empty): the others
    stop requiring gradients, and every module without a trainable parameter stays in eval mode from now on
    (its batch-norm statistics are part of what is frozen). Returns the trainable parameters."""
    if not prefixes:
        return list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    if unknown := [p for p in prefixes if not any(n.startswith(p) for n in names)]:
        raise ValueError(f'--train_only: no parameter of the {getattr(model, "arch", "")} model starts with '
                         f'{", ".join(unknown)}')
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(prefixes)))
    frozen = [m for m in model.modules() if not any(p.requires_grad for p in m.parameters())]
    train = model.train

    def train_frozen_in_eval(mode: bool = True) -> nn.Module:
        train(mode)
        for m in frozen:
            m.eval()
        return model
    model.train = train_frozen_in_eval  # the loop and validation call model.train(): frozen parts stay in eval
    return [p for p in model.parameters() if p.requires_grad]


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, unit: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """The authors' steps (``step``) or a cosine decay to 0 (``cosine``), after ``warmup`` linear iterations.
    Iterations, steps and warm-up count ``unit`` optimisation steps each (an epoch for MagNet's milestones)."""
    total, warmup, steps = cfg.iterations * unit, cfg.warmup * unit, [s * unit for s in cfg.steps]

    def factor(it: int) -> float:
        warm = min(1.0, (it + 1) / warmup) if warmup else 1.0
        if cfg.schedule == 'cosine':
            return warm * 0.5 * (1 + math.cos(math.pi * min(it, total) / total))
        return warm * cfg.gamma ** sum(it >= s for s in steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _build_loader(cfg: TrainConfig, recipe: Recipe, device: torch.device, rank: int, world: int) -> DataLoader:
    pairs = recipe.pairs() if recipe.pairs else training_pairs(cfg.data_root, cfg.sources or None)
    if cfg.holdout:
        pairs = exclude_split(pairs, _repo_path(cfg.holdout))
    dataset = recipe.dataset(pairs)
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
    method = method_of(cfg.arch)
    recipe = method.recipe(cfg)
    if recipe.single_process and world > 1:
        raise ValueError(f'{recipe.single_process} runs in a single process only (not under torchrun)')
    val_cfg = method.InferConfig(**cfg.val_args)
    device = parse_device(cfg.device)
    if device.type == 'cuda' and device.index is None and world > 1:  # each rank its own GPU
        device = torch.device('cuda', local_rank)
    torch.manual_seed(cfg.seed + rank)  # ranks (and their loader workers) draw different crops
    main_rank = rank == 0
    loader = _build_loader(cfg, recipe, device, rank, world)
    unit = len(loader) if cfg.epoch_schedule else 1  # iterations per unit of --iterations, --steps, --save_interval
    model, optimizer, scheduler, start, run = _build_model(cfg, recipe, device, rank, local_rank, world, unit)
    net = model.module if world > 1 else model

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
    end = min(cfg.until or cfg.iterations, cfg.iterations) * unit
    bar = progressbar.ProgressBar(min_value=start, max_value=end) if main_rank else None
    tick, seen, waited = time.perf_counter(), 0, 0.0
    for it in range(start, end):
        t0 = time.perf_counter()
        batch = recipe.to_device(next(batches), device)
        waited += time.perf_counter() - t0  # time the step waited for data: the loader is not keeping up
        terms, outputs = recipe.step(model, batch, amp)
        if distributed.all_reduce_mean((~torch.isfinite(terms['total_loss'])).float()) > 0:
            raise NonFiniteLoss(f'non-finite loss at iteration {it}; stopping without saving '
                                f'(last good checkpoint: the latest in {save_dir})')
        optimizer.zero_grad(set_to_none=True)
        terms['total_loss'].backward()
        optimizer.step()
        scheduler.step()
        size = recipe.size(batch)  # samples in this rank's batch
        seen += size * world

        if (it + 1) % cfg.log_interval == 0 or it + 1 == end:
            values = {k: float(distributed.all_reduce_mean(v.detach())) for k, v in terms.items()}  # every rank joins
            if main_rank:
                values |= recipe.metrics(batch, outputs)
                elapsed = time.perf_counter() - tick
                values |= {'lr': scheduler.get_last_lr()[0], 'images_per_s': seen / elapsed,
                           'iterations_per_s': seen / (size * world) / elapsed,
                           'data_wait_fraction': waited / elapsed}
                if device.type == 'cuda':
                    values['gpu_peak_gib'] = torch.cuda.max_memory_allocated(device) / 2**30
                logger.scalars(values, it + 1, 'train/')
            tick, seen, waited = time.perf_counter(), 0, 0.0
        if main_rank and (it + 1) % cfg.image_interval == 0:
            logger.images(recipe.images(batch, outputs), it + 1)
        if main_rank and (it + 1) % (cfg.save_interval * unit) == 0 and it + 1 < end:
            save(f'checkpoint_{it + 1}.pth', it + 1)
        if cfg.val_dir and (it + 1) % (cfg.val_interval * unit) == 0:
            if main_rank:  # the other ranks wait at the barrier: keep the validation folder small
                logger.scalars({k: v for k, v in validate(net, cfg.val_dir, val_cfg).items()
                                if isinstance(v, float) and not math.isnan(v)}, it + 1, 'val/')
                net.train()
            distributed.barrier()
        if bar:
            bar.update(it + 1)
    bar and bar.finish()
    final = save('checkpoint_final.pth', end) if main_rank else None
    logger.close()
    distributed.cleanup()
    return final
