"""CRM's configurations: inference (the coarse-to-fine loop over scales) and training (the single-output loss
weights of the authors' README command)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dataset.paths import data_root
from methods.base import Stage, TrainConfig, method_default

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CRMConfig:
    """Inference settings. Defaults are the authors' ``test.py``. Every field is an ``eval.py``/``refine.py`` flag."""
    scales: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0], metadata={
        'help': 'input scales of the coarse-to-fine loop; each writes {s}_NAME_mask.png, the last NAME_mask.png'})
    chunk: int = field(default=802816, metadata={
        'help': 'queries decoded at once (the authors\' 50176 * 16); lower bounds memory on large images',
        'same_results': True})
    pad: int = field(default=32, metadata={'help': 'reflect padding on every side (px), as the authors pad'})
    global_only: bool = field(default=False, metadata={
        'aliases': ('fast',), 'help': 'one pass at --L instead of the scales (the authors\' code crashes here)'})
    L: int = field(default=900, metadata={'help': 'with --global_only: the input\'s long side is scaled to at most L'})
    stride: int = field(default=450, metadata={'help': 'accepted, as the authors\' test.py accepts it; unused by CRM'})

    def __post_init__(self) -> None:
        scales = list(self.scales)
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f'scales must be in (0, 1], got {scales}')
        object.__setattr__(self, 'scales', scales)
        if scales != sorted(scales):
            log.warning('--scales %s: not in increasing order; CRM refines coarse to fine and its last scale is the '
                        'output, so it comes out at scale %g', ' '.join(f'{s:g}' for s in scales), scales[-1])
        if self.chunk < 1:
            raise ValueError(f'chunk must be at least 1 query, got {self.chunk}')
        if self.pad < 0:
            raise ValueError(f'pad must be >= 0, got {self.pad}')
        if self.L < 8:
            raise ValueError(f'L must be at least 8 pixels, got {self.L}')


@dataclass
class CRMTrainConfig(TrainConfig):
    """CRM's training: the README command's loss weights (the authors' ``hyper_para.py`` defaults are
    CascadePSP's 0 / 1 / 1 / 5), 45,705 iterations (15 epochs of their 36,572-image set at batch 12, the
    released file's name)."""
    arch: str = method_default('arch', 'crm')
    iterations: int = method_default('iterations', 45705)
    batch_size: int = method_default('batch_size', 12)
    lr: float = method_default('lr', 2.25e-4)
    steps: list[int] = method_default('steps', [22500, 37500])
    weight_decay: float = method_default('weight_decay', 1e-4)
    ce_weight: float = 1.0
    l1_weight: float = 0.5
    l2_weight: float = 0.5
    grad_weight: float = 2.0
    backbone: str | None = None    #: torchvision ImageNet ResNet-50 file to initialise the encoder


#: The compact CRM trained on this project's CPU (see docs/crm.md): the authors' decoder on a small encoder,
#: lite's data (ECSSD + DUTS-TE without the held-out split) and a budget like lite's first stage.
PRESETS: dict[str, tuple[Stage, ...]] = {
    'crm_compact': (
        Stage('stage1', dict(arch='crm', arch_args={'encoder': 'compact', 'fusion_widths': [32, 32, 64],
                                                    'feat_channels': 64, 'mlp_hidden': [32, 32, 32]},
                             data_root=data_root(), sources=['ecssd', 'DUTS-TE'], device='cpu', threads=1,
                             workers=1, batch_size=8, crop_size=160, iterations=2200, schedule='cosine', warmup=100,
                             lr=1e-3, degradation='mix', save_interval=100, log_interval=50)),
    ),
}
