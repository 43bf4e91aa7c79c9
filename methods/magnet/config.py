"""MagNet's configurations: progressive inference (the authors' ``test.py`` flags) and the refinement module's
training (``train.py``, MAGNET.md §9)."""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import TrainConfig, method_default


def parse_scales(text: str | list) -> list[tuple[int, int]]:
    """``'612-612,1224-1224'`` (the authors' spelling) or a list of (w, h) -> [(w, h), ...]."""
    if isinstance(text, str):
        try:
            pairs = [tuple(int(v) for v in s.split('-')) for s in text.split(',') if s.strip()]
        except ValueError:
            raise ValueError(f'--scales: expected W-H,W-H,... (e.g. 612-612,1224-1224), got {text!r}') from None
    else:
        pairs = [tuple(int(v) for v in s) for s in text]
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise ValueError(f'--scales: expected W-H pairs of positive sizes, got {text!r}')
    return [(w, h) for w, h in pairs]


def _pair(values: list | tuple, name: str) -> tuple[int, int]:
    if len(values) != 2 or min(int(v) for v in values) < 1:
        raise ValueError(f'--{name}: expected W H, two positive sizes, got {list(values)}')
    return int(values[0]), int(values[1])


@dataclass(frozen=True)
class MagNetConfig:
    """Progressive inference. Defaults are the DeepGlobe MagNet script's; every field is an ``eval.py`` flag."""
    scales: list = field(default_factory=lambda: [(612, 612), (1224, 1224), (2448, 2448)], metadata={
        'help': 'W-H of every scale, coarse to fine, comma-separated (the last is the image\'s size)', 'type': str})
    crop_size: list[int] = field(default_factory=lambda: [612, 612], metadata={'nargs': 2, 'help': 'patch W H at each scale'})
    input_size: list[int] = field(default_factory=lambda: [508, 508], metadata={
        'nargs': 2, 'help': 'W H the backbone sees (each patch is resized to it)'})
    n_patches: int = field(default=-1, metadata={
        'help': '-1: refine every patch (MagNet); N > 0: N patches per stage (MagNet-Fast); 0: the backbone alone'})
    n_points: float = field(default=0.75, metadata={
        'help': 'points replaced per stage: a count (> 1) or a fraction of the refined area (<= 1)'})
    smooth_kernel: int = field(default=11, metadata={'help': 'median kernel smoothing the error map (odd; even works)'})
    sub_batch_size: int = field(default=1, metadata={'help': 'patches per backbone and refinement call (speed and '
                                                     'memory only; the authors batch all refinements at once)',
                                                     'same_results': True})
    fast_as_paper: bool = field(default=False, metadata={
        'help': 'MagNet-Fast as the paper says: refine the MOST uncertain patches and keep the error inside them '
                '(the authors\' code refines the least uncertain and zeroes the error inside: Q3, Q4)'})

    def __post_init__(self) -> None:
        object.__setattr__(self, 'scales', parse_scales(self.scales))
        object.__setattr__(self, 'crop_size', _pair(self.crop_size, 'crop_size'))
        object.__setattr__(self, 'input_size', _pair(self.input_size, 'input_size'))
        if self.n_patches < -1:
            raise ValueError(f'--n_patches must be -1, 0 or positive, got {self.n_patches}')
        if not self.n_points > 0:
            raise ValueError(f'--n_points must be positive, got {self.n_points}')
        if self.smooth_kernel < 1 or self.sub_batch_size < 1:
            raise ValueError(f'--smooth_kernel and --sub_batch_size must be at least 1, got '
                             f'{self.smooth_kernel}, {self.sub_batch_size}')
        for (w0, h0), (w, h) in zip(self.scales, self.scales[1:]):
            if w <= w0 or h <= h0:
                raise ValueError(f'--scales: each scale must be larger than the one before (coarse to fine), got '
                                 f'{w0}-{h0} then {w}-{h}')
        for w, h in self.scales[1:]:
            if w < self.crop_size[0] or h < self.crop_size[1]:
                raise ValueError(f'scale {w}-{h} is smaller than the crop {self.crop_size[0]}x{self.crop_size[1]}')


@dataclass
class MagNetTrainConfig(TrainConfig):
    """The refinement module's training (``train_magnet.sh``): SGD 1e-3, momentum 0.9, weight decay 5e-4, 50
    epochs, lr x0.1 at epochs 10, 20, 30, 40 and 45, batch 8; the backbone is frozen. With ``epoch_schedule``,
    ``--iterations`` and ``--steps`` count epochs of the datalist."""
    arch: str = method_default('arch', 'magnet_refinement')
    dataset: str = field(default='cityscapes', metadata={'help': 'cityscapes or deepglobe (labels and classes)'})
    root: str = field(default='', metadata={'help': 'folder the datalist\'s paths are relative to'})
    datalist: str = field(default='', metadata={'help': 'IMAGE<TAB>LABEL lines (the authors\' format)'})
    scales: list = field(default_factory=lambda: [(256, 128), (512, 256), (1024, 512), (2048, 1024)], metadata={
        'help': 'W-H of every scale, comma-separated; fine crops come from scales 2..n', 'type': str})
    crop_size: list[int] = field(default_factory=lambda: [256, 128], metadata={'nargs': 2})
    input_size: list[int] = field(default_factory=lambda: [256, 128], metadata={'nargs': 2})
    model: str = field(default='hrnet18+ocr', metadata={'help': 'frozen backbone: fpn or hrnet18+ocr'})
    pretrained: str = field(default='', metadata={'help': 'the backbone\'s weights (a released file or ours)'})
    num_classes: int = 19
    iterations: int = field(default=50, metadata={'short': '-i', 'aliases': ('epochs',), 'help':
                                                  'epochs (optimisation steps with --no-epoch_schedule)'})
    batch_size: int = method_default('batch_size', 8)
    lr: float = method_default('lr', 1e-3)
    steps: list[int] = field(default_factory=lambda: [10, 20, 30, 40, 45], metadata={
        'aliases': ('milestones',), 'help': 'epochs where lr *= gamma'})
    weight_decay: float = method_default('weight_decay', 5e-4, aliases=('decay',))
    optimizer: str = 'sgd'
    epoch_schedule: bool = True
    load: str | None = field(default=None, metadata={'aliases': ('pretrained_refinement',), 'help':
                             'initial weights of the refinement module (a file or a released name)'})
    holdout: str = ''
    workers: int = field(default=2, metadata={'aliases': ('num_workers',), 'help': 'data-loader processes per rank'})
    log_interval: int = 10
    save_interval: int = field(default=1, metadata={'help': 'epochs between checkpoints (the authors save each)'})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arch_args = {'num_classes': self.num_classes, **self.arch_args}
        self.scales = parse_scales(self.scales)
        self.crop_size = list(_pair(self.crop_size, 'crop_size'))
        self.input_size = list(_pair(self.input_size, 'input_size'))
        if len(self.scales) < 2:
            raise ValueError('--scales: training draws fine crops from the scales after the first: give at least 2')
