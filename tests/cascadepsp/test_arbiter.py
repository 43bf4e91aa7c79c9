"""The arbiter (models/cascadepsp/arbiter.py): its band and features, where it changes the cascade's output, its
place in lite's checkpoints and in the procedure, and its training script end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from methods.cascadepsp.config import CascadeConfig
from methods.cascadepsp.inference import refine
from models.cascadepsp.arbiter import Arbiter
from models.checkpoint import load_model, save_checkpoint
from models.registry import build_model
from models.seeded import seed_model
from inference.predict import image_tensors

#: Without the evidence cues and the final filter (the defaults are the bundled arbiter's, with both).
PLAIN = dict(evidence=False, post_radius=0)

ROOT = Path(__file__).resolve().parents[2]


def _scene(h: int = 60, w: int = 80):
    """A dark square on a bright noisy background; the mask is the square shifted by 3 px, the 'network output'
    the square itself, softened."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(200, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    image[15:45, 20:60] = 40
    mask = np.zeros((h, w), bool)
    mask[18:48, 23:63] = True
    prob = np.zeros((h, w), np.float32)
    prob[15:45, 20:60] = 0.9
    return image, mask, prob


def _constant(arbiter: Arbiter, logit: float) -> Arbiter:
    """The arbiter with an MLP that outputs ``logit`` everywhere."""
    with torch.no_grad():
        for p in arbiter.mlp.parameters():
            p.zero_()
        arbiter.mlp[-1].bias.fill_(logit)
    return arbiter.eval()


def test_band_and_features():
    image, mask, prob = _scene()
    arbiter = Arbiter(**PLAIN)
    x, band = arbiter.features(image, mask, prob)
    assert x.shape == (arbiter.num_features, int(band.sum())) == (33, int(band.sum()))
    assert bool(torch.isfinite(x).all())
    # The band holds where the mask and the output disagree, and nothing far from both boundaries.
    assert band[16, 30] and band[46, 30] and not band[30, 40] and not band[2, 2]
    # The first two features are the logits of the mask and of the output (clipped at 0.005).
    ys, xs = np.nonzero(band)
    assert torch.allclose(x[0], torch.where(torch.from_numpy(mask[ys, xs]), 5.2933, -5.2933), atol=1e-4)
    no_stats = Arbiter(image_stats=False, **PLAIN)
    assert no_stats.features(image, mask, prob)[0].shape == (23, int(band.sum()))


def test_evidence_cues():
    """The image-evidence cues (a scene where a unit is 1 px, so the windows hold both sides of the mask): the
    output's boundary lies on the square's edges and the mask's in flat noise; the strip the mask adds below the
    square has the background's colour, and the strip it leaves out above it the foreground's."""
    image, mask, prob = _scene(120, 180)
    arbiter = Arbiter(post_radius=0)
    assert arbiter.hparams['evidence'] is True
    x, band = arbiter.features(image, mask, prob)
    assert x.shape == (38, int(band.sum())) and bool(torch.isfinite(x).all())
    assert torch.equal(x[:33], Arbiter(**PLAIN).features(image, mask, prob)[0])
    support_m, support_q, difference, placed, separation = x[33:]
    ys, xs = np.nonzero(band)

    def row(y: int) -> torch.Tensor:
        return torch.from_numpy((ys == y) & (xs > 25) & (xs < 55))
    assert float(support_q[row(44)].mean()) > 0.5 > float(support_m[row(44)].mean())  # the square's last row
    assert bool((difference[row(44)] > 0.3).all())
    assert float(placed[row(46)].abs().max()) < 0.3 and float(separation[row(46)].min()) > 0.3
    assert float((placed[row(16)] - 1).abs().max()) < 0.3


def test_forward_changes_the_band_only():
    image, mask, prob = _scene()
    arbiter = _constant(Arbiter(**PLAIN), 8.0)
    _, band = arbiter.features(image, mask, prob)
    out = arbiter(image, mask, prob)
    assert out.shape == prob.shape and out.dtype == np.float32
    assert np.array_equal(out[~band], prob[~band])
    assert np.allclose(out[band], 1 / (1 + np.exp(-8.0)))
    # Nothing to decide (every candidate agrees): the output comes back as it was.
    flat = np.zeros_like(prob)
    assert np.array_equal(arbiter(image, np.zeros_like(mask), flat), flat)


