"""Where one CascadePSP Global step's time goes, layer by layer, against the multiplications it does.

    python -m scripts.benchmark_layers [--model seeded|lite|PATH] [--size 904] [--exact] [--repeat 2]

Runs the 3-level cascade on a SIZE x SIZE input (the Global step at L = 900 on a 1000-px photo, padded) as
inference does (:func:`inference.engine.prepare`: the default arithmetic, or ``--exact``), after one warm-up
pass, and times every top-level part of the network (forward hooks; the ResNet's stem and four layers, the
pyramid pooling, the decoder's upsampling blocks and the heads) over the three levels. The multiply-adds are
counted with ``torch.utils.flop_counter`` on the plain operations (what the authors' code computes; Winograd
does fewer multiplications for the same function), so GMAC/s shows how close each part runs to the CPU's
arithmetic peak: parts far below the rest are bound by memory traffic, not arithmetic.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import torch
import torch.nn as nn


def _parts(model: nn.Module) -> dict[str, nn.Module]:
    """The top-level parts timed: the encoder's stages one by one, every other child as a whole."""
    parts = {}
    for name, child in model.named_children():
        if name == 'feats' or name == 'encoder':
            for sub, grandchild in child.named_children():
                parts[f'{name}.{sub}'] = grandchild
        else:
            parts[name] = child
    return parts


def _macs(model: nn.Module, x: torch.Tensor, m: torch.Tensor) -> dict[str, float]:
    """Multiply-adds per part (the plain operations), in GMAC, over one cascade pass."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x, m)
    flops = counter.get_flop_counts()
    out = {}
    for name in _parts(model):
        key = next((k for k in flops if k.endswith(name) or k == name), None)
        out[name] = sum(flops[key].values()) / 2e9 if key else 0.0
    out['total'] = sum(flops['Global'].values()) / 2e9
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='seeded')
    parser.add_argument('--size', type=int, default=904, help='input side (a multiple of 8: L = 900 pads to 904)')
    parser.add_argument('--exact', action='store_true')
    parser.add_argument('--repeat', type=int, default=2, help='timed passes (after one warm-up)')
    args = parser.parse_args(argv)
    if args.size < 8 or args.size % 8 or args.repeat < 1:
        parser.error(f'--size must be a positive multiple of 8 (got {args.size}) and --repeat at least 1')
    from inference.engine import prepare
    from models.checkpoint import CheckpointError
    from scripts.benchmark_refine import _model
    from util.malloc import keep_freed_memory
    try:
        model = _model(args.model).eval()
    except (CheckpointError, OSError, ValueError) as e:
        print(f'error: --model {e}', file=sys.stderr)
        return 2
    if not hasattr(model, 'encode'):
        print(f'error: --model {args.model}: a {model.arch} network; this breaks down the CascadePSP cascade '
              '(cascadepsp, lite)', file=sys.stderr)
        return 2
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    m = (torch.rand(1, 1, args.size, args.size) > 0.5).float() * 2 - 1
    macs = _macs(model, x, m)  # before prepare: the plain operations
    prepare(model, 'cpu', exact=args.exact)
    times: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    for name, part in _parts(model).items():
        part.register_forward_pre_hook(lambda mod, inp, name=name: starts.__setitem__(name, time.perf_counter()))
        part.register_forward_hook(lambda mod, inp, out, name=name: times.__setitem__(
            name, times[name] + time.perf_counter() - starts[name]))
    with keep_freed_memory(), torch.inference_mode():  # as the command lines run
        model(x, m)  # warm-up
        times.clear()
        start = time.perf_counter()
        for _ in range(args.repeat):
            model(x, m)
        total = (time.perf_counter() - start) / args.repeat
    print(f"{args.model} {'exact' if args.exact else 'default'} arithmetic, {args.size} x {args.size}, "
          f"{torch.get_num_threads()} threads: {total:.2f} s per 3-level pass, {macs['total']:.0f} GMAC "
          f"({macs['total'] / total:.0f} GMAC/s)")
    print('| part | seconds | share | GMAC | GMAC/s |\n|---|---|---|---|---|')
    for name in _parts(model):
        seconds = times.get(name, 0.0) / args.repeat
        rate = f'{macs[name] / seconds:.0f}' if seconds > 0 and macs[name] else '-'
        print(f'| {name} | {seconds:.2f} | {seconds / total:.0%} | {macs[name]:.1f} | {rate} |')
    rest = total - sum(times.values()) / args.repeat
    print(f'| other (resizing between levels, concatenations) | {rest:.2f} | {rest / total:.0%} | | |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
