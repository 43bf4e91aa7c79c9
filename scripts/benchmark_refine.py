"""Benchmark the refinement of the paper's Figure 1 image (3492 x 2328) at L=900.

    python -m scripts.benchmark_refine [--model lite|cascadepsp|seeded|PATH] [--L 900] [--batch 1]
        [--image samples/cascadepsp/aeroplane.jpg] [--device cuda|cpu] [--mode both|global_only|global_local|object]
    python -m scripts.benchmark_refine --mode forward896 --model lite seeded     # one cascade pass, 896 x 896
    python -m scripts.benchmark_refine --model seeded --precision bf16 --device cuda   # + agreement with fp32
    python -m scripts.benchmark_refine --backend onnx --model lite                     # ONNX Runtime (exported once)

``--model`` defaults to the bundled lite weights; ``seeded`` is the authors' architecture with the seeded
weights of tests/reference/README.md (its timing does not depend on the values, only the number of crops
run does). Prints, per mode: wall time, local crops run, peak CPU memory (RSS of a fresh process) and peak
GPU memory. Each mode runs in its own process so the memory peaks are separate. ``object`` refines one
object (the mask inside a 600 x 600 box at its top-left) with Refiner.refine_objects, to compare with the
whole image; ``forward896`` times one full 3-level forward pass on a 896 x 896 input per model.
``--exact`` runs the authors' arithmetic operation for operation instead of the default cheaper one
(:mod:`inference.engine`); ``--precision bf16|fp16`` also refines once in fp32 (not timed) and prints the
agreement: mean and largest difference of the probabilities, and the share of pixels flipped at 0.5.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dataset.paths import SAMPLES
from scripts.measure import peak_rss_gib, run_child


def _model(name: str):
    if name == 'seeded':
        from models import RefinementModule
        from models.seeded import seed_model
        return seed_model(RefinementModule()).eval()
    from models.hub import load_pretrained
    return load_pretrained(name)


def run_one(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from inference.objects import refine_objects
    from inference.predict import default_config, image_tensors, refine_image
    from util.image_io import read_grey, read_rgb
    from util.transforms import binarize

    from inference.engine import precision_scope, prepare
    model = prepare(_model(args.model[0]), args.device, exact=args.exact)
    if args.backend == 'onnx':
        from inference.onnx_backend import OnnxCascade, cached_export
        from models.hub import cache_dir
        model = OnnxCascade(cached_export(model, cache_dir()))
    if args.mode == 'forward896':
        x, m = torch.randn(1, 3, 896, 896, device=args.device), torch.rand(1, 1, 896, 896, device=args.device) * 2 - 1
        with torch.inference_mode():
            model(x, m)  # warm-up
            start = time.perf_counter()
            model(x, m)
            seconds = time.perf_counter() - start
        return {'mode': 'forward896', 'model': args.model[0], 'arch': model.arch, 'device': args.device,
                'size': '896x896', 'L': 896, 'batch': 1, 'seconds': round(seconds, 2), 'crops': 0,
                'threads': torch.get_num_threads(), 'peak_cpu_rss_mib': round(peak_rss_gib() * 1024),
                'peak_gpu_mib': None, 'parameters': sum(p.numel() for p in model.parameters())}
    image, mask = read_rgb(args.image), read_grey(args.mask)
    im, seg = image_tensors(image, binarize(mask))
    cfg = default_config(model, L=args.L, stride=args.stride, batch=args.batch, global_only=args.mode == 'global_only')
    if args.device.startswith('cuda'):  # warm-up: cuDNN autotuning and context creation are not refinement
        refine_image(model, im[..., :args.L, :args.L], seg[..., :args.L, :args.L], cfg)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    agreement = None
    if args.precision != 'fp32':
        reference = refine_image(model, im, seg, cfg).probs
    with precision_scope(args.precision, args.device):
        start = time.perf_counter()
        if args.mode == 'object':
            ys, xs = np.nonzero(mask > 127)
            obj = np.zeros(mask.shape, bool)
            obj[ys.min():ys.min() + 600, xs.min():xs.min() + 600] = True
            obj &= mask > 127
            with torch.inference_mode():
                refine_objects(model, im, [obj], cfg)
            crops = 1
        else:
            refined = refine_image(model, im, seg, cfg)
            crops = int(refined.stats.get('crops', 0))
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    if args.precision != 'fp32' and args.mode != 'object':
        diff = (refined.probs - reference).abs()
        agreement = {'mean': float(diff.mean()), 'max': float(diff.max()),
                     'flipped': float(((refined.probs > 0.5) != (reference > 0.5)).float().mean())}
    return {
        'mode': args.mode, 'model': args.model[0], 'device': args.device, 'size': f'{image.shape[1]}x{image.shape[0]}', 'L': args.L,
        'batch': args.batch, 'seconds': round(seconds, 2), 'crops': crops, 'threads': torch.get_num_threads(),
        'peak_cpu_rss_mib': round(peak_rss_gib() * 1024),
        'peak_gpu_mib': round(torch.cuda.max_memory_allocated() / 2**20) if args.device.startswith('cuda') else None,
        'precision': args.precision, 'exact': args.exact, 'backend': args.backend, 'agreement': agreement,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--image', default=str(SAMPLES / 'aeroplane.jpg'))
    parser.add_argument('--mask', default=None, help='default: the image path with .png')
    parser.add_argument('--L', type=int, default=900)
    parser.add_argument('--stride', type=int, default=None, help="default: the architecture's (CascadeConfig.stride)")
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default=None)
    parser.add_argument('--mode', default='both', choices=['both', 'global_only', 'global_local', 'object', 'forward896'])
    parser.add_argument('--model', nargs='+', default=['lite'], help='lite, cascadepsp, seeded or a file (several: forward896)')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--exact', action='store_true', help="the authors' arithmetic, operation for operation")
    parser.add_argument('--backend', default='torch', choices=['torch', 'onnx'])
    args = parser.parse_args()
    args.mask = args.mask or str(Path(args.image).with_suffix('.png'))
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.mode != 'both' and len(args.model) == 1:
        print(json.dumps(run_one(args)))
        return 0
    modes = ('global_only', 'global_local') if args.mode == 'both' else (args.mode,)
    for model in args.model:
        for mode in modes:
            r = run_child('scripts.benchmark_refine', [
                '--image', args.image, '--mask', args.mask, '--L', str(args.L),
                *(['--stride', str(args.stride)] if args.stride else []), '--batch', str(args.batch),
                '--device', args.device, '--mode', mode, '--model', model, '--precision', args.precision,
                '--backend', args.backend] + ['--exact'] * args.exact)
            gpu = f", peak GPU {r['peak_gpu_mib']} MiB" if r['peak_gpu_mib'] is not None else ''
            if r['agreement']:
                a = r['agreement']
                gpu += (f"; vs fp32: mean {a['mean']:.2e}, max {a['max']:.2e}, {100 * a['flipped']:.3f}% of pixels "
                        'flipped at 0.5')
            print(f"{r['model']} {r['mode']:>12} {r['precision']}{' exact' if r['exact'] else ''} {r['backend']}: {r['size']} L={r['L']} on {r['device']} ({r['threads']} threads), "
                  f"batch {r['batch']}: {r['seconds']:.2f} s, {r['crops']} crops, "
                  f"peak CPU RSS {r['peak_cpu_rss_mib']} MiB{gpu}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
