"""Global+Local cascade: reference reproduction (module and eval.py), geometry, batching, edge cases."""
from __future__ import annotations

import copy
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
from methods.cascadepsp.config import CascadeConfig
from methods.cascadepsp.inference import crop_windows, refine
from inference.engine import prepare
from inference.predict import mask_tensor, refine_image
from inference.refiner import Refiner
from util.transforms import normalize_image


def _assert_close_to_reference(got: np.ndarray, expected: np.ndarray):
    # README tolerance: >= 99.9% of pixels within 1e-3, mean absolute difference < 1e-4.
    diff = np.abs(got.astype(np.float64) - expected)
    assert got.shape == expected.shape
    assert (diff <= 1e-3).mean() >= 0.999 and diff.mean() < 1e-4, (diff.max(), diff.mean())


def _case(ref, c):
    k = f'case{c}_'
    return (ref[k + 'image'], ref[k + 'mask'], int(ref[k + 'L']), int(ref[k + 'stride']),
            int(ref[k + 'global_only_min_size']))


@pytest.fixture(scope='session')
def cascade_ref(reference_dir):
    return np.load(reference_dir / 'cascade.npz')


@pytest.fixture(scope='module', params=['exact', 'fast'])
def engine_model(request, seeded_model):
    """The seeded network prepared by inference.engine with the authors' arithmetic (exact) and with the default
    cheaper one (folded batch norms, Winograd convolutions, reordered linear maps)."""
    return prepare(copy.deepcopy(seeded_model), 'cpu', exact=request.param == 'exact')


@pytest.mark.parametrize('c', [0, 1, 2])
@pytest.mark.slow
def test_module_reproduces_reference(engine_model, cascade_ref, c):
    seeded_model = engine_model
    image, mask, L, stride, min_size = _case(cascade_ref, c)
    cfg = CascadeConfig(L=L, stride=stride, batch=8)
    im, seg = normalize_image(image), mask_tensor(mask)
    refined = refine_image(seeded_model, im, seg, cfg)
    prob, crops = refined.probs, refined.stats['crops']
    _assert_close_to_reference(prob.numpy(), cascade_ref[f'case{c}_global_local'])
    assert crops > 0
    prob = refine_image(seeded_model, im, seg, replace(cfg, global_only=True, min_size=min_size)).probs
    _assert_close_to_reference(prob.numpy(), cascade_ref[f'case{c}_global_only'])


def test_crop_windows_hand_computed():
    # step = 82 - 32 = 50. Columns (w=249): 0, 50, 100, then 150 and 200 both shift to 149 (one kept).
    # Rows (h=120): 0, then 50 and 100 both shift to 20.
    wins = crop_windows(120, 249, L=100, stride=82, margin=16)
    assert [w.crop for w in wins] == [
        (0, 100, 0, 100), (20, 120, 0, 100), (0, 100, 50, 150), (20, 120, 50, 150),
        (0, 100, 100, 200), (20, 120, 100, 200), (0, 100, 149, 249), (20, 120, 149, 249)]
    # Margins are trimmed on sides away from the image border only.
    assert wins[3].keep == (36, 120, 66, 134) and wins[3].offset == (16, 16)
    assert wins[0].keep == (0, 84, 0, 84)
    assert wins[7].keep == (36, 120, 165, 249)
    # An image smaller than L: a single crop clamped at 0, nothing trimmed.
    (only,) = crop_windows(30, 41, L=64, stride=48)
    assert only.crop == only.keep == (0, 30, 0, 41)
    with pytest.raises(ValueError, match='stride'):
        crop_windows(100, 100, L=64, stride=32)
    with pytest.raises(ValueError, match='stride'):
        CascadeConfig(L=64, stride=32)


