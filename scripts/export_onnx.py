"""Export a cascade network (``lite``, ``cascadepsp`` or a checkpoint) to ONNX for ``Refiner(..., backend='onnx')``.

    pip install onnx onnxscript onnxruntime
    python -m scripts.export_onnx lite exports/lite [--check]

Writes ``global.onnx``, ``local.onnx`` and ``meta.json`` into the folder (see :mod:`inference.onnx_backend`), with
dynamic batch, height and width. ``--check`` then refines a synthetic 300 x 400 image with both backends
(Global+Local, L=160) and prints the largest difference of the probabilities.
"""
from __future__ import annotations

import argparse
import sys
import time



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='lite, cascadepsp, or a weights file')
    parser.add_argument('folder', help='the export folder')
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--check', action='store_true', help='compare both backends on a synthetic image')
    args = parser.parse_args(argv)
    import numpy as np
    from inference.onnx_backend import MissingExtra, export_cascade
    from inference.refiner import Refiner
    from models.checkpoint import CheckpointError
    from models.hub import load_pretrained
    try:
        model = load_pretrained(args.model)
        start = time.perf_counter()
        export_cascade(model, args.folder, args.opset)
    except (CheckpointError, MissingExtra, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'exported {args.model} to {args.folder} in {time.perf_counter() - start:.1f} s')
    if args.check:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:300, :400]
        mask = ((yy - 150) ** 2 / 100 ** 2 + (xx - 200) ** 2 / 140 ** 2 < 1).astype(np.uint8) * 255
        from inference.predict import image_tensors, refine_image
        torch_ref, onnx_ref = Refiner(model=model), Refiner(args.folder, backend='onnx')
        cfg = torch_ref.config(L=160, stride=80)
        a, b = (refine_image(r.model, *image_tensors(image, mask), cfg).probs for r in (torch_ref, onnx_ref))
        print(f'largest difference of the probabilities, torch vs ONNX Runtime: {float((a - b).abs().max()):.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
