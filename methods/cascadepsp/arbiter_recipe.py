"""The arbiter's training recipe (:mod:`models.cascadepsp.arbiter`): fitted after the network, on its outputs.

Its one home is :class:`ArbiterConfig`, whose defaults are the shipped arbiter's. ``images`` training pairs (never
the held-out split), 30% of them enlarged by U[1.3, 2.5]; each coarse mask made by one family drawn by weight:
a degradation of :mod:`dataset.degrade` (the jitter family is kept out, as from every training recipe) or the
real segmenter's mask of that image (``mediapipe``, :mod:`dataset.segmenter_masks`, on pairs where it reaches
IoU 0.6); the network's Global+Local output at the method's defaults (without any arbiter); up to ``samples``
band pixels per image (all, if fewer). Then the MLP: Adam at
1e-3 with a cosine schedule over ``epochs``, batches of 4096, binary cross-entropy against the ground truth, each
image weighing the same (mBA averages images, and a coarse mask has a wider band). Everything is drawn from
``seed``. It runs as the last stage of ``train.py --preset lite`` and as ``scripts/train_arbiter.py``.
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn

from dataset.degrade import FAMILY_NAMES, degrade
from dataset.paths import data_root as default_data_root
from dataset.readers import Pair, training_pairs
from dataset.segmenter_masks import SEGMENTER, segmenter_mask, with_segmenter_masks
from dataset.splits import VAL_SPLIT, exclude_split
from methods.cascadepsp.config import CascadeConfig
from methods.cascadepsp.inference import refine
from models.cascadepsp.arbiter import Arbiter
from models.checkpoint import load_model, read_checkpoint, save_checkpoint
from util.image_io import read_grey, read_rgb
from util.transforms import binarize, mask_tensor, rgb_tensor

log = logging.getLogger(__name__)
#: The coarse-mask families of the shipped arbiter and their weights: dataset.degrade names, and the real
#: segmenter's masks of the training images (a sixth of them). Half of all are near-right (lowres_near, x3-x5):
#: with fewer, it moved x4 boundaries that were right (docs/experiments/lite.md).
FAMILIES = {'lowres_wide': 5, 'perturb': 2, 'blur': 2, 'identity': 1, 'lowres_near': 15, 'mediapipe': 5}
#: The module's own hyper-parameters (its width, cues and final filter): their one home is :class:`Arbiter`.
_MODULE = {name: p.default for name, p in inspect.signature(Arbiter).parameters.items()}


@dataclass(frozen=True)
class ArbiterConfig:
    """The arbiter's recipe; the defaults are the shipped arbiter's. Every field is a ``scripts/train_arbiter.py``
    flag and a key of the ``arbiter`` stage of ``train.py --preset lite``."""
    data_root: str = field(default_factory=default_data_root, metadata={
        'help': 'the data root (default: $CASCADEPSP_DATA or data)'})
    sources: list[str] = field(default_factory=lambda: ['ecssd', 'DUTS-TE'])
    images: int = field(default=1800, metadata={'help': 'training images'})
    samples: int = field(default=3000, metadata={'help': 'band pixels per image'})
    epochs: int = 8
    hidden: int = field(default=_MODULE['hidden'], metadata={'help': "width of the MLP's hidden layers"})
    seed: int = 1
    threads: int = field(default=0, metadata={'help': 'torch CPU threads (0: the default)'})
    half: bool = field(default=True, metadata={'help': 'store float16 weights, as the bundled file'})
    evidence: bool = field(default=_MODULE['evidence'], metadata={'help': 'the image-evidence cues'})
    post_radius: float = field(default=_MODULE['post_radius'], metadata={
        'help': 'final guided filter, radius in units of (H + W) / 300 px (0: none)'})
    families: dict[str, float] = field(default_factory=lambda: dict(FAMILIES), metadata={
        'help': 'coarse-mask families and their weights'})

    def __post_init__(self) -> None:
        for name, weight in self.families.items():
            if name not in (*FAMILY_NAMES, SEGMENTER) or name == 'jitter' or not weight > 0:
                raise ValueError(f'arbiter families: {name}={weight}: families are {", ".join(FAMILY_NAMES)}, '
                                 f'{SEGMENTER} (the real segmenter\'s masks of the training images) but jitter (kept '
                                 'out of every training recipe: the benchmark measures generalisation to it), with '
                                 'positive weights')
        if min(self.images, self.samples, self.epochs, self.hidden) < 1 or self.post_radius < 0:
            raise ValueError('arbiter: images, samples, epochs and hidden must be at least 1, post_radius at least 0')


def assign(pairs: list[Pair], images: int, families: dict[str, float], rng: np.random.Generator
           ) -> list[tuple[Pair, str | None]]:
    """``images`` training pairs drawn from ``pairs``, each with the family that makes its coarse mask: the real
    segmenter's (``mediapipe``, :mod:`dataset.segmenter_masks`) for its share of the weights, on pairs whose
    mask reaches IoU 0.6, or None for a synthetic family that :func:`collect` draws."""
    order = [pairs[i] for i in rng.permutation(len(pairs))]
    if SEGMENTER not in families:
        return [(p, None) for p in order[:images]]
    eligible = with_segmenter_masks(order)
    share = families[SEGMENTER] / sum(families.values())
    chosen = eligible[:min(len(eligible), round(images * share))]
    if len(chosen) < round(images * share):
        log.warning('arbiter: %d of the %d %s masks asked for exist with IoU >= 0.6 (dataset/segmenter_masks.py); '
                    'the rest come from the synthetic families', len(chosen), round(images * share), SEGMENTER)
    taken = set(chosen)
    rest = [p for p in order if p not in taken][:images - len(chosen)]
    items = [(p, SEGMENTER) for p in chosen] + [(p, None) for p in rest]
    return [items[i] for i in rng.permutation(len(items))]


def collect(model: nn.Module, arbiter: Arbiter, items: list[tuple[Pair, str | None]], samples: int,
            rng: np.random.Generator, families: dict[str, float] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N x F features, N ground-truth labels in {0, 1}, N image indices) of band pixels sampled from every
    (pair, family) of ``items`` (:func:`assign`); a family of None is drawn by weight from the synthetic families
    of ``families`` (default :data:`FAMILIES`)."""
    synthetic = {k: v for k, v in (families or FAMILIES).items() if k != SEGMENTER}
    names, weights = list(synthetic), np.array(list(synthetic.values()), float)
    xs, ys, ids = [], [], []
    for n, (pair, family) in enumerate(items):
        image, gt = read_rgb(pair.image), read_grey(pair.mask)
        theirs = read_grey(segmenter_mask(pair)) if family == SEGMENTER else None
        if rng.random() < 0.3:
            s = rng.uniform(1.3, 2.5)
            image = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
            gt = cv2.resize(gt, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            if theirs is not None:
                theirs = cv2.resize(theirs, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        gt = np.where(gt > 127, 255, 0).astype(np.uint8)
        if family == SEGMENTER:
            coarse = binarize(theirs)
        else:
            coarse = degrade(gt, names[rng.choice(len(names), p=weights / weights.sum())], rng)
        with torch.inference_mode():
            prob = refine(model, rgb_tensor(image), mask_tensor(coarse), CascadeConfig()).probs[0, 0].numpy()
        x, band = arbiter.features(image, coarse > 127, prob)
        py, px = np.nonzero(band)
        if len(py):
            keep = rng.choice(len(py), min(len(py), samples), replace=False)
            xs.append(x[:, keep].T.contiguous())
            ys.append(torch.from_numpy(gt[py[keep], px[keep]] > 127).float())
            ids.append(torch.full((len(keep),), n))
        if n % 100 == 0:
            log.info('%d/%d images', n, len(items))
    return torch.cat(xs), torch.cat(ys), torch.cat(ids)


def fit(arbiter: Arbiter, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, epochs: int, lr: float = 1e-3,
        batch: int = 4096) -> list[float]:
    """Standardise the features and fit the MLP; returns the mean weighted loss of each epoch."""
    arbiter.mean.copy_(x.mean(0))
    arbiter.std.copy_(x.std(0) + 1e-3)
    xn = (x - arbiter.mean) / arbiter.std
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    weight = (1.0 / counts.float())[inverse]
    weight /= weight.mean()
    opt = torch.optim.Adam(arbiter.mlp.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    losses = []
    for epoch in range(epochs):
        perm, total = torch.randperm(len(xn)), 0.0
        for i in range(0, len(xn), batch):
            j = perm[i:i + batch]
            loss = nn.functional.binary_cross_entropy_with_logits(arbiter.mlp(xn[j])[:, 0], y[j], weight=weight[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(j)
        sched.step()
        losses.append(total / len(xn))
        log.info('arbiter epoch %d: loss %.4f', epoch, losses[-1])
    return losses


def train_arbiter(load: str | Path, output: str | Path, cfg: ArbiterConfig | None = None) -> Path:
    """Fit an arbiter with recipe ``cfg`` (default: the shipped one) on the outputs of the network in checkpoint
    ``load`` and write both to ``output`` (with the network's training record: config, iteration, note). Raises
    ValueError for an architecture without an arbiter."""
    cfg = cfg or ArbiterConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, source = load_model(load).eval(), read_checkpoint(load)
    if not hasattr(model, 'set_arbiter'):
        raise ValueError(f'{load}: the {getattr(model, "arch", "?")} architecture takes no arbiter')
    model.set_arbiter(None)  # the arbiter learns from the network's own outputs
    pairs = exclude_split(training_pairs(cfg.data_root, cfg.sources), VAL_SPLIT)
    items = assign(pairs, cfg.images, cfg.families, rng)
    arbiter = Arbiter(hidden=cfg.hidden, evidence=cfg.evidence, post_radius=cfg.post_radius)
    start = time.time()
    x, y, ids = collect(model, arbiter, items, cfg.samples, rng, cfg.families)
    log.info('%d band pixels from %d images in %.0f s', len(x), len(items), time.time() - start)
    losses = fit(arbiter, x, y, ids, cfg.epochs)
    model.set_arbiter(arbiter)
    recipe: dict[str, Any] = dict(asdict(cfg), load=str(load), losses=losses, pixels=len(x))
    note = (f'arbiter: {cfg.images} images, seed {cfg.seed}, evidence {cfg.evidence}, post_radius {cfg.post_radius}, '
            f'{time.time() - start:.0f} s')
    # The network's history stays; an arbiter the source had is replaced, so its line goes.
    kept = [part for part in source.get('note', '').split('; ') if part and not part.startswith('arbiter:')]
    save_checkpoint(output, model, half=cfg.half, config=source.get('config'), iteration=source.get('iteration'),
                    note='; '.join(kept + [note]), arbiter_recipe=recipe)
    log.info('wrote %s', output)
    return Path(output)


def arbiter_stage(values: dict[str, Any]) -> Path:
    """The preset stage: ``values`` are the stage's settings (fields of :class:`ArbiterConfig`) with ``load`` (the
    previous stage's checkpoint), ``exp_id`` and ``save_dir``; writes save_dir/RUN_EXP_ID/checkpoint_final.pth."""
    names = {f.name for f in fields(ArbiterConfig)}
    output = Path(values.get('save_dir', 'saves')) / f'RUN_{values["exp_id"]}' / 'checkpoint_final.pth'
    output.parent.mkdir(parents=True, exist_ok=True)
    return train_arbiter(values['load'], output, ArbiterConfig(**{k: v for k, v in values.items() if k in names}))
