"""Time and peak memory of MagNet's progressive inference through eval.py --method magnet, as a user runs it,
on a synthetic image with seeded weights in the released layouts (no dataset or weights needed).

    python -m scripts.benchmark_magnet [--setting deepglobe|cityscapes] [--fast] [--device cpu|cuda]

deepglobe: 2448 x 2448, ResNet-50 FPN, scales 612/1224/2448, crops 612 -> 508, one refinement module;
cityscapes: 2048 x 1024, HRNet-W18-Small-v2 + OCR, scales 256x128 .. 2048x1024, three modules. Each run is a
fresh process; prints the wall time and the peak RSS (ru_maxrss), and the peak GPU memory on CUDA; then where
the time goes, per stage of the progressive inference (:data:`STAGES`: calls, seconds, share of the run, and
the peak RSS reached by the end of the stage's last call), the rest (model loading, resizing, the label
scatter, writing) as "other"; and a digest of the predicted labels, to compare two versions of the code.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from scripts.measure import peak_rss_gib, run_child

SETTINGS = {
    'deepglobe': dict(size=(2448, 2448), model='fpn', classes=7, refinements=1,
                      flags=['--scales', '612-612,1224-1224,2448-2448', '--crop_size', '612', '612',
                             '--input_size', '508', '508', '--smooth_kernel', '11'],
                      magnet=['--n_patches', '-1', '--n_points', '0.75'], fast=['--n_patches', '3', '--n_points', '0.9']),
    'cityscapes': dict(size=(2048, 1024), model='hrnet18+ocr', classes=19, refinements=3,
                       flags=['--scales', '256-128,512-256,1024-512,2048-1024', '--crop_size', '256', '128',
                              '--input_size', '256', '128', '--smooth_kernel', '5'],
                       magnet=['--n_patches', '-1', '--n_points', '32768'], fast=['--n_patches', '4', '--n_points', '0.9']),
}


#: The functions of methods/magnet/inference.py timed as stages, and their names in the breakdown.
STAGES = {'scale_patches': 'patch extraction', '_predict': 'backbone (normalise, network, softmax)',
          'roi_align': 'roi_align', 'ensemble': 'ensemble of refined patches', 'calculate_certainty': 'certainty',
          'median_blur': 'median blur of the error map', 'get_uncertain_point_coords_on_grid': 'point selection',
          'point_sample': 'point sampling'}
REFINEMENT = 'refinement module'


def _time_stages() -> dict[str, list[float]]:
    """Wrap the stages (and every refinement module's call) so that each call adds its time; returns the
    running totals, name -> [calls, seconds, peak RSS in GiB by the end of the last call]."""
    import methods.magnet.inference as inference
    from models.magnet.system import MagNetSystem
    totals: dict[str, list[float]] = {}

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                entry = totals.setdefault(name, [0, 0.0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - start
                entry[2] = peak_rss_gib()
        return wrapper

    for attr, name in STAGES.items():
        setattr(inference, attr, timed(name, getattr(inference, attr)))
    choose = MagNetSystem.refinement
    MagNetSystem.refinement = lambda self, stage: timed(REFINEMENT, choose(self, stage))
    return totals


def _digest(folder: Path) -> str:
    import hashlib
    digest = hashlib.sha1()
    for path in sorted(folder.rglob('*.png')):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _prepare(work: Path, setting: dict) -> list[str]:
    import numpy as np
    import torch
    from PIL import Image
    from models.magnet.system import MagNetSystem
    from models.seeded import seeded_state_dict
    w, h = setting['size']
    system = MagNetSystem(setting['model'], setting['classes'], setting['refinements'])
    torch.save({'model.' + k: v for k, v in seeded_state_dict(system.backbone, 0).items()}, work / 'backbone.pth')
    refinements = []
    for i, module in enumerate(system.refinements):
        torch.save(seeded_state_dict(module, i + 1), work / f'refinement{i}.pth')
        refinements.append(str(work / f'refinement{i}.pth'))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([xx / w * 200, yy / h * 200, 128 + 60 * np.sin(xx / 41) * np.cos(yy / 53)], -1)
    Image.fromarray(image.astype(np.uint8)).save(work / 'image.png')
    (work / 'list.txt').write_text('image.png\n')
    return ['--method', 'magnet', '--dataset', 'deepglobe' if setting['model'] == 'fpn' else 'cityscapes',
            '--root', str(work), '--datalist', str(work / 'list.txt'), '--model', setting['model'],
            '--pretrained', str(work / 'backbone.pth'), '--pretrained_refinement', *refinements,
            '--num_classes', str(setting['classes']), *setting['flags'], '--save_pred', '--save_dir', str(work / 'out')]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--setting', choices=sorted(SETTINGS), default='deepglobe')
    parser.add_argument('--fast', action='store_true', help='MagNet-Fast (the script\'s n_patches / n_points)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--child', help=argparse.SUPPRESS)  # eval.py's arguments, JSON
    args = parser.parse_args()
    if args.child:  # one measured run, in its own process
        import torch
        import eval as eval_cli
        stages = _time_stages()
        argv = json.loads(args.child)
        start = time.perf_counter()
        code = eval_cli.main(argv)
        print(json.dumps({'code': code, 'seconds': time.perf_counter() - start,
                          'peak_rss_gib': peak_rss_gib(),
                          'peak_gpu_gib': torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                          'stages': stages, 'labels': _digest(Path(argv[argv.index('--save_dir') + 1]))}))
        return code
    setting = SETTINGS[args.setting]
    with tempfile.TemporaryDirectory() as tmp:
        argv = _prepare(Path(tmp), setting) + setting['fast' if args.fast else 'magnet'] + ['--device', args.device]
        try:
            result = run_child('scripts.benchmark_magnet', ['--child', json.dumps(argv)])
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
    w, h = setting['size']
    print(f"{args.setting} {'MagNet-Fast' if args.fast else 'MagNet'} {w}x{h} on {args.device}: "
          f"{result['seconds']:.1f} s, peak RSS {result['peak_rss_gib']:.2f} GiB"
          + (f", peak GPU {result['peak_gpu_gib']:.2f} GiB" if result['peak_gpu_gib'] is not None else '')
          + f"; labels {result['labels']}")
    total = result['seconds']
    print(f"{'stage':42s} {'calls':>6s} {'seconds':>8s} {'share':>6s} {'peak RSS':>9s}")
    rows = sorted(result['stages'].items(), key=lambda item: -item[1][1])
    for name, (calls, seconds, peak) in rows:
        print(f'{name:42s} {calls:6d} {seconds:8.2f} {seconds / total:6.1%} {peak:6.2f} GiB')
    other = total - sum(seconds for _, seconds, _ in result['stages'].values())
    print(f"{'other (loading, resizing, label scatter, writing)':42s} {'':6s} {other:8.2f} {other / total:6.1%}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