def test_final_filter():
    """``post_radius``: the arbitrated output is guided-filtered within the filter's reach of the band; beyond it
    the cascade's output comes back as it was. Above max_pixels it is fitted at a stride, close to the exact one."""
    image, mask, prob = _scene(120, 160)
    plain = _constant(Arbiter(**PLAIN), 3.0)(image, mask, prob)
    post = _constant(Arbiter(evidence=False, post_radius=0.5), 3.0)
    out = post(image, mask, prob)
    _, band = post.features(image, mask, prob)
    r = max(1, round(0.5 * 280 / 300))
    import cv2
    reach = cv2.dilate(band.astype(np.uint8), np.ones((4 * r + 1, 4 * r + 1), np.uint8)) > 0
    assert np.array_equal(out[~reach], prob[~reach]) and not np.allclose(out[band], plain[band])
    assert out.min() >= 0 and out.max() <= 1
    fast = _constant(Arbiter(evidence=False, post_radius=0.5, max_pixels=5000), 3.0)(image, mask, prob)
    assert np.abs(fast - out).mean() < 0.01 and ((fast > 0.5) != (out > 0.5)).mean() < 0.01
    for bad in (dict(post_radius=-1.0), dict(post_eps=0.0)):
        with pytest.raises(ValueError, match='post_radius'):
            Arbiter(**bad)


def test_large_images_fit_the_filters_at_a_stride():
    """Above max_pixels the filters are fitted at a stride (the fast guided filter) and evaluated around the band
    found there: close to the exact candidates, on nearly the same band."""
    image, mask, prob = _scene(120, 160)
    exact, band = Arbiter(**PLAIN).features(image, mask, prob)
    fast, band_fast = Arbiter(max_pixels=5000, **PLAIN).features(image, mask, prob)
    assert (band == band_fast).mean() > 0.97
    both = band & band_fast
    a = exact[:, both[band]]
    b = fast[:, both[band_fast]]
    assert torch.equal(a[:2], b[:2])  # the mask and the output themselves
    filtered = torch.sigmoid(a[2:20]) - torch.sigmoid(b[2:20])
    assert float(filtered.abs().mean()) < 0.05


def test_pieces_give_the_whole_images_values(monkeypatch):
    """Large images are worked on in pieces (strips of rows for the gradient, the distances, the candidates and
    the final filter; chunks of pixels for the features and the MLP): with pieces of a few hundred pixels, every
    value is the one-piece computation's, on both the exact and the strided path. ``in_place`` writes the same
    values into the output it was given."""
    import models.cascadepsp.arbiter as module
    image, mask, prob = _scene(120, 160)
    for max_pixels in (500_000, 5000):
        arbiter = seed_model(Arbiter(hidden=8, max_pixels=max_pixels), 3).eval()
        whole_x, whole_band = arbiter.features(image, mask, prob)
        whole = arbiter(image, mask, prob)
        with monkeypatch.context() as patch:
            patch.setattr(module, '_STRIP_PIXELS', 700)
            patch.setattr(module, '_MLP_PIXELS', 300)
            x, band = arbiter.features(image, mask, prob)
            pieces = arbiter(image, mask, prob)
        assert np.array_equal(band, whole_band) and torch.equal(x, whole_x) and np.array_equal(pieces, whole)
        given = prob.astype(np.float32)
        assert arbiter(image, mask, given, in_place=True) is given and np.array_equal(given, whole)
    with pytest.raises(ValueError, match='float32'):
        arbiter(image, mask, prob.astype(np.float64), in_place=True)


def _tiny_lite(arbiter: Arbiter | None = None):
    model = seed_model(build_model('lite', widths=[8, 8, 16, 16, 16], psp_channels=16, up_channels=[8, 8]), 2)
    with torch.no_grad():
        model.prior_scale.fill_(4.0)
    model.set_arbiter(arbiter)
    return model.eval()


def test_lite_checkpoint_carries_the_arbiter(tmp_path):
    plain = _tiny_lite()
    assert 'arbiter' not in plain.hparams and plain.arbiter is None
    arbiter = seed_model(Arbiter(hidden=8, **PLAIN), 3)
    model = _tiny_lite(arbiter)
    assert model.hparams['arbiter']['hidden'] == 8
    save_checkpoint(tmp_path / 'a.pth', model)
    loaded = load_model(tmp_path / 'a.pth')
    assert loaded.hparams == model.hparams and isinstance(loaded.arbiter, Arbiter)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    model.set_arbiter(None)
    assert model.hparams == plain.hparams and 'arbiter.mean' not in model.state_dict()


