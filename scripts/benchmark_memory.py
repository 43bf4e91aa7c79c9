"""Peak memory of refine.py on a large synthetic image, as a user runs it (read, refine, write).

    python -m scripts.benchmark_memory [--size 12000 8000] [--model lite] [--fast] [--work /tmp/big]

Writes a synthetic photo (smooth colour gradients and a textured object) and its coarse mask (the object's
ellipse, shifted) as PNG once, then runs refine.py's main in a fresh process per setting and prints the wall
time and the peak RSS (ru_maxrss) in GiB against megapixels.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scripts.measure import peak_rss_gib, run_child



def make_inputs(work: Path, w: int, h: int) -> tuple[Path, Path]:
    import cv2
    import numpy as np
    image_path, mask_path = work / f'synthetic_{w}x{h}.png', work / f'synthetic_{w}x{h}_mask.png'
    if not image_path.is_file():
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        image = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 120 + 40], -1)
        obj = ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 < 1
        image[obj] = image[obj] * 0.3 + 160 + 40 * np.sin(xx[obj] / 37)[:, None]
        cv2.imwrite(str(image_path), cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        coarse = (((xx - w / 2 - w / 60) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3.1)) ** 2 < 1).astype(np.uint8) * 255
        cv2.imwrite(str(mask_path), coarse)
    return image_path, mask_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', nargs=2, type=int, default=[12000, 8000], metavar=('W', 'H'))
    parser.add_argument('--model', default='lite')
    parser.add_argument('--fast', action='store_true')
    parser.add_argument('--work', default='/tmp/benchmark_memory')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measured run, in its own process
        import refine as refine_cli
        start = time.perf_counter()
        code = refine_cli.main([args.child[0], args.child[1], '-o', args.child[2], '--model', args.model, *(['--fast'] if args.fast else []),
                                '--max_pixels', '0'])
        print(json.dumps({'code': code, 'seconds': time.perf_counter() - start,
                          'peak_gib': peak_rss_gib()}))
        return code
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    w, h = args.size
    image, mask = make_inputs(work, w, h)
    try:
        result = run_child('scripts.benchmark_memory', ['--model', args.model, *(['--fast'] if args.fast else []),
                                                        '--child', str(image), str(mask), str(work / 'refined.png')])
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{w}x{h} ({w * h / 1e6:.0f} MP), {args.model}{' --fast' if args.fast else ''}: {result['seconds']:.1f} s, "
          f"peak RSS {result['peak_gib']:.2f} GiB, exit {result['code']}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
