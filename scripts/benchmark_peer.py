"""This project against the authors' pip package (``segmentation-refinement`` 0.6), side by side on the CPU.

    pip install --no-deps segmentation-refinement==0.6        # the peer (torchvision is stood in for here)
    python -m scripts.benchmark_peer [--pairs 3] [--threads 2] [--case h36m_fast ...] [--samples samples/cascadepsp]

Both sides get the same seeded released-architecture weights (``tests/reference/README.md``), the same image
and mask and the same thread count. Every run is a fresh process that loads the model, then times one
``refine`` call; runs alternate package, project, package, project, ... (``--pairs`` pairs per case). Prints,
per case, the median seconds of each side, the median of the per-pair ratios (project / package), peak RSS,
and how the outputs agree. The project runs the package's procedure (``compat='pip'``, so both do the same
work) with its default arithmetic (Winograd convolutions, reordered linear maps: :mod:`inference.engine`); for
context, one run each of ``exact=True`` (bit-identical to the package), the research procedure (the default of
``eval.py``) and the bundled ``lite``.

The last table: ``lite`` Global+Local on the Figure 1 image against the package's Global
step on the same image, alternating in pairs (with one run of ``lite`` without its arbiter, for context).

Allocator settings: the processes start with glibc's defaults on both sides (no ``MALLOC_*`` or ``LD_PRELOAD``
changes). The project keeps freed memory while it refines (:mod:`util.malloc`: asked for here, as the command
lines do; a library caller's default is off); the package does not. For the record, two context runs show what
that setting is worth on each side: the project without it and the package under the same setting given
through glibc's environment (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``, for the whole process).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scripts.measure import peak_rss_gib, run_child

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / 'samples' / 'cascadepsp'  # dataset.paths.SAMPLES; the package side runs without this tree's imports
#: name -> (image, mask, scale of the image, fast, L): the cases of the performance table.
CASES = {
    'h36m_fast': ('H36M_test_im1.jpg', 'H36M_test_mask1.jpg', 1.0, True, 900),
    'fig1_fast': ('aeroplane.jpg', 'aeroplane.png', 1.0, True, 900),
    'fig1_half_global_local': ('aeroplane.jpg', 'aeroplane.png', 0.5, False, 900),
    'motorbike_global_local': ('motorbike.jpg', 'motorbike.png', 1.0, False, 900),
}


def stub_torchvision() -> bool:
    """The package imports torchvision for ToTensor and Normalize only; torchvision cannot be imported on
    CPU-only machines here, so these stand in (torchvision's arithmetic). Returns whether it stood in (False:
    torchvision is importable and is used)."""
    import importlib.util
    if importlib.util.find_spec('torchvision') is not None:
        return False
    import types

    import torch
    transforms = types.ModuleType('torchvision.transforms')

    class ToTensor:
        def __call__(self, pic):
            pic = pic[:, :, None] if pic.ndim == 2 else pic
            return torch.from_numpy(pic.transpose((2, 0, 1))).contiguous().to(torch.get_default_dtype()).div(255)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

        def __call__(self, x):
            return x.sub_(self.mean).div_(self.std)

    class Compose:
        def __init__(self, steps):
            self.steps = steps

        def __call__(self, x):
            for step in self.steps:
                x = step(x)
            return x

    transforms.ToTensor, transforms.Normalize, transforms.Compose = ToTensor, Normalize, Compose
    sys.modules['torchvision'] = types.ModuleType('torchvision')
    sys.modules['torchvision'].transforms = transforms
    sys.modules['torchvision.transforms'] = transforms
    return True


#: Context sides that run another side with a different allocator setting: side -> (the side, environment).
ALLOCATOR_SIDES = {
    'project_malloc_default': ('project', {'BENCHMARK_MALLOC_DEFAULT': '1'}),  # the project without the setting
    'package_freed_kept': ('package', {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2 ** 31 - 1)}),
}


def _child(side: str, case: str, samples: Path, folder: Path, out: Path, threads: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    torch.set_num_threads(threads)
    name, mask_name, scale, fast, L = CASES[case]
    image, mask = Image.open(samples / name).convert('RGB'), Image.open(samples / mask_name).convert('L')
    if scale != 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image, mask = image.resize(size, Image.BILINEAR), mask.resize(size, Image.BILINEAR)
    image, mask = np.asarray(image), np.asarray(mask)
    if side == 'package':
        stub_torchvision()
        import segmentation_refinement
        refiner = segmentation_refinement.Refiner(device='cpu', model_folder=str(folder),
                                                  download_and_check_model=False)
    elif side.startswith('lite'):
        from inference import Refiner
        lite = Refiner('lite', keep_freed_memory=True)
        fast = fast and not side.startswith('lite_global_local')
        arbiter = side != 'lite_global_local_no_arbiter'
        refiner = type('Lite', (), {'refine': lambda self, i, m, fast, L: lite.refine(i, m, fast=fast, L=L,
                                                                                     arbiter=arbiter)})()
    else:
        import segrefine
        refiner = segrefine.Refiner(device='cpu', model_folder=folder, download_and_check_model=False,
                                    compat='research' if side == 'project_research' else 'pip',
                                    exact=side == 'project_exact',
                                    keep_freed_memory=os.environ.get('BENCHMARK_MALLOC_DEFAULT') != '1')
    start = time.perf_counter()
    with torch.no_grad():
        result = refiner.refine(image, mask, fast=fast, L=L)
    seconds = time.perf_counter() - start
    np.save(out, result)
    return {'seconds': seconds, 'peak_gib': peak_rss_gib()}


def _pairs(run, case: str, sides: tuple[str, str], pairs: int) -> tuple[dict, dict, dict]:
    """``pairs`` alternating runs of the two sides: (seconds per side, peak GiB per side, first output per side)."""
    times: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}
    outputs = {}
    for i in range(pairs):
        for side in sides:
            result, output = run(side, case, i)
            times.setdefault(side, []).append(result['seconds'])
            peaks[side] = max(peaks.get(side, 0.0), result['peak_gib'])
            outputs.setdefault(side, output)
    return times, peaks, outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pairs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--case', nargs='*', choices=sorted(CASES), default=list(CASES))
    parser.add_argument('--lite_pairs', type=int, default=3, help='pairs for the lite table (0: none)')
    parser.add_argument('--no_context', action='store_true', help='skip the one-off exact, research and lite runs')
    parser.add_argument('--samples', default=str(SAMPLES))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(_child(spec['side'], spec['case'], Path(args.samples), Path(spec['folder']),
                                Path(spec['out']), args.threads)))
        return 0
    import importlib.util
    if importlib.util.find_spec('segmentation_refinement') is None:
        print('the peer is not installed: pip install --no-deps segmentation-refinement==0.6', file=sys.stderr)
        return 2
    import numpy as np
    import torch
    from models.registry import build_model
    from models.seeded import seeded_state_dict
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save({'module.' + k: v for k, v in seeded_state_dict(build_model('cascadepsp'), 0).items()},
                   folder / 'model')

        def run(side: str, case: str, i: int) -> tuple[dict, np.ndarray]:
            out = folder / f'{side}_{case}_{i}.npy'
            child, env = ALLOCATOR_SIDES.get(side, (side, {}))
            spec = json.dumps({'side': child, 'case': case, 'folder': str(folder), 'out': str(out)})
            result = run_child('scripts.benchmark_peer', ['--child', spec, '--threads', str(args.threads),
                                                          '--samples', args.samples], env)
            return result, np.load(out)

        context_sides = ('project_exact', 'project_research', 'lite', *ALLOCATOR_SIDES)
        print('| case | package (s) | project (s) | ratio | differing pixels, max difference (of 255) | '
              'exact: identical | research (s) | lite (s) | project, malloc default (s) | '
              'package, freed memory kept (s) | peak RSS package / project (/ malloc default) (GiB) |')
        print('|---|---|---|---|---|---|---|---|---|---|---|')
        for case in args.case:
            times, peaks, outputs = _pairs(run, case, ('package', 'project'), args.pairs)
            for side in () if args.no_context else context_sides:
                result, outputs[side] = run(side, case, 0)  # one run each: context, not the ratio
                times[side], peaks[side] = [result['seconds']], result['peak_gib']
            context = (['-'] * 5 if args.no_context else
                       ['yes' if np.array_equal(outputs['package'], outputs['project_exact']) else 'NO']
                       + [f"{times[side][0]:.2f}" for side in context_sides[1:]])
            ratios = [b / a for a, b in zip(times['package'], times['project'])]
            diff = np.abs(outputs['project'].astype(int) - outputs['package'])
            print(f"| {case} | {statistics.median(times['package']):.2f} | {statistics.median(times['project']):.2f}"
                  f" | {statistics.median(ratios):.2f} | {100 * (diff > 0).mean():.3f}%, {diff.max()} | "
                  f"{' | '.join(context)} | {peaks['package']:.2f} / {peaks['project']:.2f}"
                  f"{'' if args.no_context else f' / {peaks[context_sides[3]]:.2f}'} |", flush=True)
        if args.lite_pairs:
            times, peaks, _ = _pairs(run, 'fig1_fast', ('package', 'lite_global_local'), args.lite_pairs)
            ratios = [b / a for a, b in zip(times['package'], times['lite_global_local'])]
            plain, _ = run('lite_global_local_no_arbiter', 'fig1_fast', 0)
            print('\n| Figure 1, 3492 x 2328 | package, Global step (s) | lite, Global+Local (s) | ratio | '
                  'peak RSS package / lite (GiB) | lite without its arbiter (s), one run |\n|---|---|---|---|---|---|')
            print(f"| {args.lite_pairs} pairs | {statistics.median(times['package']):.2f} | "
                  f"{statistics.median(times['lite_global_local']):.2f} | {statistics.median(ratios):.3f} | "
                  f"{peaks['package']:.2f} / {peaks['lite_global_local']:.2f} | {plain['seconds']:.2f} |", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
