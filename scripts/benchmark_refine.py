"""Benchmark the refinement of the paper's Figure 1 image (3492 x 2328) at L=900.

    python scripts/benchmark_refine.py [--image ../shared/samples/aeroplane.jpg] [--L 900] [--batch 1]
                                       [--device cuda|cpu] [--mode both|global_only|global_local]

Uses the seeded weights of shared/reference/README.md (timing does not depend on the values, only the
number of crops run does; trained weights give a different count). Prints, per mode: wall time, local
crops run, peak CPU memory (RSS of a fresh process) and peak GPU memory. Each mode runs in its own
process so the memory peaks are separate.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from models import RefinementModule
    from models.cascade import CascadeConfig
    from models.refiner import refine_image
    from models.seeded import seed_model
    from util.image_io import read_grey, read_rgb
    from util.transforms import normalize_image, normalize_mask

    image, mask = read_rgb(args.image), read_grey(args.mask)
    model = seed_model(RefinementModule()).to(args.device).eval()
    im, seg = normalize_image(image), normalize_mask((mask > 127).astype('uint8') * 255)
    cfg = CascadeConfig(L=args.L, stride=args.stride, batch=args.batch)
    global_only = args.mode == 'global_only'
    if args.device.startswith('cuda'):  # warm-up: cuDNN autotuning and context creation are not refinement
        refine_image(model, im[..., :args.L, :args.L], seg[..., :args.L, :args.L], cfg, global_only=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _, crops = refine_image(model, im, seg, cfg, global_only=global_only)
    if args.device.startswith('cuda'):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        'mode': args.mode, 'device': args.device, 'size': f'{image.shape[1]}x{image.shape[0]}', 'L': args.L,
        'batch': args.batch, 'seconds': round(seconds, 2), 'crops': crops, 'threads': torch.get_num_threads(),
        'peak_cpu_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        'peak_gpu_mib': round(torch.cuda.max_memory_allocated() / 2**20) if args.device.startswith('cuda') else None,
    }


def main() -> int:
    shared = ROOT.parent / 'shared' / 'samples'
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--image', default=str(shared / 'aeroplane.jpg'))
    parser.add_argument('--mask', default=None, help='default: the image path with .png')
    parser.add_argument('--L', type=int, default=900)
    parser.add_argument('--stride', type=int, default=450)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--device', default=None)
    parser.add_argument('--mode', default='both', choices=['both', 'global_only', 'global_local'])
    args = parser.parse_args()
    args.mask = args.mask or str(Path(args.image).with_suffix('.png'))
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.mode != 'both':
        print(json.dumps(run_one(args)))
        return 0
    for mode in ('global_only', 'global_local'):
        cmd = [sys.executable, __file__, '--image', args.image, '--mask', args.mask, '--L', str(args.L),
               '--stride', str(args.stride), '--batch', str(args.batch), '--device', args.device, '--mode', mode]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        gpu = f", peak GPU {r['peak_gpu_mib']} MiB" if r['peak_gpu_mib'] is not None else ''
        print(f"{r['mode']:>12}: {r['size']} L={r['L']} on {r['device']} ({r['threads']} threads), "
              f"batch {r['batch']}: {r['seconds']:.2f} s, {r['crops']} crops, "
              f"peak CPU RSS {r['peak_cpu_rss_mib']} MiB{gpu}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
