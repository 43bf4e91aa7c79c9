"""CascadePSP's configurations: inference (the Global and Local steps), training (the loss weights and the
local pass), and the named presets of ``train.py --preset``."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dataset.paths import data_root
from methods.base import Stage, TrainConfig


#: The authors' Local stride (px), whatever L (their eval_helper.py).
PAPER_STRIDE = 450


@dataclass(frozen=True)
class CascadeConfig:
    """Inference hyper-parameters (pixels). Defaults are the paper's, but the stride's: the architecture's (the
    paper's for ``cascadepsp``). Every field is an ``eval.py`` and ``refine.py`` flag."""
    L: int = field(default=900, metadata={'help': 'global resolution and local crop side (px)'})
    stride: int | None = field(default=None, metadata={
        'help': "local crop stride (px); crops step stride - 2 * margin; default: the architecture's (450, the "
                "paper's, for cascadepsp; 7/9 of L for lite: 700 at L = 900, its crops overlapping less)"})
    margin: int = 16        #: trimmed from every crop side that is not on the image border
    min_foreground: float = 0.1  #: crops whose global mask is below this foreground fraction are skipped
    max_foreground: float = 0.9  #: ... or above this one
    local_levels: int | None = field(default=None, metadata={
        'help': "cascade levels the Local step runs on each crop: 2, levels 2 and 3 (the authors'); 1, level 3 "
                "alone, on the global stride-4 result as its stride-8 and stride-4 inputs (half the work); default: "
                "the architecture's (2 for cascadepsp, 1 for lite, measured equal on the held-out benchmark)"})
    arbiter: bool = field(default=True, metadata={
        'help': "run the model's arbiter on the Global+Local result, if it has one (models/cascadepsp/arbiter.py; "
                "the bundled lite has one; not with --global_only); --no-arbiter: the cascade's output as it is"})
    batch: int = field(default=1, metadata={'help': 'local crops per forward pass (results do not change)',
                                            'same_results': True})
    global_only: bool = field(default=False, metadata={'aliases': ('fast',), 'help': 'Global step only'})
    min_size: int | None = field(default=None, metadata={
        'help': 'with --global_only: upscale images whose long side is under this (default L; 224 for '
                'ADE20K-style objects)'})
    compat: str = field(default='research', metadata={
        'help': "research: the authors' eval_helper.py (the papers' numbers); pip: their pip package "
                "segmentation-refinement 0.6, bit for bit (images under L upscaled to L for the Global step, "
                "Local stride L // 2, the fast mode's upscale with align_corners=True, no empty-mask shortcut)"})

    def __post_init__(self) -> None:
        if self.L < 8:
            raise ValueError(f'L must be at least 8 pixels, got {self.L}')
        if self.stride is not None and self.stride <= 2 * self.margin:
            raise ValueError(f'stride ({self.stride}) must exceed twice the margin ({self.margin})')
        if self.local_levels not in (None, 1, 2):
            raise ValueError(f'local_levels must be 1 or 2, got {self.local_levels}')
        if self.batch < 1:
            raise ValueError(f'batch must be at least 1, got {self.batch}')
        if self.min_size is not None and self.min_size < 8:
            raise ValueError(f'min_size must be at least 8 pixels, got {self.min_size}')
        if self.compat not in ('research', 'pip'):
            raise ValueError(f"compat must be 'research' or 'pip', got {self.compat!r}")
        if self.compat == 'pip':  # the package has no stride: it steps L // 2
            object.__setattr__(self, 'stride', self.L // 2)
            if self.stride <= 2 * self.margin and not self.global_only:  # a zero step crashes the package
                raise ValueError(f'compat=pip: L // 2 ({self.stride}) must exceed twice the margin ({self.margin})')

    @property
    def fast(self) -> bool:
        """The authors' pip package's name for :attr:`global_only`."""
        return self.global_only

    def local_stride(self, model: Any) -> int:
        """The Local step's stride (px): :attr:`stride`, or the architecture's default (``local_stride_fraction`` of
        L, at least twice the margin plus one; none: the paper's :data:`PAPER_STRIDE`)."""
        if self.stride is not None:
            return self.stride
        fraction = getattr(model, 'local_stride_fraction', None)
        return PAPER_STRIDE if fraction is None else max(round(self.L * fraction), 2 * self.margin + 1)

    def resolved(self, model: Any) -> 'CascadeConfig':
        """This config with the defaults that depend on the network filled in (the stride), as a results folder
        records it (:func:`inference.folders.run_settings`)."""
        return replace(self, stride=self.local_stride(model))


@dataclass
class CascadeTrainConfig(TrainConfig):
    """CascadePSP's training: the authors' loss weights (six outputs: see :mod:`methods.cascadepsp.loss`)."""
    ce_weight: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.5, 1.0, 1.0, 0.5], metadata={'nargs': 6})
    l1_weight: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25], metadata={'nargs': 6})
    l2_weight: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25], metadata={'nargs': 6})
    grad_weight: float = 5.0
    local_pass: float = 0.0        #: share of batches that also train the Local step's pass (levels 2-3 on
                                   #: the model's own binarised output, as inference runs them); 0: the authors'
    backbone: str | None = None    #: torchvision ImageNet ResNet-50 file to initialise the encoder