def test_refine_runs_the_arbiter():
    image, mask, _ = _scene(64, 96)
    im, seg = image_tensors(image, mask.astype(np.uint8) * 255)
    cfg = CascadeConfig(L=48, stride=40)
    plain = refine(_tiny_lite(), im, seg, cfg).probs
    model = _tiny_lite(_constant(Arbiter(**PLAIN), 8.0))
    assert torch.equal(refine(model, im, seg, CascadeConfig(L=48, stride=40, arbiter=False)).probs, plain)
    arbitrated = refine(model, im, seg, cfg).probs
    _, band = model.arbiter.features(image, mask, plain[0, 0].numpy())
    assert band.any() and torch.equal(arbitrated[0, 0][~torch.from_numpy(band)], plain[0, 0][~torch.from_numpy(band)])
    on_band = arbitrated[0, 0][torch.from_numpy(band)]
    assert torch.allclose(on_band, torch.tensor(1 / (1 + np.exp(-8.0)), dtype=torch.float32))
    # Not after the Global step alone (the fast mode).
    fast = CascadeConfig(L=48, global_only=True)
    assert torch.equal(refine(model, im, seg, fast).probs, refine(_tiny_lite(), im, seg, fast).probs)
    # A normalised float image gives the same result as the uint8 one.
    from util.transforms import normalize_image
    assert torch.allclose(refine(model, normalize_image(image), seg, cfg).probs, arbitrated, atol=1e-5)


def _train_arbiter():
    from scripts import train_arbiter
    return train_arbiter


def test_train_arbiter_end_to_end(tmp_path, tiny_data):
    root = tiny_data(n=4, size=(48, 64))
    save_checkpoint(tmp_path / 'lite.pth', _tiny_lite())
    script = _train_arbiter()
    out = tmp_path / 'lite_arbiter.pth'
    args = ['--data_root', str(root), '--sources', 'ecssd', '--images', '4', '--samples', '50', '--epochs', '2',
            '--hidden', '8', '--output', str(out)]
    assert script.main(['--model', str(tmp_path / 'lite.pth'), *args, '--half', '--evidence', '--post_radius', '0.5']) == 0
    model = load_model(out)
    assert model.arbiter.evidence and model.arbiter.post_radius == 0.5 and model.arbiter.num_features == 38
    data = torch.load(out, weights_only=False)
    assert data['model']['arbiter.mlp.0.weight'].dtype == torch.float16
    assert data['note'] == 'arbiter: 4 images, seed 1, evidence True, post_radius 0.5, ' + data['note'].split(', ')[-1]
    assert isinstance(model.arbiter, Arbiter) and model.hparams['arbiter']['hidden'] == 8
    assert bool(torch.isfinite(model.arbiter.mean).all()) and float(model.arbiter.std.min()) > 0
    recipe = torch.load(out, weights_only=False)['arbiter_recipe']
    assert recipe['images'] == 4 and len(recipe['losses']) == 2 and all(np.isfinite(recipe['losses']))
    # The network's weights are the input checkpoint's (stored in float16 here).
    source = load_model(tmp_path / 'lite.pth').state_dict()
    assert all(torch.equal(v.half().float(), model.state_dict()[k].float()) for k, v in source.items())
    # Refitting a network that has an arbiter replaces it, and its line in the note.
    assert script.main(['--model', str(out), *args, '--output', str(tmp_path / 'again.pth'), '--no-evidence',
                        '--families', 'lowres_near=2', 'identity=1']) == 0
    again = torch.load(tmp_path / 'again.pth', weights_only=False)
    assert again['note'].count('arbiter:') == 1 and 'evidence False' in again['note']
    assert again['arbiter_recipe']['families'] == {'lowres_near': 2.0, 'identity': 1.0}
    # Families: jitter stays out of training, names must exist, weights must be positive and numbers.
    for bad in (['jitter=1'], ['nearly=1'], ['identity=0'], ['identity']):
        with pytest.raises(SystemExit):  # a usage error, before any work
            script.main(['--model', str(out), *args, '--output', str(tmp_path / 'bad.pth'), '--families', *bad])
    assert not (tmp_path / 'bad.pth').exists()
    # The input checkpoint is never written over.
    before = (tmp_path / 'lite.pth').read_bytes()
    assert script.main(['--model', str(tmp_path / 'lite.pth'), *args, '--output', str(tmp_path / 'lite.pth')]) == 2
    assert (tmp_path / 'lite.pth').read_bytes() == before
    # An architecture without an arbiter is refused.
    save_checkpoint(tmp_path / 'crm.pth', build_model('crm', encoder='compact'))
    assert script.main(['--model', str(tmp_path / 'crm.pth'), *args]) == 2


