"""The method contract: what every refinement method gives the drivers above it, and the shared training
configuration.

A *method* is what to do with a network: its inference procedure, its loss, its training recipe and their
config dataclasses. A network (``models/``) is an architecture; a checkpoint records the architecture, and
the method follows from it (:func:`methods.method_of`). Drivers (``inference/``, ``training/``, the command
lines) reach a method only through :data:`methods.METHODS`.

Tensor conventions of the contract:
  * image: B x 3 x H x W RGB, either float32 normalised with the ImageNet mean/std or uint8 0..255 (a method
    normalises it where it needs it, with :func:`util.transforms.normalize_image`: the same values);
  * coarse: B x 1 x H x W float32 in [0, 1] (a binary or soft mask; a method converts it to what its network
    takes, e.g. CascadePSP's [-1, 1]);
  * :class:`Refined.probs`: B x C x H x W probabilities in [0, 1] (C = 1 for binary refinement).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from util.cli import dataclass_from_dict


@dataclass
class Refined:
    """What a method's ``refine`` returns."""
    probs: torch.Tensor                                   #: B x C x H x W in [0, 1], at the input's size
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  #: named extra outputs, same shape as probs
                                                          #: (written as ``NAME_mask.png`` with ``{key}_`` prefixed)
    stats: dict[str, float] = field(default_factory=dict)  #: e.g. {'crops': 10}


#: One training batch as the data loader yields it (a method's dataset decides its items).
Batch = Any


@dataclass(frozen=True)
class Recipe:
    """How a method trains a network; the generic loop (:mod:`training.loop`) calls these and nothing else.

    * ``dataset(pairs)``: a ``torch.utils.data.Dataset`` over (image, mask) file pairs.
    * ``to_device(batch, device)``: the batch on the training device.
    * ``step(model, batch, amp)``: the forward pass(es) and the loss: ``(terms, outputs)`` where ``terms`` holds
      named scalar tensors including ``total_loss`` (the one that is back-propagated) and ``outputs`` the named
      tensors that ``metrics`` and ``images`` read.
    * ``metrics(batch, outputs)``: extra scalars to log (e.g. IoU per output), computed without gradients.
    * ``images(batch, outputs)``: columns of an image grid, each B x 1|3 x H x W in [0, 1].
    * ``prepare(model)``: initialisation before training (e.g. ImageNet weights); may do nothing.
    * ``size(batch)``: the number of samples in a batch (default: the first tensor's length).
    * ``pairs()``: the training items, when the method does not train on the (image, mask) folders of
      ``--data_root`` (MagNet reads the authors' datalist); None: those folders.
    * ``not_trained``: parameter-name prefixes of parts a ``--load`` file may hold that this training neither
      builds nor trains (CascadePSP's arbiter, fitted after the network on its outputs): left out of the load.
    * ``single_process``: None, or the setting (as its flag) that makes a step unable to run under several
      processes (CascadePSP's ``--local_pass``: two forward passes before one backward, which DDP refuses).
    """
    dataset: Callable[[list], Dataset]
    to_device: Callable[[Batch, torch.device], Batch]
    step: Callable[[nn.Module, Batch, Any], tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]
    metrics: Callable[[Batch, dict[str, torch.Tensor]], dict[str, float]]
    images: Callable[[Batch, dict[str, torch.Tensor]], list[torch.Tensor]]
    prepare: Callable[[nn.Module], None] = lambda model: None
    size: Callable[[Batch], int] = lambda batch: len(batch[0])
    pairs: Callable[[], list] | None = None
    not_trained: tuple[str, ...] = ()
    single_process: str | None = None


@dataclass(frozen=True)
class Stage:
    """One stage of a named training preset: flag values, and where its initial weights come from."""
    name: str
    overrides: dict[str, Any]
    load_from: tuple[str, int | None] | None = None  #: (earlier stage, iteration; None: its final checkpoint)
    #: A stage that is not the generic training loop (e.g. fitting the arbiter on a trained network): called with
    #: its values (``overrides``, ``load``, ``exp_id`` and the command line's ``save_dir``, ``data_root``,
    #: ``threads``), it returns the checkpoint it wrote.
    run: Callable[[dict[str, Any]], Path] | None = None


