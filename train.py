"""Train a refinement network with its method's recipe (the method follows from --arch).

    python train.py EXP_ID [--arch cascadepsp|lite] [-i 45000] [-b 12] [--lr 2.25e-4] [--data_root data] ...
    torchrun --nproc_per_node=N train.py EXP_ID ...      # N GPUs; -b is the global batch
    python train.py EXP_ID --preset lite                 # every stage of a named recipe, in order
    python train.py EXP_ID --method magnet --dataset cityscapes --root R --datalist L --pretrained F ...

Every field of the method's training config is a flag; `python train.py -h [--arch A]` lists them. EXP_ID
NULL runs without TensorBoard logs or checkpoints. `--resume saves/RUN/checkpoint_N.pth` continues a killed
run. A preset's stages run as EXP_ID_STAGE, each starting from the checkpoint of the stage it names; flags
given on the command line override the preset's values in every stage (`--stage S` runs one stage only).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch

from methods import METHODS, method_of
from methods.base import Method, Stage, TrainConfig
from models.checkpoint import CheckpointError, read_checkpoint
from training.loop import NonFiniteLoss, train
from util.cli import add_dataclass_flags, dataclass_from_args

log = logging.getLogger('train')


def _parser(method: Method, suppress: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('exp_id', nargs='?', default=argparse.SUPPRESS if suppress else 'NULL',
                        help='experiment id (NULL disables logging and saving)')
    parser.add_argument('--method', choices=sorted(METHODS), help='the method (default: the one of --arch)')
    parser.add_argument('--preset', choices=sorted(method.presets) or None,
                        help='a named training recipe of the method: its stages run in order')
    parser.add_argument('--stage', help='with --preset: run this stage only')
    add_dataclass_flags(parser, method.TrainConfig, skip=('exp_id',), suppress=suppress)
    return parser


def _pick_method(argv: list[str] | None) -> Method:
    """The method of ``--method``, of ``--arch``, of a preset's name, or of the run being resumed (default:
    cascadepsp)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--method', choices=sorted(METHODS))
    pre.add_argument('--arch')
    pre.add_argument('--preset')
    pre.add_argument('--resume')
    known, _ = pre.parse_known_args(argv)
    if known.method:
        if known.arch and method_of(known.arch) is not METHODS[known.method]:
            raise ValueError(f'--arch {known.arch} is not an architecture of --method {known.method}')
        return METHODS[known.method]
    if known.arch:
        return method_of(known.arch)
    if known.preset:
        for method in METHODS.values():
            if known.preset in method.presets:
                return method
    if known.resume:
        config = read_checkpoint(known.resume).get('config') or {}
        return method_of(config.get('arch', 'cascadepsp'))
    return METHODS['cascadepsp']


