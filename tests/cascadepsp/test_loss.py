"""The training loss against the authors' values, and a hand-computed gradient case."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from methods.cascadepsp.loss import CascadeLoss, GradientMagnitude, LossWeights


def test_every_term_matches_reference(reference_dir):
    ref = json.loads((reference_dir / 'loss.json').read_text())
    arrays = np.load(reference_dir / 'loss.npz')
    outputs = {k: torch.from_numpy(arrays[k]) for k in arrays.files if k.startswith(('out_', 'pred_'))}
    w = ref['weights']
    loss = CascadeLoss(LossWeights(w['ce_weight'], w['l1_weight'], w['l2_weight'], w['grad_weight']))
    terms = loss(outputs, torch.from_numpy(arrays['gt']))
    assert set(terms) == set(ref['values'])
    for key, expected in ref['values'].items():
        assert terms[key].item() == pytest.approx(expected, rel=1e-5), key
    assert LossWeights() == LossWeights(w['ce_weight'], w['l1_weight'], w['l2_weight'], w['grad_weight'])


def test_gradient_magnitude_hand_computed():
    # Constant map: zero gradient inside; magnitude is sqrt(eps) = 0.01 there.
    x = torch.zeros(1, 1, 7, 9)
    x[..., :, 5:] = 1.0  # vertical step between columns 4 and 5
    g = GradientMagnitude()(x)
    assert g[0, 0, 3, 1].item() == pytest.approx(0.01, abs=1e-7)
    # Row 3, column 4: the mean filter gives columns 3..6 = 0, 1/3, 2/3, 1 (row-independent inside);
    # Sobel x at column 4: (1 + 2 + 1) * (m[3] - m[5]) / 4 = 0 - 2/3, gy = 0.
    assert g[0, 0, 3, 4].item() == pytest.approx(np.sqrt((2 / 3) ** 2 + 1e-4), rel=1e-6)


def test_weights_are_configurable():
    outputs = {f'{p}_{s}': torch.zeros(1, 1, 8, 8) for p in ('out', 'pred') for s in ('224', '28', '56', '28_2', '28_3', '56_2')}
    gt = torch.ones(1, 1, 8, 8)
    only_l1 = CascadeLoss(LossWeights([0.0] * 6, [1.0] + [0.0] * 5, [0.0] * 6, 0.0))(outputs, gt)
    assert only_l1['total_loss'].item() == pytest.approx(1.0)  # |0 - 1| on the stride-1 output
    with pytest.raises(ValueError, match='6 values'):
        CascadeLoss(LossWeights(ce=[1.0]))
