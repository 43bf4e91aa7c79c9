"""CascadePSP's configurations: inference (the Global and Local steps) and training (the loss weights and the
local pass). The named presets of ``train.py --preset`` are in :mod:`methods.cascadepsp.presets`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from methods.base import TrainConfig, method_default


#: The authors' Local stride (px), whatever L (their eval_helper.py).
PAPER_STRIDE = 450


@dataclass(frozen=True)
class LocalPolicy:
    """How the Local step runs for an architecture when the config does not say: an inference setting, kept here
    with the method rather than on the network."""
    levels: int = 2                     #: cascade levels per crop: 2 (levels 2 and 3, the authors'), or 1 (level 3)
    stride_fraction: float | None = None  #: crop stride as a fraction of L; None: the paper's 450 px, whatever L


#: The Local step's defaults per architecture (any other: the authors'). ``lite``: level 3 alone scored within
#: 0.15 mBA of levels 2-3 on every held-out family, in half the crop time; its crops step 7/9 of L (700 px at
#: L = 900), since its predictions of overlapping crops agree where they overlap (on Figure 1: 3 crops instead of
#: 10, 65 of 8.1 M pixels across 0.5; docs/experiments/lite.md).
LOCAL_POLICIES: dict[str, LocalPolicy] = {'cascadepsp': LocalPolicy(), 'lite': LocalPolicy(1, 7 / 9)}


def local_policy(model: Any) -> LocalPolicy:
    """The Local step's defaults for ``model``'s architecture (its ``arch``)."""
    return LOCAL_POLICIES.get(model.arch, LocalPolicy())


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
        """The Local step's stride (px): :attr:`stride`, or the architecture's default (:data:`LOCAL_POLICIES`: a
        fraction of L, at least twice the margin plus one; none: the paper's :data:`PAPER_STRIDE`)."""
        if self.stride is not None:
            return self.stride
        fraction = local_policy(model).stride_fraction
        return PAPER_STRIDE if fraction is None else max(round(self.L * fraction), 2 * self.margin + 1)

    def levels(self, model: Any) -> int:
        """The cascade levels the Local step runs per crop: :attr:`local_levels`, or the architecture's default."""
        return self.local_levels or local_policy(model).levels

    def resolved(self, model: Any) -> 'CascadeConfig':
        """This config with the defaults that depend on the network filled in (the stride), as a results folder
        records it (:func:`inference.folders.run_settings`)."""
        return replace(self, stride=self.local_stride(model))


@dataclass
class CascadeTrainConfig(TrainConfig):
    """CascadePSP's training: the authors' schedule and loss weights (their ``hyper_para.py``; six outputs: see
    :mod:`methods.cascadepsp.loss`)."""
    arch: str = method_default('arch', 'cascadepsp')
    iterations: int = method_default('iterations', 45000)
    batch_size: int = method_default('batch_size', 12)
    lr: float = method_default('lr', 2.25e-4)
    steps: list[int] = method_default('steps', [22500, 37500])
    weight_decay: float = method_default('weight_decay', 1e-4)
    ce_weight: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.5, 1.0, 1.0, 0.5], metadata={'nargs': 6})
    l1_weight: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25], metadata={'nargs': 6})
    l2_weight: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25], metadata={'nargs': 6})
    grad_weight: float = 5.0
    local_pass: float = 0.0        #: share of batches that also train the Local step's pass (levels 2-3 on
                                   #: the model's own binarised output, as inference runs them); 0: the authors'
    backbone: str | None = None    #: torchvision ImageNet ResNet-50 file to initialise the encoder