def _task_name(argv: list[str] | None) -> list[str]:
    """MagNet's scripts name the run with ``--task_name NAME``: the EXP_ID here."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--task_name' in argv:
        i = argv.index('--task_name')
        if i + 1 >= len(argv):
            raise ValueError('--task_name needs a name')
        argv = [argv[i + 1], *argv[:i], *argv[i + 2:]]
    return argv


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """The training config the command line ``argv`` describes (without running a preset)."""
    argv = _task_name(argv)
    method = _pick_method(argv)
    return dataclass_from_args(method.TrainConfig, _parser(method).parse_args(argv))


def check_chain(method: Method, preset: str, explicit: dict) -> None:
    """Raise ValueError, before the first stage runs, when a stage starts from a checkpoint that the stage before
    it will not write with these flags (e.g. ``-i 20`` with a stage that loads iteration 2400)."""
    stages = {s.name: s for s in method.presets[preset]}
    for stage in stages.values():
        if not stage.load_from or stage.load_from[1] is None or 'load' in explicit:
            continue
        earlier, iteration = stage.load_from
        values = {**stages[earlier].overrides, **explicit}
        iterations = values.get('iterations', method.TrainConfig.iterations)
        end = min(values.get('until') or iterations, iterations)
        interval = values.get('save_interval', method.TrainConfig.save_interval)
        if iteration > end or (iteration != end and iteration % interval):
            raise ValueError(f'preset {preset}: stage {stage.name} starts from checkpoint_{iteration}.pth of stage '
                             f'{earlier}, which these flags do not write (that stage ends at iteration {end} and '
                             f'saves every {interval}); drop the flags that shorten it, or give --load FILE')


def _run_stages(method: Method, preset: str, only: str | None, exp_id: str, explicit: dict) -> None:
    if preset not in method.presets:
        raise ValueError(f'--preset {preset}: the {method.name} method has '
                         + (f'the presets {", ".join(sorted(method.presets))}' if method.presets else 'no presets'))
    stages: tuple[Stage, ...] = method.presets[preset]
    if not only:  # one stage alone starts from --load, or from the stage before it already written
        check_chain(method, preset, explicit)
    if only and only not in {s.name for s in stages}:
        raise ValueError(f'preset {preset!r} has no stage {only!r}; its stages: {", ".join(s.name for s in stages)}')
    if exp_id.upper() == 'NULL' and len(stages) > 1 and not only:
        raise ValueError('a preset of several stages needs an EXP_ID: each stage starts from the last one\'s checkpoint')
    finished: dict[str, Path] = {}
    for stage in stages:
        if only and stage.name != only:
            continue
        values = {**stage.overrides, 'exp_id': f'{exp_id}_{stage.name}'}
        if stage.load_from and 'load' not in explicit:
            earlier, iteration = stage.load_from
            if earlier not in finished:
                raise ValueError(f'stage {stage.name} starts from stage {earlier}\'s checkpoint: run it first, or '
                                 f'give --load saves/RUN_{exp_id}_{earlier}/checkpoint_{iteration or "final"}.pth')
            values['load'] = str(finished[earlier].parent / (f'checkpoint_{iteration}.pth' if iteration
                                                             else 'checkpoint_final.pth'))
        log.info('preset %s, stage %s', preset, stage.name)
        if stage.run is not None:  # not the training loop: its own settings, and where the loop's flags say
            shared = {k: v for k, v in explicit.items() if k in ('save_dir', 'data_root', 'threads', 'load')}
            finished[stage.name] = stage.run({**values, **shared})
            continue
        cfg = method.TrainConfig(**{**values, **explicit})
        final = train(cfg)
        if final is not None:
            finished[stage.name] = final


#: Flags a resumed run may change: where and how fast it runs, how often it logs, how long it goes on.
RESUME_MAY_CHANGE = ('resume', 'iterations', 'until', 'device', 'workers', 'threads', 'data_root', 'log_dir',
                     'save_dir', 'log_interval', 'image_interval', 'save_interval', 'val_interval', 'val_dir')


def resumed_config(method: Method, explicit: dict) -> TrainConfig:
    """The configuration of the run being resumed, read from its checkpoint, with the few flags that may
    change (:data:`RESUME_MAY_CHANGE`). A flag that contradicts the checkpoint is refused by name, and a
    finished run (its ``checkpoint_final.pth`` written) is never continued in place."""
    path = Path(explicit['resume'])
    data = read_checkpoint(path)
    if not isinstance(data.get('config'), dict):
        raise CheckpointError(f'{path}: holds no training configuration; start a new run with --load {path}')
    if 'optimizer' not in data or not data.get('run'):
        raise CheckpointError(f'{path}: holds no run to resume (shipped or exported weights keep the network and its '
                              f'training record, not the optimizer state); start a new run from it with --load {path}')
    saved = method.TrainConfig.from_dict(data['config'], str(path))
    conflicts = [f'--{k} {v!r} (the run has {getattr(saved, k)!r})' for k, v in explicit.items()
                 if k not in RESUME_MAY_CHANGE and v != getattr(saved, k)]
    if conflicts:
        raise ValueError(f'{path}: a resumed run keeps its configuration; these flags contradict it: '
                         f'{"; ".join(conflicts)}. Start a new run (--load {path}) to change them.')
    cfg = dataclasses.replace(saved, **{k: v for k, v in explicit.items() if k in RESUME_MAY_CHANGE})
    if 'device' not in explicit and cfg.device.startswith('cuda') and not torch.cuda.is_available():
        log.warning('%s: the run used %s; this machine has no GPU, continuing on the CPU', path, cfg.device)
        cfg = dataclasses.replace(cfg, device='cpu')
    final = Path(cfg.save_dir) / str(data.get('run', '')) / 'checkpoint_final.pth'
    if data.get('run') and final.is_file():
        raise ValueError(f'{final}: that run has finished; resuming it would overwrite its files. Start a new run '
                         f'with --load {path}')
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    try:
        argv = _task_name(argv)
        method = _pick_method(argv)
        args = _parser(method).parse_args(argv)
        if args.preset:
            explicit = {k: v for k, v in vars(_parser(method, suppress=True).parse_args(argv)).items()
                        if k not in ('exp_id', 'preset', 'stage', 'method')}
            _run_stages(method, args.preset, args.stage, args.exp_id, explicit)
        else:
            if args.stage:
                raise ValueError('--stage needs --preset')
            if args.resume:
                explicit = {k: v for k, v in vars(_parser(method, suppress=True).parse_args(argv)).items()
                            if k not in ('preset', 'stage', 'method')}
                train(resumed_config(method, explicit))
            else:
                train(dataclass_from_args(method.TrainConfig, args))
    except NonFiniteLoss as e:
        log.error('%s', e)
        return 1
    except (OSError, CheckpointError, ValueError) as e:  # bad data root, weights file, batch size; a full disk
        log.error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
