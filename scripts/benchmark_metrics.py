"""Time the IoU/mBA computation of one large image on one core (target: 5000 x 3600 well under 2 s).

    python -m scripts.benchmark_metrics [--height 3600] [--width 5000] [--repeat 3]

Synthetic masks: an ellipse with a wavy boundary as ground truth, shifted copies as input and output.
Prints the time of score_image (both predictions, all five radii) and of reading the three PNGs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


from util.image_io import read_grey
from evaluation.metrics import boundary_radii, score_image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--height', type=int, default=3600)
    parser.add_argument('--width', type=int, default=5000)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    h, w = args.height, args.width
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    radius = np.hypot((yy - h / 2) / (h / 3), (xx - w / 2) / (w / 3))
    gt = ((radius < 1 + 0.05 * np.sin(12 * angle)) * 255).astype(np.uint8)
    seg, mask = np.roll(gt, 25, axis=1), np.roll(gt, 3, axis=0)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        score = score_image('bench', gt, seg, mask)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, array in (('gt', gt), ('seg', seg), ('mask', mask)):
            paths.append(Path(tmp) / f'x_{name}.png')
            Image.fromarray(array).save(paths[-1])
        start = time.perf_counter()
        for p in paths:
            read_grey(p)
        read = time.perf_counter() - start
    print(f'{w}x{h}, radii {boundary_radii(h, w)}, 1 OpenCV thread: score_image best {min(times):.3f} s '
          f'(of {args.repeat}), reading 3 PNGs {read:.3f} s; mBA input {score.seg_mba:.4f} output {score.mask_mba:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
