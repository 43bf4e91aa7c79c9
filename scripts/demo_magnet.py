"""MagNet on one photo, as the authors' demo scripts run it (scripts/{cityscapes,deepglobe}/demo_magnet{,_fast}.sh).

    python -m scripts.demo_magnet PHOTO --system magnet_cityscapes [--fast] [--output demo_results]
    python -m scripts.demo_magnet PHOTO --system magnet_deepglobe --pretrained BACKBONE.pth \
        --pretrained_refinement REFINEMENT.pth                 # any compatible files, by path

Runs the backbone and the progressive refinement with the demo script's settings (methods/magnet/presets.py;
--fast: MagNet-Fast) and writes, into --output:

* NAME_pred.png: the refined class indices (uint8), at the photo's size (nearest neighbour);
* NAME_color.png: the same, coloured with the dataset's palette;
* NAME_panel.png: the photo, the backbone's coarse prediction and the refined one, side by side.

The photo is resized to the settings' last scale for inference (2048 x 1024 for Cityscapes, 2448 x 2448 for
DeepGlobe), as the authors' demo feeds it, and the label maps are resized back to the photo. Named weights are
the authors' released files, looked up in the weights cache ($CASCADEPSP_HOME) and fetched once; offline, the
message says where to put them.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from dataset.magnet import DATASETS, colourise, resize_linear
from inference.refiner import Refiner
from inference.visualize import tiles_panel
from methods.magnet.config import MagNetConfig
from methods.magnet.presets import DEMO_PRESETS
from models.checkpoint import CheckpointError
from models.hub import MAGNET_SYSTEMS, load_system
from util.atomic import OverwritesInput, ensure_folder, refuse_overwriting_inputs, write_image
from util.devices import DeviceError, parse_device
from util.image_io import ImageReadError, read_rgb

log = logging.getLogger('demo_magnet')
#: Inference settings of a demo preset (the rest names the dataset and the weights).
_INFER_KEYS = ('scales', 'crop_size', 'input_size', 'n_patches', 'n_points', 'smooth_kernel', 'sub_batch_size')


def run(photo: np.ndarray, refiner: Refiner, cfg: MagNetConfig) -> tuple[np.ndarray, np.ndarray]:
    """(refined, coarse) class maps, H x W uint8, of an H x W x 3 uint8 RGB ``photo``: :meth:`Refiner.segment` at
    the last scale of ``cfg``, the label maps resized back to the photo (nearest neighbour)."""
    h, w = photo.shape[:2]
    maps = refiner.segment(resize_linear(photo, cfg.scales[-1]), cfg=cfg)
    return tuple(cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('photo', help='the photo (any image PIL reads)')
    parser.add_argument('--system', required=True, choices=sorted(MAGNET_SYSTEMS))
    parser.add_argument('--fast', action='store_true', help="MagNet-Fast (the authors' demo_magnet_fast.sh)")
    parser.add_argument('--pretrained', help="the backbone's file (default: the system's released file, by name)")
    parser.add_argument('--pretrained_refinement', nargs='+', help='refinement module file(s), one per stage or one '
                                                                   'for every stage (default: the released ones)')
    parser.add_argument('--output', default='demo_results', help='folder for the three files')
    parser.add_argument('--device', default='auto', help='cpu, cuda, cuda:N or auto (default: a GPU if present)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    dataset = args.system.removeprefix('magnet_')
    preset = DEMO_PRESETS[dataset + ('_fast' if args.fast else '')]
    if bool(args.pretrained) != bool(args.pretrained_refinement):
        parser.error('--pretrained and --pretrained_refinement go together (or neither: the released files)')
    stem = Path(args.photo).stem
    out = Path(args.output)
    outputs = {kind: out / f'{stem}_{kind}.png' for kind in ('pred', 'color', 'panel')}
    try:
        device = parse_device(args.device)
        refuse_overwriting_inputs(outputs, {'PHOTO': args.photo})
        ensure_folder(out)
        photo = read_rgb(args.photo)
        system = load_system(preset['model'], preset['num_classes'], args.pretrained or preset['pretrained'],
                             args.pretrained_refinement or preset['pretrained_refinement'])
        cfg = MagNetConfig(**{k: preset[k] for k in _INFER_KEYS})
        refined, coarse = run(photo, Refiner(model=system, device=device), cfg)
    except (CheckpointError, DeviceError, ImageReadError, OverwritesInput, OSError, ValueError) as e:
        log.error('%s', e)
        return 2
    spec = DATASETS[dataset]
    colour = colourise(refined, spec)
    panel = tiles_panel({'photo': photo, 'backbone (coarse)': colourise(coarse, spec),
                         f'{"MagNet-Fast" if args.fast else "MagNet"} (refined)': colour})
    for kind, image in (('pred', refined.astype(np.uint8)), ('color', colour), ('panel', panel)):
        write_image(outputs[kind], image)
    log.info('wrote %s', ', '.join(str(p) for p in outputs.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
