"""Multi-class segmentation scores from confusion matrices, as MagNet's ``magnet/utils/metrics.py`` computes them
(MAGNET.md §8): rows are ground truth, columns predictions.

    matrix = confusion_matrix(label, pred, 19, ignore_label=255)
    scores = iou_scores(total, mean_from=0)     # {'mIoU', 'fwIoU', 'IoU', 'freq'}

Kept from the authors because it changes published numbers: a class absent from both ground truth and
prediction has IoU 0, not NaN, and counts in the mean (Q13); DeepGlobe's mean leaves out class 0 (``mean_from=1``)
while its pixels still count in the matrix (Q11).
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(label: np.ndarray, pred: np.ndarray, n: int, ignore_label: int,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """n x n int64 counts of (ground truth, prediction) over pixels with 0 <= label, pred < n, label not
    ``ignore_label`` and ``mask`` (optional, same shape)."""
    label, pred = np.asarray(label).astype(np.int64), np.asarray(pred).astype(np.int64)
    if label.shape != pred.shape:
        raise ValueError(f'labels {label.shape} and prediction {pred.shape} differ in shape')
    keep = (label >= 0) & (pred < n) & (label != ignore_label)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    return np.bincount(n * label[keep] + pred[keep], minlength=n * n).reshape(n, n)


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """Per-class IoU: diag / max(1, row + column - diag)."""
    matrix = np.asarray(matrix, np.float64)
    diag = np.diag(matrix)
    return diag / np.maximum(1.0, matrix.sum(1) + matrix.sum(0) - diag)


def iou_scores(matrix: np.ndarray, mean_from: int = 0) -> dict:
    """Mean IoU over classes ``mean_from``.., frequency-weighted IoU (over the same classes), per-class IoU and
    ground-truth frequencies. An empty matrix scores 0 (the authors' mean is 0 there; their fwIoU raises)."""
    matrix = np.asarray(matrix, np.float64)
    iou = class_iou(matrix)
    total = matrix.sum()
    freq = matrix.sum(1) / total if total else np.zeros(len(matrix))
    kept_freq = freq[mean_from:]
    fw = float((iou[mean_from:] * kept_freq).sum() / kept_freq.sum()) if kept_freq.sum() else 0.0
    return {'mIoU': float(np.nanmean(iou[mean_from:])) if total else 0.0, 'fwIoU': fw,
            'IoU': iou.tolist(), 'freq': freq.tolist()}