@dataclass(frozen=True)
class Method:
    """A refinement method (see the module docstring)."""
    name: str
    archs: tuple[str, ...]              #: architectures of :data:`models.registry.ARCHITECTURES` it runs
    InferConfig: type                   #: frozen dataclass; its fields are eval.py / refine.py flags
    TrainConfig: type                   #: subclass of :class:`TrainConfig`; its fields are train.py flags
    refine: Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], Refined]  #: (model, image, coarse, cfg)
    recipe: Callable[[Any], Recipe]     #: (train config) -> Recipe
    presets: dict[str, tuple[Stage, ...]] = field(default_factory=dict)  #: train.py --preset NAME
    components: tuple[str, ...] = ()    #: architectures that are parts of ``archs`` (loaded and trained alone,
                                        #: run inside them: MagNet's backbones and refinement module)
    takes_mask: bool = True             #: refines a given coarse mask (False: segments the image itself, C classes)
    fast_arithmetic: bool = False       #: inference may reorder its networks' arithmetic (inference.engine): only
                                        #: where the reference tolerances were checked to hold with it
    #: (inference config) -> the keys of :attr:`Refined.extra` that ``refine`` returns with it (each written as
    #: ``{key}_NAME_mask.png`` by the folder runner, which checks those names against the samples' before work).
    extra_outputs: Callable[[Any], tuple[str, ...]] = lambda cfg: ()


