"""CRM against the authors' outputs (``tests/reference/crm.*`` and the tolerances crm.json records): coordinates,
padding, chunked forward passes with feature reuse, the multi-scale loop through eval.py and eval_post.py,
the loss, and the released layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
import eval_post as eval_post_cli
from methods.crm.config import CRMConfig
from methods.crm.inference import decode_full, reflect_pad, refine
from methods.crm.loss import CRMLoss
from models.crm.network import make_coord
from models.registry import build_model
from models.seeded import seed_model
from util.gradient import GradientMagnitude
from util.transforms import normalize_image


@pytest.fixture(scope='module')
def crm_ref(reference_dir):
    return np.load(reference_dir / 'crm.npz'), json.loads((reference_dir / 'crm.json').read_text())


@pytest.fixture(scope='module')
def crm_model(crm_ref):
    z, _ = crm_ref
    return seed_model(build_model('crm'), int(z['seed'])).eval()


def test_released_layout(reference_dir):
    layout = json.loads((reference_dir / 'crm_state_dict_layout.json').read_text())
    state = build_model('crm').state_dict()
    assert [(layout['prefix'] + k, list(v.shape)) for k, v in state.items()] == [(k, s) for k, s, _ in layout['entries']]


def test_coordinates_exact(crm_ref):
    z, _ = crm_ref
    assert torch.equal(make_coord((5, 7)), torch.from_numpy(z['coord_5x7']))
    assert torch.equal(make_coord((5, 7), flatten=False), torch.from_numpy(z['coord_5x7_grid']))
    assert torch.equal(make_coord((5, 7), ranges=((0, 1), (-2, 2))), torch.from_numpy(z['coord_ranges_5x7']))
    assert torch.equal(make_coord((5, 7), flatten=False), torch.from_numpy(z['feat_coord_5x7']))


def test_padded_dataset(crm_ref):
    z, _ = crm_ref
    im = reflect_pad(normalize_image(z['dataset_image']), 32)[0]
    seg = reflect_pad(torch.from_numpy(z['dataset_seg']).float()[None, None] / 255 * 2 - 1, 32)[0]
    torch.testing.assert_close(im, torch.from_numpy(z['dataset_im_tensor']), atol=1e-6, rtol=0)
    torch.testing.assert_close(seg, torch.from_numpy(z['dataset_seg_tensor']), atol=1e-6, rtol=0)
    h, w = im.shape[-2:]
    assert torch.equal(make_coord((h, w)), torch.from_numpy(z['dataset_coord']))
    cell = torch.tensor([2 / h, 2 / w], dtype=torch.float32).expand(h * w, 2)
    assert torch.equal(cell, torch.from_numpy(z['dataset_cell']))


def test_reflect_padding_beyond_the_side_repeats_the_reflection():
    x = torch.arange(6.).view(1, 1, 2, 3)
    padded = reflect_pad(x, 4)  # torch refuses a pad >= the side
    assert padded.shape == (1, 1, 10, 11)
    row = np.pad(np.arange(3.), 4, mode='reflect')
    assert padded[0, 0, 4].tolist() == row.tolist()
    assert torch.equal(reflect_pad(torch.arange(20.).view(1, 1, 4, 5), 2),
                       torch.nn.functional.pad(torch.arange(20.).view(1, 1, 4, 5), (2,) * 4, mode='reflect'))


@pytest.mark.parametrize('case', [0, 1, 2])
def test_forward_chunked_with_feature_reuse(crm_ref, crm_model, case):
    z, ref = crm_ref
    info = ref['forward'][case]
    x, seg = torch.from_numpy(z[f'fw{case}_x']), torch.from_numpy(z[f'fw{case}_seg'])
    h, w = info['padded_hw']
    assert torch.equal(make_coord((h, w))[None], torch.from_numpy(z[f'fw{case}_coord']))
    captured = []
    # The decoder's last layer: its output is the MLP's, whichever way the first layer runs.
    hook = crm_model.imnet.layers[-1].register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    try:
        with torch.inference_mode():
            feat = crm_model.features(x, seg)
            logits = decode_full(crm_model, x, seg, (h, w), info['chunk'])
            x1, x2, x3 = crm_model.feats.stages(torch.cat((x, seg), 1))
    finally:
        hook.remove()
    assert list(feat.shape[-2:]) == info['feat_hw']
    torch.testing.assert_close(feat[:, :8], torch.from_numpy(z[f'fw{case}_feat_first8']), atol=1e-4, rtol=0)
    torch.testing.assert_close(feat.mean((0, 2, 3)), torch.from_numpy(z[f'fw{case}_feat_channel_mean']), atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, torch.from_numpy(z[f'fw{case}_out']), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.sigmoid(logits), torch.from_numpy(z[f'fw{case}_pred']), atol=3e-5, rtol=0)
    if case == 2:
        # The MLP's output for each of the four neighbours (4 per chunk, chunks in order).
        chunks = [captured[4 * c:4 * c + 4] for c in range(len(captured) // 4)]
        imnet = torch.cat([torch.stack([o.view(-1) for o in chunk]) for chunk in chunks], 1)
        torch.testing.assert_close(imnet[None], torch.from_numpy(z['fw2_imnet']), atol=1e-4, rtol=0)
        for name, t in (('x1', x1), ('x2', x2), ('x3', x3)):
            torch.testing.assert_close(t.mean((0, 2, 3)), torch.from_numpy(z[f'fw2_backbone_{name}_channel_mean']),
                                       atol=1e-4, rtol=0)


def _write_ms_folder(z, folder):
    folder.mkdir()
    for name in ('img1', 'img2', 'img3'):
        Image.fromarray(z[f'ms_{name}_image']).save(folder / f'{name}_im.png')
        Image.fromarray(z[f'ms_{name}_seg']).save(folder / f'{name}_seg.png')
        Image.fromarray(z[f'ms_{name}_gt']).save(folder / f'{name}_gt.png')


def test_multiscale_probabilities(crm_ref, crm_model):
    z, ref = crm_ref
    for name in ('img1', 'img2', 'img3'):
        image = normalize_image(z[f'ms_{name}_image'])
        coarse = torch.from_numpy(z[f'ms_{name}_seg']).float()[None, None] / 255
        refined = refine(crm_model, image, coarse, CRMConfig(chunk=ref['multiscale']['chunk']))
        assert list(refined.extra) == ['0.125', '0.25', '0.5', '1.0']
        for s, prob in refined.extra.items():
            expected = torch.from_numpy(z[f'ms_{name}_prob_{s}'])[0, 32:-32, 32:-32]
            diff = (prob[0, 0] - expected).abs()
            assert float(diff.max()) <= 1e-4 and float(diff.mean()) <= 1e-5, (name, s, float(diff.max()))
        assert torch.equal(refined.probs, refined.extra['1.0'])


def test_multiscale_through_eval_and_eval_post(crm_ref, crm_model, tmp_path):
    """A bare state dict in the released layout (``module.`` keys) is recognised as CRM by eval.py alone."""
    z, ref = crm_ref
    checkpoint = tmp_path / 'model_45705'
    torch.save({f'module.{k}': v for k, v in crm_model.state_dict().items()}, checkpoint)
    _write_ms_folder(z, tmp_path / 'in')
    out = tmp_path / 'out'
    assert eval_cli.main(['--dir', str(tmp_path / 'in'), '--output', str(out), '--model', str(checkpoint),
                          '--device', 'cpu', '--chunk', '4096']) == 0
    for name in ('img1', 'img2', 'img3'):
        for s in ('0.125', '0.25', '0.5', '1.0'):
            got = np.asarray(Image.open(out / f'{s}_{name}_mask.png')).astype(int)
            expected = z[f'ms_{name}_{s}_mask'].astype(int)
            assert (got == expected).mean() >= 0.999 and np.abs(got - expected).max() <= 1, (name, s)
        assert np.array_equal(np.asarray(Image.open(out / f'{name}_mask.png')),
                              np.asarray(Image.open(out / f'1.0_{name}_mask.png')))
    for s, text in ref['multiscale']['eval_post'].items():
        assert eval_post_cli.main(['--dir', str(out), '--mask_prefix', f'{s}_']) == 0
        summary = json.loads((out / f'{s}_results_post.json').read_text())['summary']
        expected = {k.strip(): float(v) for k, v in (line.split(':', 1) for line in text.splitlines())}
        for key, label in (('new_iou', 'New IoU'), ('old_iou', 'Old IoU'), ('new_mba', 'New mBA'),
                           ('old_mba', 'Old mBA'), ('small_objects', 'Number of small objects')):
            assert summary[key] == pytest.approx(expected[label], abs=1e-9), (s, key)


def test_loss_terms(crm_ref):
    z, ref = crm_ref
    out, gt = torch.from_numpy(z['loss_out']), torch.from_numpy(z['loss_gt'])
    sobel = GradientMagnitude()
    torch.testing.assert_close(sobel(gt), torch.from_numpy(z['loss_gt_sobel']), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sobel(torch.sigmoid(out)), torch.from_numpy(z['loss_pred_sobel']), atol=1e-6, rtol=1e-5)
    for key in ('readme', 'hyper_para_defaults'):
        w, expected = ref['loss'][key]['weights'], ref['loss'][key]['values']
        terms = CRMLoss(w['ce_weight'], w['l1_weight'], w['l2_weight'], w['grad_weight'])(out, gt)
        for name in ('ce_loss', 'l1_loss', 'l2_loss', 'grad_loss', 'total_loss'):
            assert float(terms[name]) == pytest.approx(expected[name], rel=1e-5), (key, name)