def test_lite_preset_ends_with_the_arbiter(tmp_path, tiny_data):
    """``train.py --preset lite``'s last stage fits the arbiter on the stage-2 network (here: any lite file)."""
    import shutil

    import train as train_cli
    from methods.cascadepsp.arbiter_recipe import ArbiterConfig
    from methods.cascadepsp.presets import PRESETS
    assert [s.name for s in PRESETS['lite']] == ['stage1', 'stage2', 'arbiter']
    root = tiny_data(n=2, size=(48, 64))
    shutil.copytree(root / 'ecssd', root / 'DUTS-TE')  # the preset's sources
    save_checkpoint(tmp_path / 'stage2.pth', _tiny_lite())
    assert train_cli.main(['tiny', '--preset', 'lite', '--stage', 'arbiter', '--load', str(tmp_path / 'stage2.pth'),
                           '--data_root', str(root), '--save_dir', str(tmp_path / 'saves')]) == 0
    final = tmp_path / 'saves' / 'RUN_tiny_arbiter' / 'checkpoint_final.pth'
    model = load_model(final)
    assert isinstance(model.arbiter, Arbiter)
    recipe = torch.load(final, weights_only=False)['arbiter_recipe']
    shipped = torch.load(ROOT / 'models' / 'weights' / 'lite.pth', weights_only=False)['arbiter_recipe']
    for key in ('images', 'samples', 'epochs', 'hidden', 'seed', 'evidence', 'post_radius', 'families'):
        assert recipe[key] == shipped[key] == getattr(ArbiterConfig(), key), key  # one home: the shipped recipe
    assert model.arbiter.evidence and model.arbiter.post_radius == 0.5


def test_gradient_by_strips_is_the_whole_image_gradient(monkeypatch):
    """Large images: the arbiter's Sobel magnitude is computed by strips of rows (bounded memory); every value is
    the whole-image computation's, at the image's edges and between strips."""
    import cv2
    from models.cascadepsp import arbiter as arbiter_module
    rng = np.random.default_rng(0)
    monkeypatch.setattr(arbiter_module, '_STRIP_PIXELS', 5000)
    for h, w in ((301, 97), (7, 2600), (2, 6000)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        assert np.array_equal(arbiter_module._gradient_magnitude(rgb), np.sqrt(gx * gx + gy * gy)), (h, w)


def test_segmenter_masks_join_the_mix_by_their_share(tiny_data, caplog):
    """The arbiter recipe's ``mediapipe`` family: the segmenter's masks of the training pairs where they exist
    with IoU >= 0.6 (``DATA/mediapipe/SOURCE/STEM.png`` and ``iou.tsv``), for their share of the weights; where
    fewer exist than asked, synthetic families fill in, with a warning."""
    import shutil

    from dataset.readers import training_pairs
    from dataset.segmenter_masks import segmenter_mask, with_segmenter_masks
    from methods.cascadepsp.arbiter_recipe import assign
    root = tiny_data(n=6)
    pairs = training_pairs(str(root), ['ecssd'])
    folder = root / 'mediapipe' / 'ecssd'
    folder.mkdir(parents=True)
    ious = {'0': 0.9, '1': 0.7, '2': 0.5, '3': 0.95}  # 2 is below the bar; 4 and 5 have no mask
    for stem in ious:
        shutil.copy(root / 'ecssd' / f'{stem}.png', folder / f'{stem}.png')
    (folder / 'iou.tsv').write_text('name\tiou\n' + ''.join(f'{k}\t{v}\n' for k, v in ious.items()))
    assert [p.image.stem for p in with_segmenter_masks(pairs)] == ['0', '1', '3']
    assert segmenter_mask(pairs[0]) == folder / '0.png'
    items = assign(pairs, 6, {'identity': 1, 'mediapipe': 1}, np.random.default_rng(0))
    segmented = sorted(p.image.stem for p, family in items if family == 'mediapipe')
    assert len(items) == 6 and segmented == ['0', '1', '3'] and not caplog.records
    items = assign(pairs, 6, {'identity': 1, 'mediapipe': 3}, np.random.default_rng(0))  # asks for 4.5 -> 4
    assert sum(family == 'mediapipe' for _, family in items) == 3 and len(items) == 6
    assert '3 of the 4 mediapipe masks' in caplog.text
