"""MagNet's data (MAGNET.md §4, §9): Cityscapes and DeepGlobe labels, the authors' datalists, the test-time
multi-scale patches and the training pairs.

    items = read_datalist('data/cityscapes', 'data/list/cityscapes/val.txt')
    image = read_rgb(items[0].image); labels, unknown = read_class_map(items[0].label, CITYSCAPES)
    patches, scale_idx = multiscale_patches(image, [(256, 128), (512, 256)], (256, 128), (256, 128))

Sizes are (w, h) as the authors write them. Resizes are OpenCV's ``INTER_LINEAR`` (no antialiasing,
MAGNET.md Q18), reproduced exactly because the authors' numbers depend on it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from util.image_io import ImageReadError, read_labels, read_rgb

#: Cityscapes label id -> train id (19 classes); the other ids of the table are ignored (255).
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_IGNORED_IDS = (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30)
#: DeepGlobe land-cover colours (RGB) by class: unknown, urban, agriculture, rangeland, forest, water, barren.
DEEPGLOBE_COLOURS = ((0, 0, 0), (0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255),
                     (255, 255, 255))
#: Cityscapes' palette by train id (road, sidewalk, building, wall, fence, pole, traffic light, traffic sign,
#: vegetation, terrain, sky, person, rider, car, truck, bus, train, motorcycle, bicycle), as its tools colour them.
CITYSCAPES_COLOURS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
                      (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
                      (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))


@dataclass(frozen=True)
class LabelSpec:
    """A dataset's labels: class count, ignored value (-1: none is ignored) and how its label files read."""
    name: str
    num_classes: int
    ignore_label: int
    colour: bool            #: RGB colour masks (DeepGlobe) rather than grey ids (Cityscapes)
    mean_from: int          #: first class counted in the mean IoU (DeepGlobe leaves out class 0, 'unknown')


CITYSCAPES = LabelSpec('cityscapes', 19, 255, colour=False, mean_from=0)
DEEPGLOBE = LabelSpec('deepglobe', 7, -1, colour=True, mean_from=1)
DATASETS = {spec.name: spec for spec in (CITYSCAPES, DEEPGLOBE)}
PALETTES = {'cityscapes': CITYSCAPES_COLOURS, 'deepglobe': DEEPGLOBE_COLOURS}