@dataclass(kw_only=True)
class TrainConfig:
    """Training configuration shared by every method; a method's subclass adds its loss and recipe fields and
    gives the fields without a default here theirs (with :func:`method_default`: the architecture, the schedule
    and the data's defaults are the method's authors'). Saved with every run (``config.json``) and inside every
    checkpoint."""
    exp_id: str = 'NULL'           #: experiment name; NULL disables TensorBoard logging and checkpoints
    # Each method's own (its subclass gives them their defaults).
    arch: str = field(metadata={'help': 'architecture (models.registry); the method follows from it'})
    iterations: int = field(metadata={'short': '-i', 'help': 'optimisation steps'})
    batch_size: int = field(metadata={'short': '-b', 'help': 'global batch, split over the ranks'})
    lr: float = field(metadata={'help': 'learning rate'})
    steps: list[int] = field(metadata={'help': 'iterations where lr *= gamma'})
    weight_decay: float = field(metadata={'help': 'weight decay'})
    gamma: float = 0.1
    optimizer: str = 'adam'        #: 'adam' (CascadePSP, CRM) or 'sgd' (MagNet; with --momentum)
    momentum: float = 0.9          #: SGD momentum
    epoch_schedule: bool = False   #: --iterations, --until, --steps, --warmup, --save_interval and --val_interval
                                   #: count epochs of the training set (MagNet's milestones)
    load: str | None = None        #: initial weights: a name (cascadepsp, lite) or a file; optimizer not restored
    load_new: list[str] = field(default_factory=list, metadata={'help':
                                'parameter-name prefixes that --load may lack: modules new in this architecture, '
                                'kept at their initialisation (every other key still loads strictly)'})
    train_only: list[str] = field(default_factory=list, metadata={'help':
                                  'train only the parameters under these name prefixes; the other modules are '
                                  'frozen in eval mode (batch-norm statistics kept). Default: everything'})
    # Additions.
    arch_args: dict[str, Any] = field(default_factory=dict,
                                      metadata={'help': 'architecture hyper-parameters, JSON: \'{"gf_radius": 6}\''})
    degradation: str = 'perturb'   #: input-mask recipe (dataset.degrade.RECIPES): perturb (authors'), mix, ...
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0], metadata={'nargs': 2, 'help':
                                     'images resized by a factor drawn log-uniformly from [lo, hi] before cropping'})
    holdout: str = 'dataset/splits/val.txt'  #: SOURCE/STEM pairs never trained on ('' for none)
    schedule: str = 'step'         #: 'step' (lr *= gamma at --steps, the authors') or 'cosine' (to 0)
    warmup: int = 0                #: iterations of linear learning-rate warm-up
    until: int | None = None       #: stop at this iteration (the schedule still spans --iterations)
    threads: int = 0               #: torch CPU threads (0: PyTorch's default)
    data_root: str = 'data'        #: download layout (see download_dataset.py)
    sources: list[str] = field(default_factory=list)  #: sub-folders of data_root to train on (default: all present)
    crop_size: int = 224
    resume: str | None = None      #: checkpoint of a killed run: continue at its iteration and learning rate
    workers: int = 8               #: data-loader processes per rank
    seed: int = 14159265
    device: str = field(default_factory=lambda: 'cuda' if torch.cuda.is_available() else 'cpu', metadata={
        'help': 'cuda or cpu (default: what the machine has); under torchrun each rank takes cuda:LOCAL_RANK'})
    amp: bool = False              #: bfloat16 autocast on CUDA
    log_dir: str = 'runs'          #: TensorBoard logs go to log_dir/RUN
    save_dir: str = 'saves'        #: checkpoints and config.json go to save_dir/RUN
    log_interval: int = 100        #: iterations between scalar logs
    image_interval: int = 1000     #: iterations between image grids
    save_interval: int = 5000      #: iterations between checkpoints
    val_dir: str | None = None     #: _im/_seg/_gt folder for validation (IoU and mBA)
    val_interval: int = 5000
    val_args: dict[str, Any] = field(default_factory=dict, metadata={
        'help': "the method's inference settings for validation, JSON (default: its defaults, e.g. L 900)"})

    def __post_init__(self) -> None:
        if self.optimizer not in ('adam', 'sgd'):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ('step', 'cosine'):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")
        positive = ('iterations', 'batch_size', 'crop_size', 'log_interval', 'image_interval', 'save_interval',
                    'val_interval')
        if bad := [f'--{n} {getattr(self, n)}' for n in positive  # MagNet's crop_size is a W H pair
                   if isinstance(getattr(self, n), int) and getattr(self, n) < 1]:
            raise ValueError(f'must be at least 1: {", ".join(bad)}')
        if isinstance(self.crop_size, int) and self.crop_size < 16:  # MagNet's W H pair is checked by its config
            raise ValueError(f'--crop_size must be at least 16 pixels, got {self.crop_size}')
        if self.lr <= 0 or self.warmup < 0 or self.workers < 0 or self.threads < 0:
            raise ValueError(f'--lr must be positive and --warmup, --workers, --threads not negative; got '
                             f'{self.lr}, {self.warmup}, {self.workers}, {self.threads}')
        if isinstance(self.arch_args, str):  # checkpoints written before hyper-parameters were a mapping
            self.arch_args = json.loads(self.arch_args or '{}')
        if not isinstance(self.arch_args, dict):
            raise ValueError(f'arch_args must be a mapping, got {self.arch_args!r}')

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = 'config') -> 'TrainConfig':
        """The saved configuration ``data``; a key this class does not know is an error that names it."""
        data = dict(data)
        legacy = {k: data.pop(k) for k in ('val_L', 'val_stride', 'val_global_only') if k in data}
        if legacy:  # checkpoints written before validation took the method's own inference settings
            data.setdefault('val_args', {'L': legacy.get('val_L', 900), 'stride': legacy.get('val_stride', 450),
                                         'global_only': legacy.get('val_global_only', False)})
        return dataclass_from_dict(cls, data, source)


def method_default(name: str, value: Any, **metadata: Any) -> Any:
    """A method's default for :class:`TrainConfig` field ``name``, keeping the field's flag metadata (short name,
    help); ``metadata`` adds to it (e.g. aliases). A list value is copied per instance."""
    meta = {**TrainConfig.__dataclass_fields__[name].metadata, **metadata}
    if isinstance(value, list):
        return field(default_factory=lambda: list(value), metadata=meta)
    return field(default=value, metadata=meta)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a network without any, e.g. an ONNX Runtime session)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device('cpu')
