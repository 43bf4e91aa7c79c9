"""The three methods side by side, as a user runs them: ``eval.py`` at its default settings on one image, with
seeded weights in the authors' released layouts (no download; the time does not depend on the values) and the
bundled ``lite``.

    python -m scripts.benchmark_methods [--case h36m fig1_2500] [--method cascadepsp crm lite] [--pairs 2]

Cases: ``h36m``, the first H36M frame (1000 x 1002); ``fig1_2500``, the paper's Figure 1 image resized to
2500 x 1667. Every run is a fresh process; the methods alternate within each round (``--pairs`` rounds), so
that a machine that slows down mid-way slows all of them. Prints, per case and method, each run's wall time
and peak RSS (ru_maxrss), their median, and the median's ratio to CascadePSP's (CRM's paper: CRM at about half
of CascadePSP's time or less; ``lite`` is this project's compact model).
MagNet segments at fixed scales rather than refining a given mask: ``scripts/benchmark_magnet.py`` times it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from scripts.measure import peak_rss_gib, run_child

CASES = {'h36m': ('H36M_test_im1.jpg', 'H36M_test_mask1.jpg', None),
         'fig1_2500': ('aeroplane.jpg', 'aeroplane.png', (2500, 1667))}
METHODS = ('cascadepsp', 'crm', 'lite')


def _inputs(work: Path, case: str) -> Path:
    """A folder with the case's NAME_im.png / NAME_seg.png (and the mask as NAME_gt.png: eval.py scores it)."""
    from PIL import Image

    from dataset.paths import SAMPLES
    image_name, mask_name, size = CASES[case]
    folder = work / case
    if not folder.is_dir():
        folder.mkdir(parents=True)
        image, mask = Image.open(SAMPLES / image_name).convert('RGB'), Image.open(SAMPLES / mask_name).convert('L')
        if size:
            image, mask = image.resize(size, Image.BICUBIC), mask.resize(size, Image.BILINEAR)
        image.save(folder / f'{case}_im.png')
        mask.save(folder / f'{case}_seg.png')
        mask.save(folder / f'{case}_gt.png')
    return folder


def _weights(work: Path, method: str) -> str:
    """The seeded released-layout file of ``method`` (a bare state dict, as the authors publish), or a name."""
    if method == 'lite':
        return 'lite'
    import torch

    from models.registry import build_model
    from models.seeded import seeded_state_dict
    path = work / f'{method}_seeded.pth'
    if not path.is_file():
        torch.save(seeded_state_dict(build_model(method), 0), path)
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--case', nargs='+', choices=sorted(CASES), default=list(CASES))
    parser.add_argument('--method', nargs='+', choices=METHODS, default=list(METHODS))
    parser.add_argument('--pairs', type=int, default=2, help='rounds of one run per method')
    parser.add_argument('--work', default='/tmp/benchmark_methods')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measured run, in its own process
        import eval as eval_cli
        folder, model, output = args.child
        start = time.perf_counter()
        code = eval_cli.main(['--dir', folder, '--output', output, '--model', model])
        print(json.dumps({'code': code, 'seconds': time.perf_counter() - start,
                          'peak_gib': peak_rss_gib()}))
        return code
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, str], list[dict]] = {}
    for case in args.case:
        folder = _inputs(work, case)
        for round_ in range(args.pairs):
            for method in args.method:
                output = work / f'out_{case}_{method}_{round_}'
                shutil.rmtree(output, ignore_errors=True)  # eval.py resumes: a folder it finished is skipped
                try:
                    result = run_child('scripts.benchmark_methods',
                                       ['--child', str(folder), _weights(work, method), str(output)])
                except RuntimeError as e:
                    print(f'{case} {method}: failed: {e}', file=sys.stderr)
                    return 1
                runs.setdefault((case, method), []).append(result)
                print(f"{case} {method}: {runs[case, method][-1]['seconds']:.1f} s", file=sys.stderr)
    print('| case | method | runs (s) | median (s) | peak RSS (GiB) | / CascadePSP |')
    print('|---|---|---|---|---|---|')
    for case in args.case:
        base = statistics.median(r['seconds'] for r in runs.get((case, 'cascadepsp'), [{'seconds': float('nan')}]))
        for method in args.method:
            times = [r['seconds'] for r in runs[case, method]]
            peaks = [r['peak_gib'] for r in runs[case, method]]
            median = statistics.median(times)
            print(f"| {case} | {method} | {' / '.join(f'{t:.1f}' for t in times)} | {median:.1f} | "
                  f"{min(peaks):.2f}-{max(peaks):.2f} | {median / base:.2f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
