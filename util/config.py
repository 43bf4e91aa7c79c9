"""Training configuration: one dataclass, overridable from the command line, saved with every run
(``config.json``) and inside every checkpoint."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    # Authors' command line (hyper_para.py), same names and defaults.
    exp_id: str = 'NULL'           #: experiment name; NULL disables TensorBoard logging and checkpoints
    iterations: int = 45000        #: optimisation steps
    batch_size: int = 12           #: global batch, split over the ranks
    lr: float = 2.25e-4            #: Adam learning rate
    steps: list[int] = field(default_factory=lambda: [22500, 37500])  #: iterations where lr *= gamma
    gamma: float = 0.1
    weight_decay: float = 1e-4
    load: str | None = None        #: initial weights: a name (cascadepsp, lite) or a file; optimizer not restored
    ce_weight: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.5, 1.0, 1.0, 0.5])
    l1_weight: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25])
    l2_weight: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25])
    grad_weight: float = 5.0
    # Additions.
    arch: str = 'cascadepsp'       #: architecture (models.registry): cascadepsp (the authors' RM) or lite
    arch_args: str = '{}'          #: its hyper-parameters as JSON, e.g. '{"gf_radius": 6}'
    degradation: str = 'perturb'   #: input-mask recipe (dataset.degrade.RECIPES): perturb (authors') or mix
    holdout: str = 'dataset/splits/val.txt'  #: SOURCE/STEM pairs never trained on ('' for none)
    local_pass: float = 0.0        #: share of batches that also train the Local step's pass (levels 2-3 on
                                   #: the model's own binarised output, as inference runs them); 0: the authors'
    schedule: str = 'step'         #: 'step' (lr *= gamma at --steps, the authors') or 'cosine' (to 0)
    warmup: int = 0                #: iterations of linear learning-rate warm-up
    threads: int = 0               #: torch CPU threads (0: PyTorch's default)
    data_root: str = 'data'        #: download layout (see download_dataset.py)
    sources: list[str] = field(default_factory=list)  #: sub-folders of data_root to train on (default: all present)
    crop_size: int = 224
    backbone: str | None = None    #: torchvision ImageNet ResNet-50 file to initialise the encoder
    resume: str | None = None      #: checkpoint of a killed run: continue at its iteration and learning rate
    workers: int = 8               #: data-loader processes per rank
    seed: int = 14159265
    device: str = 'cuda'           #: 'cpu' for tests; under torchrun each rank takes cuda:LOCAL_RANK
    amp: bool = False              #: bfloat16 autocast on CUDA
    log_dir: str = 'runs'          #: TensorBoard logs go to log_dir/RUN
    save_dir: str = 'saves'        #: checkpoints and config.json go to save_dir/RUN
    log_interval: int = 100        #: iterations between scalar logs
    image_interval: int = 1000     #: iterations between image grids
    save_interval: int = 5000      #: iterations between checkpoints
    val_dir: str | None = None     #: _im/_seg/_gt folder for validation (IoU and mBA)
    val_interval: int = 5000
    val_L: int = 900               #: L of the Global+Local cascade used for validation
    val_stride: int = 450          #: its local crop stride
    val_global_only: bool = False  #: validate with the Global step only (faster)

    def __post_init__(self) -> None:
        if self.schedule not in ('step', 'cosine'):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'TrainConfig':
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_SHORT = {'iterations': '-i', 'batch_size': '-b'}
_HELP = {'exp_id': 'experiment id (NULL disables logging and saving)'}


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from the command line; every field is a flag (``--name``)."""
    parser = argparse.ArgumentParser(description='Train the CascadePSP refinement module.')
    defaults = TrainConfig()
    parser.add_argument('exp_id', nargs='?', default=defaults.exp_id, help=_HELP['exp_id'])
    for f in dataclasses.fields(TrainConfig):
        if f.name == 'exp_id':
            continue
        default = getattr(defaults, f.name)
        flags = [_SHORT[f.name]] if f.name in _SHORT else []
        flags.append(f'--{f.name}')
        if isinstance(default, bool):
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, list):
            kind = float if f.name.endswith('_weight') else (int if f.name == 'steps' else str)
            nargs = 6 if f.name.endswith('_weight') else '*'
            parser.add_argument(*flags, type=kind, nargs=nargs, default=default)
        elif f.name == 'iterations':  # the authors' default is written 4.5e4
            parser.add_argument(*flags, type=lambda s: int(float(s)), default=default)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(*flags, type=kind, default=default)
    return TrainConfig(**vars(parser.parse_args(argv)))
