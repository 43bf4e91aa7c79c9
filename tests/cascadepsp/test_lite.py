"""Architectures by name: the compact ``lite`` model, checkpoints that carry their architecture, the
guided filter, the bundled weights on a real held-out pair, and train.py --arch lite."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import train as train_cli
from dataset.coarse_sets import coarse_mask
from dataset.splits import VAL_SPLIT, read_split, split_pairs
from models import RefinementModule
from models.checkpoint import CheckpointError, load_model, load_weights, read_checkpoint, save_checkpoint
from util.guided_filter import box_mean, guided_filter
from models.hub import BUNDLED, load_pretrained
from models.cascadepsp.lite import LiteRefinementModule
from models.cascadepsp.refinement import OUTPUT_KEYS
from models.registry import build_model
from models.seeded import seed_model
from util.image_io import read_grey, read_rgb
from evaluation.metrics import score_image


def test_lite_budget_outputs_and_re_entry():
    model = build_model('lite').eval()
    assert isinstance(model, LiteRefinementModule) and sum(p.numel() for p in model.parameters()) <= 2_000_000
    image, mask = torch.randn(2, 3, 40, 56), torch.rand(2, 1, 40, 56) * 2 - 1
    with torch.no_grad():
        out = model(image, mask)
        assert sorted(out) == sorted(OUTPUT_KEYS) and all(v.shape == (2, 1, 40, 56) for v in out.values())
        assert all(float(out[k].min()) >= 0 and float(out[k].max()) <= 1 for k in OUTPUT_KEYS if k.startswith('pred'))
        assert set(model(image, mask, mask)) == {'out_28_2', 'pred_28_2', 'out_56', 'pred_56', 'out_28_3',
                                                 'pred_28_3', 'out_56_2', 'pred_56_2', 'out_224', 'pred_224'}
        assert set(model(image, mask, mask, mask)) == {'out_28_3', 'pred_28_3', 'out_56_2', 'pred_56_2',
                                                       'out_224', 'pred_224'}
    with pytest.raises(ValueError, match='unknown architecture'):
        build_model('resnet9000')


def test_checkpoints_round_trip_with_their_architecture(tmp_path):
    lite = seed_model(build_model('lite', gf_radius=3), 1).eval()
    save_checkpoint(tmp_path / 'lite.pth', lite, half=True, note='fp16 export')
    data = read_checkpoint(tmp_path / 'lite.pth')
    assert data['arch'] == 'lite' and data['hparams']['gf_radius'] == 3 and data['model']['stem.0.weight'].dtype == torch.float16
    loaded = load_model(tmp_path / 'lite.pth').eval()
    assert isinstance(loaded, LiteRefinementModule) and loaded.hparams == lite.hparams
    image, mask = torch.randn(1, 3, 32, 40), torch.rand(1, 1, 32, 40) * 2 - 1
    with torch.no_grad():
        a, b = lite(image, mask)['pred_224'], loaded(image, mask)['pred_224']
    assert float((a - b).abs().max()) < 2e-2  # fp16 weights

    with pytest.raises(CheckpointError, match="holds a 'lite' model, not 'cascadepsp'"):
        load_weights(RefinementModule(), tmp_path / 'lite.pth')
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'lite.pth').read_bytes()[:5000])
    with pytest.raises(CheckpointError, match='cut.pth: not a readable'):
        load_model(tmp_path / 'cut.pth')


def test_released_format_loads_strictly_as_cascadepsp(seeded_model, tmp_path):
    torch.save({f'module.{k}': v for k, v in seeded_model.state_dict().items()}, tmp_path / 'model')  # as released
    loaded = load_model(tmp_path / 'model')
    assert type(loaded) is RefinementModule and loaded.arch == 'cascadepsp'
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in seeded_model.state_dict().items())
    save_checkpoint(tmp_path / 'ckpt.pth', loaded, iteration=3)
    assert read_checkpoint(tmp_path / 'ckpt.pth')['arch'] == 'cascadepsp'
    assert type(load_model(tmp_path / 'ckpt.pth')) is RefinementModule


def test_guided_filter_hand_computed():
    x = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4)
    # Top-left pixel, r = 1: the 2 x 2 window kept inside the image, (0 + 1 + 4 + 5) / 4.
    assert float(box_mean(x, 1)[0, 0, 0, 0]) == pytest.approx(2.5)
    assert float(box_mean(x, 1)[0, 0, 1, 1]) == pytest.approx(5.0)  # full 3 x 3 window around 5
    # A constant source stays constant; with the source as its own guide and eps -> 0 the filter is the identity.
    guide = torch.rand(1, 3, 17, 23, dtype=torch.float64)
    assert torch.allclose(guided_filter(guide, torch.full((1, 1, 17, 23), 0.3, dtype=torch.float64), 2, 1e-4),
                          torch.full((1, 1, 17, 23), 0.3, dtype=torch.float64))
    src = guide[:, :1]
    assert torch.allclose(guided_filter(src, src, 2, 1e-12), src, atol=1e-6)
    assert torch.allclose(guided_filter(guide, src, 2, 1e-12), src, atol=1e-5)  # colour guide holds the source
    # Several source channels share the guide's statistics and filter exactly as one at a time.
    srcs = torch.rand(1, 3, 17, 23, dtype=torch.float64)
    for g in (guide, src):
        assert torch.equal(guided_filter(g, srcs, 3, 1e-3),
                           torch.cat([guided_filter(g, srcs[:, k:k + 1], 3, 1e-3) for k in range(3)], 1))
    # Box sums near and past the borders (windows wider than the image), against a direct loop.
    for n, r in ((1, 0), (1, 3), (4, 1), (5, 2), (6, 7), (9, 4)):
        rows = torch.rand(1, 1, 1, n, dtype=torch.float64)
        direct = torch.stack([rows[..., max(0, i - r):i + r + 1].mean(-1) for i in range(n)], -1)
        assert torch.allclose(box_mean(rows, r), direct, atol=1e-12)


def test_fast_guided_filter():
    """guided_filter(step > 1), coefficients fitted at a coarser step: a constant source stays
    constant; on a piecewise-constant image it stays within a few hundredths of the full filter."""
    guide, src = torch.rand(1, 3, 30, 41, dtype=torch.float64), torch.rand(1, 2, 30, 41, dtype=torch.float64)
    with pytest.raises(ValueError, match='step'):
        guided_filter(guide, src, 4, 1e-3, step=0)
    flat = torch.full((1, 1, 30, 41), 0.7, dtype=torch.float64)
    assert torch.allclose(guided_filter(guide, flat, 8, 1e-3, step=4), flat)
    blocks = torch.nn.functional.interpolate((torch.rand(1, 1, 5, 7) > 0.5).double(), size=(60, 84))
    image = blocks.expand(1, 3, 60, 84) * 0.8 + 0.05 * torch.rand(1, 3, 60, 84, dtype=torch.float64)
    for r, step in ((4, 2), (8, 4)):
        assert float((guided_filter(image, blocks, r, 1e-3, step) - guided_filter(image, blocks, r, 1e-3))
                     .abs().mean()) < 0.02


def test_train_arch_lite_checkpoint_evaluates(tmp_path, tiny_data, train_args):
    tiny_data()
    assert train_cli.main(train_args('--arch', 'lite', '--arch_args', '{"widths": [8, 8, 16, 16, 16]}',
                                '--degradation', 'mix', '--local_pass', '1', '--schedule', 'cosine', '--warmup', '2',
                                '--holdout', '')) == 0
    final = next((tmp_path / 'saves').glob('*/checkpoint_final.pth'))
    data = read_checkpoint(final)
    assert data['arch'] == 'lite' and data['hparams']['widths'] == [8, 8, 16, 16, 16]
    assert data['config']['arch'] == 'lite' and data['config']['local_pass'] == 1.0
    assert isinstance(load_model(final), LiteRefinementModule)
    assert train_cli.main(train_args('--arch', 'lite', '--backbone', str(final))) == 2  # ImageNet init: RM only


def test_holdout_split_is_never_trained_on(data_dir):
    keys = read_split(VAL_SPLIT)
    assert len(keys) >= 300 and len(set(keys)) == len(keys)
    from dataset.readers import training_pairs
    from dataset.splits import exclude_split, pair_key
    pairs = training_pairs(data_dir, ['ecssd', 'DUTS-TE'])
    kept = exclude_split(pairs, VAL_SPLIT)
    assert len(pairs) - len(kept) == len(keys) and not {pair_key(p) for p in kept} & set(keys)


#: A real held-out pair (dataset/splits/val.txt) and the mBA gain over its coarse mask that the bundled
#: model was measured to give (README, "The bundled model"); the test asserts a margin below that.
HELD_OUT = 'ecssd/0004'  # the split's first pair
#: Measured with the bundled weights (the network and its arbiter) on HELD_OUT (2-core CPU): (mBA change from the
#: input, mBA minus the best of the nine guided-filter settings on this pair). The negative entry: on this pair a
#: tuned filter is still ahead on the x8 mask (over the 300 held-out pairs the model is ahead on every family).
MEASURED = {'lowres4': (0.043, 0.005), 'lowres': (0.062, -0.044), 'lowres16': (0.109, 0.005),
            'perturbed': (0.075, 0.044), 'jitter': (0.185, 0.077)}
SLACK = 0.01


@pytest.mark.parametrize('family', list(MEASURED))
def test_bundled_weights_on_a_held_out_pair(data_dir, family):
    """The bundled model against the input and a tuned guided filter, every benchmark family, at the margins
    measured when the weights shipped (a regression makes a margin fall by more than SLACK)."""
    from evaluation.learning import FILTER_SETTINGS, guided_filter_mask, model_method
    assert BUNDLED['lite'].is_file()
    assert HELD_OUT in read_split(VAL_SPLIT)
    (pair,) = [p for p in split_pairs(data_dir, VAL_SPLIT) if f'{p.image.parent.name}/{p.image.stem}' == HELD_OUT]
    image, gt = read_rgb(pair.image), np.where(read_grey(pair.mask) > 127, 255, 0).astype(np.uint8)
    coarse = coarse_mask(gt, family, HELD_OUT)
    score = score_image(HELD_OUT, gt, coarse, model_method(load_pretrained('lite'))(image, coarse))
    best_filter = max(score_image(HELD_OUT, gt, coarse, guided_filter_mask(image, coarse, eps, radius_per=per)).mask_mba
                      for per, eps in FILTER_SETTINGS)
    gain, over_filter = MEASURED[family]
    assert score.mask_mba - score.seg_mba >= gain - SLACK, (score.seg_mba, score.mask_mba)
    assert score.mask_mba - best_filter >= over_filter - SLACK, (best_filter, score.mask_mba)


def test_training_from_the_bundled_model_leaves_its_arbiter_out(tmp_path, tiny_data, train_args, caplog):
    """``--load lite`` (the bundled file carries an arbiter) starts a training run from the network alone: the
    arbiter was fitted on that network's outputs, so it is left out, with a log line, and no checkpoint of the
    new run carries it. Any other unexpected key is still an error."""
    tiny_data()
    with caplog.at_level('INFO'):
        assert train_cli.main(train_args('--arch', 'lite', '--load', 'lite', '--arch_args', '{"gf_radius": 2}',
                                         '-i', '1', '--holdout', '')) == 0
    assert 'left out 8 tensor(s) the model does not have: arbiter' in caplog.text
    data = read_checkpoint(next((tmp_path / 'saves').glob('*/checkpoint_final.pth')))
    assert data['hparams']['gf_radius'] == 2 and 'arbiter' not in data['hparams']
    assert not any(k.startswith('arbiter.') for k in data['model'])
    with pytest.raises(CheckpointError, match='unexpected keys'):
        load_weights(build_model('lite'), BUNDLED['lite'])
    with pytest.raises(CheckpointError, match='unexpected keys'):
        load_weights(build_model('lite'), BUNDLED['lite'], drop=('guide.',))
