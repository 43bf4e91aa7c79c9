"""Command-line plumbing shared by ``eval.py`` and ``refine.py``: the model is named by ``--model``, and the
flags of its method's inference config (:class:`methods.base.Method.InferConfig`) are added to the parser."""
from __future__ import annotations

import argparse
from typing import Any

import torch.nn as nn

from methods import METHODS, method_of, method_of_model
from inference.engine import PRECISIONS, check_precision, prepare
from models.hub import MAGNET_SYSTEMS, NAMED_ARCHS, load_pretrained
from util import image_io
from util.cli import add_dataclass_flags, dataclass_from_args
from util.devices import default_device, parse_device


def add_model_flags(parser: argparse.ArgumentParser, default: str = 'lite') -> None:
    parser.add_argument('--model', default=default,
                        help="lite (bundled, default), cascadepsp (the authors' weights, downloaded once), "
                             "or a path: the released 'model' file or a train.py checkpoint")
    parser.add_argument('--device', default=default_device(),
                        help='cpu, cuda, cuda:N, mps or auto (default: a GPU if this machine has one)')
    parser.add_argument('--precision', choices=list(PRECISIONS), default='fp32',
                        help='the network\'s arithmetic: bf16/fp16 need a GPU or a CPU with native support '
                             '(AVX512-BF16/AMX), elsewhere they are emulated and very slow')
    parser.add_argument('--exact', action='store_true',
                        help='the authors\' arithmetic operation for operation (direct convolutions, their order): '
                             'bit-identical to their code; default: the same function computed cheaper (Winograd '
                             '3x3 convolutions on the CPU, folded batch norms; docs/performance.md), within about 1e-4')
    parser.add_argument('--max_pixels', type=int, default=image_io.MAX_PIXELS,
                        help='refuse images above this many pixels before decoding them (0: no limit)')


def parse_with_model(parser: argparse.ArgumentParser, argv: list[str] | None,
                     help_overrides: dict[str, str] | None = None) -> tuple[argparse.Namespace, nn.Module, Any]:
    """Load the model named by ``--model`` (on ``--device``), add its method's inference flags, parse.

    Returns (arguments, with ``device`` as parsed, model in eval mode, the method's inference config). Raises
    :class:`models.checkpoint.CheckpointError` for a model that cannot be loaded and
    :class:`util.devices.DeviceError` for a device this machine lacks, before any weights load; a bad flag value
    exits through ``parser.error`` as usual.
    """
    pre = argparse.ArgumentParser(add_help=False)
    add_model_flags(pre, parser.get_default('model') or 'lite')
    known, rest = pre.parse_known_args(argv)
    if '-h' in rest or '--help' in rest:  # help needs the method's flags, not its weights (nor a download)
        arch = NAMED_ARCHS.get(known.model)
        method = METHODS['magnet'] if known.model in MAGNET_SYSTEMS else \
            method_of(arch) if arch else method_of_model(load_pretrained(known.model))
        add_dataclass_flags(parser, method.InferConfig)
        parser.parse_args(argv)  # prints the help and exits
    device = parse_device(known.device)
    model = prepare(load_pretrained(known.model), device, exact=known.exact)
    add_dataclass_flags(parser, method_of_model(model).InferConfig)
    for action in parser._actions:  # command-specific wording of a shared flag
        if help_overrides and action.dest in help_overrides:
            action.help = help_overrides[action.dest]
    args = parser.parse_args(argv)
    args.device = str(device)
    check_precision(args.precision, args.device)
    try:
        cfg = dataclass_from_args(method_of_model(model).InferConfig, args)
    except ValueError as e:
        parser.error(str(e))
    return args, model, cfg