def colourise(classes: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """H x W class indices -> H x W x 3 uint8 RGB in the dataset's palette (classes outside it: black)."""
    palette = np.zeros((max(256, int(classes.max(initial=0)) + 1), 3), np.uint8)
    palette[:len(PALETTES[spec.name])] = PALETTES[spec.name]
    return palette[np.asarray(classes, np.int64)]


@dataclass(frozen=True)
class Item:
    image: Path
    label: Path | None


def read_datalist(root: str | os.PathLike, datalist: str | os.PathLike) -> list[Item]:
    """The authors' datalist: one ``IMAGE<TAB>LABEL`` line per image, paths relative to ``root`` (a line with
    one path has no label). Blank lines are skipped; a line with more than two fields is an error naming it."""
    root, datalist = Path(root), Path(datalist)
    if not datalist.is_file():
        raise FileNotFoundError(f'{datalist}: no such datalist')
    items = []
    for number, line in enumerate(datalist.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip('\n').split('\t')
        if len(fields) > 2:
            raise ValueError(f'{datalist}:{number}: expected IMAGE<TAB>LABEL, got {len(fields)} fields')
        items.append(Item(root / fields[0].strip(), root / fields[1].strip() if len(fields) > 1 and fields[1].strip()
                          else None))
    if not items:
        raise ValueError(f'{datalist}: lists no image')
    return items


def map_class_ids(raw: np.ndarray, spec: LabelSpec) -> tuple[np.ndarray, int]:
    """Raw label file content (H x W ids, or H x W x 3 RGB for colour datasets) -> (H x W int64 classes,
    number of pixels of no known id or colour). Those pixels become class 0, as in the authors' code
    (MAGNET.md Q11, Q12); the count lets the caller report them."""
    if spec.colour:
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise ValueError(f'{spec.name} labels are RGB colour masks, got an array of shape {raw.shape}')
        out = np.zeros(raw.shape[:2], np.int64)
        known = np.zeros(raw.shape[:2], bool)
        for cls, colour in enumerate(DEEPGLOBE_COLOURS):
            hit = np.all(raw == np.array(colour, raw.dtype), axis=2)
            out[hit] = cls
            known |= hit
        return out, int((~known).sum())
    if raw.ndim != 2:
        raise ValueError(f'{spec.name} labels are grey label-id images, got an array of shape {raw.shape}')
    table = np.zeros(max(256, int(raw.max(initial=0)) + 1), np.int64)
    known = np.zeros_like(table, dtype=bool)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label_id], known[label_id] = train_id, True
    for label_id in CITYSCAPES_IGNORED_IDS:
        table[label_id], known[label_id] = spec.ignore_label, True
    raw = raw.astype(np.int64)
    return table[raw], int((~known[raw]).sum())


def read_class_map(path: str | os.PathLike, spec: LabelSpec) -> tuple[np.ndarray, int]:
    """A label file as (H x W int64 classes, pixels of unknown id/colour); see :func:`map_class_ids`."""
    raw = read_rgb(path) if spec.colour else read_labels(path)
    try:
        return map_class_ids(raw, spec)
    except ValueError as e:
        raise ImageReadError(f'{path}: {e}') from e


def resize_linear(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """OpenCV ``INTER_LINEAR`` (the authors' resize; a copy when the size already matches)."""
    return cv2.resize(image, tuple(size_wh), interpolation=cv2.INTER_LINEAR)


def pixel_boxes(size_wh: tuple[int, int], crop_wh: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1) of the tiling of one scale, in the x-major order of
    :func:`methods.magnet.geometry.get_patch_coords` (the same ``int`` step)."""
    (w, h), (cw, ch) = size_wh, crop_wh
    n_x, n_y = -(-w // cw), -(-h // ch)
    step_x = int(cw - (n_x * cw - w) / max(n_x - 1, 1.0))
    step_y = int(ch - (n_y * ch - h) / max(n_y - 1, 1.0))
    return [(x * step_x, y * step_y, x * step_x + cw, y * step_y + ch) for x in range(n_x) for y in range(n_y)]


def multiscale_patches(image: np.ndarray, scales: list[tuple[int, int]], crop_wh: tuple[int, int],
                 input_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every scale's patches (MAGNET.md §4, ``Patching``): the image resized to the scale, cut into crops,
    each resized to the input size. Returns (K x ih x iw x 3 uint8 RGB, K scale indices), scale 0 first.
    (The progressive loop cuts one scale at a time with :func:`scale_patches`, to bound memory.)"""
    patches, scale_idx = [], []
    for s, size in enumerate(scales):
        for crop in scale_patches(image, size, crop_wh, input_wh):
            patches.append(crop)
            scale_idx.append(s)
    return np.stack(patches), np.asarray(scale_idx, np.int64)


def scale_patches(image: np.ndarray, size_wh: tuple[int, int], crop_wh: tuple[int, int],
                  input_wh: tuple[int, int]) -> list[np.ndarray]:
    """One scale's patches, x-major (see :func:`multiscale_patches`)."""
    scaled = resize_linear(image, size_wh)
    return [resize_linear(np.ascontiguousarray(scaled[y0:y1, x0:x1]), input_wh)
            for x0, y0, x1, y1 in pixel_boxes(size_wh, crop_wh)]


@dataclass(frozen=True)
class TrainingPair:
    """One training sample of the authors' ``RandomPair`` (MAGNET.md §9): the whole image at the input size, a
    random crop of a finer scale at the input size with its labels, and the crop's box in coarse pixels."""
    coarse: np.ndarray       #: ih x iw x 3 uint8 RGB
    fine: np.ndarray         #: ih x iw x 3 uint8 RGB
    fine_label: np.ndarray   #: ih x iw raw label content (ids or RGB), INTER_NEAREST
    coord: np.ndarray        #: 1 x 4 float32 (x0, y0, x1, y1) in pixels of the coarse input


def random_pair(image: np.ndarray, raw_label: np.ndarray, fine_scales: list[tuple[int, int]],
                crop_wh: tuple[int, int], input_wh: tuple[int, int], py_random, np_random) -> TrainingPair:
    """The authors' draw: ``py_random.choice`` of a fine scale, then ``np_random.randint`` x and y (upper bound
    excluded: the last position is never drawn, Q21). A scale equal to the crop, which crashes theirs, draws
    position 0."""
    (cw, ch), (iw, ih) = crop_wh, input_wh
    coarse = resize_linear(image, input_wh)
    w_s, h_s = py_random.choice(fine_scales)
    fine = resize_linear(image, (w_s, h_s))
    label = cv2.resize(raw_label, (w_s, h_s), interpolation=cv2.INTER_NEAREST)
    x = int(np_random.randint(0, w_s - cw)) if w_s > cw else 0
    y = int(np_random.randint(0, h_s - ch)) if h_s > ch else 0
    x0, y0 = x / w_s * iw, y / h_s * ih
    coord = np.array([[x0, y0, x0 + cw / w_s * iw, y0 + ch / h_s * ih]], np.float32)
    fine = resize_linear(np.ascontiguousarray(fine[y:y + ch, x:x + cw]), input_wh)
    label = cv2.resize(np.ascontiguousarray(label[y:y + ch, x:x + cw]), input_wh, interpolation=cv2.INTER_NEAREST)
    return TrainingPair(coarse, fine, label, coord)