def _arbiter_stage(values: dict) -> Path:
    from methods.cascadepsp.arbiter_recipe import arbiter_stage  # it runs the inference, which imports this module
    return arbiter_stage(values)


#: The CPU recipe of the bundled ``lite`` weights (see docs/cascadepsp.md): shared flags, then the stages.
_LITE_CPU = dict(arch='lite', data_root=data_root(), sources=['ecssd', 'DUTS-TE'], device='cpu',
                 batch_size=8, crop_size=192, schedule='cosine', workers=1, log_interval=50)

# Half of the arbiter's training masks are near-right (x3-x5 low-resolution, `lowres_near`): with the default
# mix alone (one in eight), it moved x4 boundaries that were right (docs/cascadepsp.md, experiment 6).
_ARBITER = dict(data_root=data_root(), sources=['ecssd', 'DUTS-TE'], images=1200, samples=3000, epochs=8,
                hidden=64, seed=1, half=True, evidence=True, post_radius=0.5,
                families={'lowres_wide': 5, 'perturb': 2, 'blur': 2, 'identity': 1, 'lowres_near': 10})

PRESETS: dict[str, tuple[Stage, ...]] = {
    'lite': (
        # Stage 1: the authors' perturbation mixed with low-resolution and blurred masks; stopped at 2400
        # of a 4000-iteration cosine schedule (its validation had flattened).
        Stage('stage1', dict(_LITE_CPU, degradation='mix', iterations=4000, until=2400, lr=1e-3, warmup=200,
                             save_interval=200, val_dir='data/val_mixed', val_interval=500)),
        # Stage 2: more near-right masks, and the pass the Local step makes over the model's own output.
        Stage('stage2', dict(_LITE_CPU, degradation='mix_gentle', local_pass=0.5, iterations=1900, lr=5e-4,
                             warmup=50, save_interval=100, val_dir='data/val_mixed', val_interval=500),
              load_from=('stage1', 2400)),
        # Stage 3: the arbiter (models/cascadepsp/arbiter.py) fitted on the stage-2 network's outputs.
        Stage('arbiter', _ARBITER, load_from=('stage2', None), run=_arbiter_stage),
    ),
    # The network's last guided filter at radius 2 px instead of 4 (at inference alone, radius 2 moved the bundled
    # network's lowres4 mBA from 79.5 to 82.6 and its lowres one from 73.6 to 72.7), fine-tuned from the bundled
    # network on near-right masks at several scales; then the arbiter fitted on its outputs.
    'lite_r2': (
        Stage('stage3', dict(_LITE_CPU, load='lite', arch_args={'gf_radius': 2}, degradation='nearright',
                             scale_range=[0.5, 2.0], local_pass=0.5, iterations=1500, lr=5e-4, warmup=50,
                             save_interval=100)),
        Stage('arbiter', _ARBITER, load_from=('stage3', None), run=_arbiter_stage),
    ),
    # Experiments on near-right masks that were not shipped (docs/cascadepsp.md, "Near-right masks"); both
    # start from the bundled weights (the end of stage 2).
    # The whole network fine-tuned on near-right masks at every coarseness (x2-x24), right masks, images at
    # several scales, and the Local step's pass.
    'lite_nearright': (
        Stage('stage3', dict(_LITE_CPU, load='lite', degradation='nearright', scale_range=[0.5, 2.0],
                             local_pass=0.5, iterations=2000, lr=5e-4, warmup=50, threads=1, save_interval=100,
                             val_dir='data/val_mixed12', val_interval=500)),
    ),
    # The same data for a gate (models/cascadepsp/lite.py, gate_radii) on the frozen network: only the gate
    # and the full-resolution heads train.
    'lite_gate': (
        Stage('gate', dict(_LITE_CPU, load='lite', arch_args={'gate_radii': [2, 4, 8, 16]}, load_new=['gate.'],
                           train_only=['gate.', 'final_s2.', 'guide.', 'log_eps', 'prior_scale'],
                           degradation='nearright', scale_range=[0.5, 2.0], local_pass=0.5, iterations=2000,
                           lr=1e-3, warmup=50, save_interval=100, val_dir='data/val_mixed12', val_interval=500)),
    ),
}