def _blob(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    mask = (((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1).astype(np.uint8) * 255
    return image, mask


def test_batched_crops_equal_one_at_a_time(seeded_model):
    image, mask = _blob(70, 103)
    im, seg = normalize_image(image), mask_tensor(mask)
    a = refine(seeded_model, im, seg, CascadeConfig(L=48, stride=64, batch=1))
    b = refine(seeded_model, im, seg, CascadeConfig(L=48, stride=64, batch=5))
    (one, n1), (many, n5) = (a.probs, a.stats['crops']), (b.probs, b.stats['crops'])
    assert n1 == n5 >= 3
    # Batched convolutions sum in another order: equal up to float32 rounding (README forward tolerance).
    torch.testing.assert_close(one, many, atol=1e-4, rtol=0)


class _Recording(torch.nn.Module):
    """A network that records which cascade inputs each call received."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls, self.arch = model, [], model.arch  # the Local step's defaults follow the arch

    def forward(self, image, mask, inter_s8=None, inter_s4=None, outputs=None):
        self.calls.append((inter_s8 is not None, inter_s4 is not None and torch.equal(inter_s4, inter_s8)))
        return self.model(image, mask, inter_s8, inter_s4, outputs)


def test_local_levels(seeded_model):
    """The Local step runs levels 2-3 (the authors') or level 3 alone on the global stride-4 map (lite's default)."""
    from models.registry import build_model
    from models.seeded import seed_model
    lite = seed_model(build_model('lite', widths=[8, 8, 16, 16, 16], psp_channels=16, up_channels=[8, 8]), 2).eval()
    with torch.no_grad():  # the input mask weighs in, so the global result has crops to refine
        lite.prior_scale.fill_(4.0)
    image, mask = _blob(70, 103)
    im, seg = normalize_image(image), mask_tensor(mask)
    runs = {}
    for name, model in (('lite', lite), ('cascadepsp', seeded_model)):
        for levels in (None, 1, 2):
            rec = _Recording(model)
            out = refine(rec, im, seg, CascadeConfig(L=48, stride=64, local_levels=levels))
            assert out.stats['crops'] >= 3 and len(rec.calls) == 1 + out.stats['crops']
            # The Global step runs all three levels; each crop gets inter_s8, and with one level inter_s4 = inter_s8.
            assert rec.calls[0] == (False, False)
            expected = levels or (1 if name == 'lite' else 2)  # the default: the architecture's
            assert set(rec.calls[1:]) == {(True, expected == 1)}
            runs[name, levels] = out.probs
    assert torch.equal(runs['lite', None], runs['lite', 1]) and not torch.equal(runs['lite', 1], runs['lite', 2])
    assert torch.equal(runs['cascadepsp', None], runs['cascadepsp', 2])
    with pytest.raises(ValueError, match='local_levels must be 1 or 2'):
        CascadeConfig(local_levels=3)


def test_local_stride_default(seeded_model):
    """Without --stride, the Local step steps the architecture's stride: the paper's 450 px for cascadepsp, 7/9 of
    L for lite; an explicit stride wins, and a results folder records the stride that ran."""
    from inference.folders import run_settings
    from models.registry import build_model
    from models.seeded import seed_model
    lite = seed_model(build_model('lite', widths=[8, 8, 16, 16, 16], psp_channels=16, up_channels=[8, 8]), 2).eval()
    with torch.no_grad():
        lite.prior_scale.fill_(4.0)
    assert CascadeConfig().local_stride(seeded_model) == 450 and CascadeConfig(L=600).local_stride(seeded_model) == 450
    assert CascadeConfig().local_stride(lite) == 700 and CascadeConfig(L=600).local_stride(lite) == 467
    assert CascadeConfig(stride=300).local_stride(lite) == 300
    assert CascadeConfig(L=32).local_stride(lite) == 33  # a step of at least one pixel past the margins
    assert CascadeConfig(compat='pip').local_stride(lite) == 450  # the package's L // 2
    image, mask = _blob(100, 150)
    im, seg = normalize_image(image), mask_tensor(mask)
    wide = dict(L=64, min_foreground=0.0, max_foreground=1.0)  # every crop runs, so the count is the tiling's
    default = refine(lite, im, seg, CascadeConfig(**wide))
    assert default.stats['crops'] == len(crop_windows(100, 150, 64, 50)) > len(crop_windows(100, 150, 64, 450))
    assert torch.equal(default.probs, refine(lite, im, seg, CascadeConfig(stride=50, **wide)).probs)
    assert run_settings(lite, CascadeConfig())['settings']['stride'] == 700
    assert run_settings(seeded_model, CascadeConfig())['settings']['stride'] == 450


@pytest.mark.parametrize('h,w,L', [(48, 64, 64), (5, 40, 32), (33, 20, 64)])
def test_edge_sizes(seeded_model, h, w, L):
    # exactly L (no resize), one side under 8 px, smaller than L and than the global-only minimum
    image, mask = _blob(h, w)
    im = normalize_image(image)
    for global_only in (False, True):
        prob = refine_image(seeded_model, im, mask_tensor(mask), CascadeConfig(L=L, stride=L + 16, global_only=global_only)).probs
        assert prob.shape == (1, 1, h, w) and torch.isfinite(prob).all()
        assert prob.min() >= 0 and prob.max() <= 1


def test_empty_and_full_masks(seeded_model):
    image, _ = _blob(40, 56)
    im = normalize_image(image)
    empty = mask_tensor(np.zeros((40, 56), np.uint8))
    refined = refine_image(seeded_model, im, empty, CascadeConfig(L=32, stride=40))
    prob, crops = refined.probs, refined.stats['crops']
    assert crops == 0 and torch.count_nonzero(prob) == 0
    full = mask_tensor(np.full((40, 56), 255, np.uint8))
    prob = refine_image(seeded_model, im, full, CascadeConfig(L=32, stride=40)).probs
    assert prob.shape == (1, 1, 40, 56) and torch.isfinite(prob).all()
    with pytest.raises(ValueError, match='differ in size'):
        refine_image(seeded_model, im, full[..., :-1])


@pytest.fixture(scope='session')
def seeded_checkpoint(seeded_model, tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'model'
    torch.save({'module.' + k: v for k, v in seeded_model.state_dict().items()}, path)  # released format
    return path


def _save(folder, name, image, mask, gt=None, ext='png'):
    Image.fromarray(image).save(folder / f'{name}_im.{ext}')
    Image.fromarray(mask).save(folder / f'{name}_seg.png')
    if gt is not None:
        Image.fromarray(gt).save(folder / f'{name}_gt.png')


def _assert_uint8_matches(path, expected_prob):
    got = np.asarray(Image.open(path))
    expected = np.floor(expected_prob[0, 0] * 255)
    diff = np.abs(got.astype(np.int64) - expected)
    assert got.dtype == np.uint8 and diff.max() <= 1 and (diff == 0).mean() > 0.999


def _copy_cases(cascade_ref, folder, cases):
    folder.mkdir()
    for c in cases:
        image, mask, *_ = _case(cascade_ref, c)
        _save(folder, f'case{c}', image, mask, gt=mask)


@pytest.mark.slow
def test_eval_cli_reproduces_reference(cascade_ref, seeded_checkpoint, tmp_path):
    model = ['--model', str(seeded_checkpoint), '--device', 'cpu']
    # Global+Local on case 1 (case 0, with the same code path, is covered by the module test).
    _, _, L, stride, _ = _case(cascade_ref, 1)
    _copy_cases(cascade_ref, tmp_path / 'in1', [1])
    out = tmp_path / 'out1'
    assert eval_cli.main(['--dir', str(tmp_path / 'in1'), '--output', str(out), '--L', str(L),
                          '--stride', str(stride), '--batch', '4', *model]) == 0
    _assert_uint8_matches(out / 'case1_mask.png', cascade_ref['case1_global_local'])
    assert np.array_equal(np.asarray(Image.open(out / 'case1_im.png')), cascade_ref['case1_image'])
    assert np.array_equal(np.asarray(Image.open(out / 'case1_seg.png')), cascade_ref['case1_mask'])
    assert np.array_equal(np.asarray(Image.open(out / 'case1_gt.png')), cascade_ref['case1_mask'])
    # Global-only on cases 0 and 2, which share L = 96 and the minimum size 64.
    assert [int(cascade_ref[f'case{c}_L']) for c in (0, 2)] == [96, 96]
    assert [int(cascade_ref[f'case{c}_global_only_min_size']) for c in (0, 2)] == [64, 64]
    _copy_cases(cascade_ref, tmp_path / 'in02', [0, 2])
    out = tmp_path / 'out02'
    assert eval_cli.main(['--dir', str(tmp_path / 'in02'), '--output', str(out), '--L', '96',
                          '--min_size', '64', '--global_only', *model]) == 0
    for c in (0, 2):
        _assert_uint8_matches(out / f'case{c}_mask.png', cascade_ref[f'case{c}_global_only'])


@pytest.mark.slow
def test_eval_cli_bad_inputs_skip_and_resume(seeded_checkpoint, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    src, out = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    image, mask = _blob(40, 52)
    _save(src, 'good', image, mask, ext='jpg')
    _save(src, 'grey', image[:, :, 0], mask)                              # grayscale image: converted
    Image.fromarray(np.dstack([image, np.full((40, 52), 255, np.uint8)])).save(src / 'rgba_im.png')
    Image.fromarray((mask.astype(np.uint16) * 257)).save(src / 'rgba_seg.png')  # RGBA image, 16-bit mask
    _save(src, 'mismatch', image, mask[:, :-3])                            # size mismatch
    (src / 'broken_im.png').write_bytes(b'not an image')                   # unreadable
    Image.fromarray(mask).save(src / 'broken_seg.png')
    Image.fromarray(image).save(src / 'lonely_im.png')                     # no partner mask
    Image.fromarray(mask).save(src / 'orphan_seg.png')                     # no partner image
    args = ['--dir', str(src), '--model', str(seeded_checkpoint), '--output', str(out), '--L', '32', '--stride', '40']
    assert eval_cli.main(args) == 1
    text = caplog.text
    assert 'mismatch_seg.png: size 49x40 differs' in text
    assert 'broken_im.png: cannot read image' in text
    assert 'lonely_im.png: no partner file lonely_seg.png' in text and 'orphan_seg.png: no partner image' in text
    for name in ('good', 'grey', 'rgba'):
        out_mask = np.asarray(Image.open(out / f'{name}_mask.png'))
        assert out_mask.shape == (40, 52) and out_mask.dtype == np.uint8
    assert not (out / 'mismatch_mask.png').exists() and not list(out.glob('.*tmp*'))
    # Re-running skips finished images; --overwrite redoes them.
    stamp = (out / 'good_mask.png').stat().st_mtime_ns
    caplog.clear()
    eval_cli.main(args)
    assert '3 already done' in caplog.text and (out / 'good_mask.png').stat().st_mtime_ns == stamp
    caplog.clear()
    eval_cli.main(args + ['--overwrite'])
    assert '3 image(s) refined' in caplog.text


def test_eval_cli_wrong_checkpoint(tmp_path, caplog):
    bad = tmp_path / 'model'
    torch.save({'module.conv.weight': torch.zeros(1)}, bad)
    assert eval_cli.main(['--dir', str(tmp_path), '--model', str(bad), '--output', str(tmp_path / 'o')]) == 2
    assert str(bad) in caplog.text and 'no known layout' in caplog.text and 'cascadepsp (keys such as' in caplog.text
    # A released-layout file that lacks a key is read as CascadePSP, and the strict check names what is wrong.
    from models import RefinementModule
    state = {f'module.{k}': v for k, v in RefinementModule().state_dict().items() if k != 'feats.layer2.0.conv1.weight'}
    torch.save(state, bad)
    caplog.clear()
    assert eval_cli.main(['--dir', str(tmp_path), '--model', str(bad), '--output', str(tmp_path / 'o')]) == 2
    assert str(bad) in caplog.text and 'missing keys (1)' in caplog.text


@pytest.mark.slow
def test_refiner_api(seeded_model, seeded_checkpoint):
    refiner = Refiner(seeded_checkpoint, device='cpu')
    image, mask = _blob(45, 61)
    soft = mask // 2 + 60  # soft input: binarised at 127 by the API
    out = refiner.refine(image, soft, L=32, stride=40)
    expected = refine_image(seeded_model, normalize_image(image), mask_tensor((soft > 127).astype(np.uint8) * 255),
                            CascadeConfig(L=32, stride=40)).probs
    assert out.dtype == np.uint8 and out.shape == (45, 61)
    assert np.abs(out.astype(int) - np.floor(expected[0, 0].numpy() * 255)).max() <= 1
    fast = refiner.refine(image, mask[:, :, None], fast=True, L=32)
    assert fast.shape == (45, 61)
    with pytest.raises(TypeError, match='uint8'):
        refiner.refine(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match='H x W x 3'):
        refiner.refine(image[:, :, 0], mask)
    with pytest.raises(ValueError, match='differ in size'):
        refiner.refine(image, mask[:-1])
    with pytest.raises(ValueError, match='not both'):
        Refiner(seeded_checkpoint, model=seeded_model)


@pytest.mark.parametrize('arch', ['cascadepsp', 'lite'])
def test_forward_computes_only_the_outputs_asked_for(arch):
    """``outputs`` narrows the forward pass to the keys the inference steps use, with the values of a full pass."""
    from models.registry import build_model
    from models.seeded import seed_model
    model = seed_model(build_model(arch, **({'widths': [8, 8, 16, 16, 16], 'psp_channels': 16, 'up_channels': [8, 8]}
                                            if arch == 'lite' else {})), 0).eval()
    g = torch.Generator().manual_seed(0)
    image, mask, inter = torch.randn(1, 3, 32, 48, generator=g), *(torch.rand(2, 1, 1, 32, 48, generator=g) * 2 - 1)
    with torch.inference_mode():
        for args, keys in (((), ('pred_224', 'pred_56_2')), ((inter,), ('pred_224',)), ((inter, inter), ('pred_224',))):
            full = model(image, mask, *args)
            narrow = model(image, mask, *args, outputs=keys)
            assert set(narrow) == set(keys)
            assert all(torch.equal(narrow[k], full[k]) for k in keys)
