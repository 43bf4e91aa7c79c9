"""MagNet against the authors' outputs (``tests/reference/magnet.*`` and the tolerances magnet.json records): every module's
forward, the helpers and ``roi_align``, the data, the metrics, the OHEM loss and a training step, both scaled-down
pipelines stage by stage (with the stored points injected, and without), and the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
from dataset.magnet import CITYSCAPES, DATASETS, DEEPGLOBE, map_class_ids, random_pair, multiscale_patches
from evaluation.confusion import confusion_matrix, iou_scores
from methods.magnet.config import MagNetConfig
from methods.magnet.geometry import (calculate_certainty, ensemble, get_patch_coords,
                                     get_uncertain_point_coords_on_grid, median_blur, point_sample, roi_align)
from methods.magnet.inference import progressive
from methods.magnet.loss import OhemCrossEntropy
from methods.magnet.recipe import training_step
from models.checkpoint import load_model
from models.magnet.fpn import ResnetFPN
from models.magnet.hrnet_ocr import HRNetOCR
from models.magnet.refinement import RefinementMagNet
from models.magnet.system import MagNetSystem
from models.seeded import seed_model, seeded_state_dict
from util.transforms import normalize_image


@pytest.fixture(scope='module')
def ref(reference_dir):
    return np.load(reference_dir / 'magnet.npz'), json.loads((reference_dir / 'magnet.json').read_text())


def T(z, key: str) -> torch.Tensor:
    return torch.from_numpy(z[key])


def _image(u8: np.ndarray) -> torch.Tensor:
    return normalize_image(torch.from_numpy(u8).permute(2, 0, 1)[None])


@pytest.mark.parametrize('name, build', [('refinement_cityscapes', lambda: RefinementMagNet(19)),
                                         ('refinement_deepglobe', lambda: RefinementMagNet(7)),
                                         ('backbone_cityscapes', lambda: HRNetOCR(19)),
                                         ('backbone_deepglobe', lambda: ResnetFPN(7))])
def test_released_layouts(reference_dir, tmp_path, name, build):
    layout = json.loads((reference_dir / 'magnet_state_dict_layouts.json').read_text())[name]
    model = build()
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == [(k, s) for k, s, _ in layout['entries']]
    state = seeded_state_dict(model, 0)
    if 'released_layout' in layout:  # FullModel(model, loss): 'model.' on every key, then the loss's weights
        extra = layout['released_layout']['then_appended'][0]
        state = {**{'model.' + k: v for k, v in state.items()}, extra[0]: torch.ones(extra[1])}
    torch.save(state, tmp_path / 'released.pth')
    loaded = load_model(tmp_path / 'released.pth')  # recognised by its keys; the classes from its shapes
    assert type(loaded) is type(model) and loaded.hparams['num_classes'] == model.hparams['num_classes']


def test_refinement_forward(ref):
    z, j = ref
    for tag, seed in (('cs', 4), ('dg', 5)):
        model = seed_model(RefinementMagNet(j['forward'][f'refine_{tag}']['n_classes']), seed).eval()
        with torch.no_grad():
            logits = model(T(z, f'refine_{tag}_fine'), T(z, f'refine_{tag}_coarse'))
        assert (logits - T(z, f'refine_{tag}_logits')).abs().max() < 1e-5
        assert (logits.softmax(1) - T(z, f'refine_{tag}_logits').softmax(1)).abs().max() < 1e-6


#: (backbone, classes, logit bound (absolute, or relative to the largest logit), probability bound): MAGNET.md §11.
BACKBONE_CASES = [('fpn', lambda: ResnetFPN(7), 2e-4, 0.0, 5e-5), ('hrnet', lambda: HRNetOCR(19), 5e-2, 5e-4, 2e-4)]


@pytest.mark.parametrize('tag, build, atol, rtol, prob_tol', BACKBONE_CASES)
def test_backbone_forward(ref, tag, build, atol, rtol, prob_tol):
    z, _ = ref
    model = seed_model(build(), 0).eval()
    for case in (0, 1):
        with torch.no_grad():
            logits = model(_image(z[f'{tag}_case{case}_image']))
        expected = T(z, f'{tag}_case{case}_logits')
        assert (logits - expected).abs().max() < max(atol, rtol * expected.abs().max())
        assert (logits.softmax(1) - expected.softmax(1)).abs().max() < prob_tol
        assert torch.equal(logits.argmax(1), expected.argmax(1))


def test_hrnet_auxiliary_output(ref):
    z, _ = ref
    model = seed_model(HRNetOCR(19), 0).eval()
    with torch.no_grad():
        _, aux = model(_image(z['hrnet_case0_image']), return_auxiliary=True)
    assert (aux - T(z, 'hrnet_case0_aux')).abs().max() < 5e-2


def test_helpers(ref):
    z, j = ref
    g = j['geometry']
    assert torch.equal(calculate_certainty(T(z, 'cert_probs')), T(z, 'cert_out'))
    for case in g['get_uncertain_point_coords_on_grid']:
        if 'raises' in case:  # a float k: TypeError in theirs (Q7); the pipeline passes an int (see n_points)
            continue
        tag = case['tag']
        index, coords = get_uncertain_point_coords_on_grid(T(z, f'gu_{tag}_map'), case['k'])
        for mine, theirs in zip(index, T(z, f'gu_{tag}_indices')):  # the order does not matter downstream
            assert sorted(mine.tolist()) == sorted(theirs.tolist())
        for mine, theirs in zip(coords, T(z, f'gu_{tag}_coords')):
            assert sorted(map(tuple, mine.tolist())) == sorted(map(tuple, theirs.tolist()))
    assert torch.equal(point_sample(T(z, 'ps_input'), T(z, 'ps_coords')), T(z, 'ps_out'))
    assert torch.equal(point_sample(T(z, 'ps_input'), T(z, 'ps_coords4d')), T(z, 'ps_out4d'))
    for case in g['ensemble']:
        tag = case['tag']
        out, mask = ensemble(T(z, f'ens_{tag}_patches'), T(z, f'ens_{tag}_ratios'), tuple(case['output_size_wh']))
        assert torch.equal(out, T(z, f'ens_{tag}_out')) and torch.equal(mask, T(z, f'ens_{tag}_mask'))
    for case in g['median_blur']:
        if 'raises' in case or 'result' in case:
            continue
        assert torch.equal(median_blur(T(z, f'blur_{case["tag"]}_in'), case['kernel']), T(z, f'blur_{case["tag"]}_out'))
    for case in g['get_patch_coords']:
        ratios = get_patch_coords(tuple(case['scale_wh']), tuple(case['crop_wh']))
        assert ratios == [tuple(r) for r in case['ratios_xyxy']]
        assert torch.equal(torch.tensor(ratios, dtype=torch.float32), torch.tensor(case['ratios_as_float32']))


def test_even_median_kernel_keeps_the_size():
    x = torch.rand(1, 2, 12, 16)
    for k in (4, 16):  # the authors' view() fails or scrambles (Q9)
        out = median_blur(x, k)
        assert out.shape == x.shape
    assert torch.equal(median_blur(torch.ones(1, 1, 9, 9), 4)[..., 2:7, 2:7], torch.ones(1, 1, 5, 5))


@pytest.mark.parametrize('tag', ['tiles_same_size', 'tiles_downscale', 'train_upscale', 'borders', 'odd_bins'])
def test_roi_align(ref, tag):
    z, j = ref
    case = next(c for c in j['geometry']['roi_align'] if c['tag'] == tag)
    boxes = [T(z, f'roi_{tag}_boxes{i}') for i in range(case['n_box_tensors'])]
    out = roi_align(T(z, f'roi_{tag}_input'), boxes, tuple(case['output_size_hw']))
    assert (out - T(z, f'roi_{tag}_out')).abs().max() < 1e-5


def test_data(ref):
    z, j = ref
    for tag, spec in (('cs', CITYSCAPES), ('dg', DEEPGLOBE)):
        d = j['dataset'][f'data_{tag}']
        patches, scale_idx = multiscale_patches(z[f'scene_{tag}_image'], [tuple(s) for s in d['scales_wh']],
                                          tuple(d['crop_size_wh']), tuple(d['input_size_wh']))
        assert np.array_equal(patches, z[f'data_{tag}_patches_u8'])
        assert np.array_equal(scale_idx, z[f'data_{tag}_scale_idx'])
        labels, unknown = map_class_ids(z[f'scene_{tag}_label_file'], spec)
        assert np.array_equal(labels.astype(np.uint8), z[f'data_{tag}_label'])
        assert unknown == (30 if tag == 'dg' else 0)  # the dg scene has 30 off-palette pixels
    assert np.array_equal(map_class_ids(z['labelmap_cs_in'], CITYSCAPES)[0].astype(np.uint8), z['labelmap_cs_out'])
    assert np.array_equal(map_class_ids(z['labelmap_dg_in_rgb'], DEEPGLOBE)[0].astype(np.uint8), z['labelmap_dg_out'])


class _Draws:
    """Replays the authors' recorded draws: the fine scale (Python random) and x, y (numpy)."""

    def __init__(self, draw: dict) -> None:
        self.scale, self.xy = tuple(draw['fine_scale_wh']), [draw['x'], draw['y']]

    def choice(self, _):
        return self.scale

    def randint(self, low, high):
        value = self.xy.pop(0)
        assert low <= value < high
        return value


def test_training_samples(ref):
    z, j = ref
    for tag, spec in (('cs', CITYSCAPES), ('dg', DEEPGLOBE)):
        s = j['training']['samples'][tag]
        for i, draw in enumerate(s['draws']):
            draws = _Draws(draw)
            pair = random_pair(z[f'scene_{tag}_image'], z[f'scene_{tag}_label_file'],
                               [tuple(x) for x in s['scales_used_for_fine']], tuple(s['crop_size_wh']),
                               tuple(s['input_size_wh']), draws, draws)
            pre = f'trainsample_{tag}_{i}_'
            assert np.array_equal(pair.coarse, z[pre + 'coarse_u8']) and np.array_equal(pair.fine, z[pre + 'fine_u8'])
            assert np.array_equal(map_class_ids(pair.fine_label, spec)[0].astype(np.uint8), z[pre + 'fine_label'])
            assert np.array_equal(pair.coord, z[pre + 'coord'])


def test_metrics(ref):
    z, j = ref
    for m in j['metrics']:
        tag = m['tag']
        if not (tag.endswith('_c0') or tag.endswith('_c1')):
            continue
        matrix = confusion_matrix(z[f'metric_{tag}_label'], z[f'metric_{tag}_pred'], m['n'], m['ignore_label'])
        assert np.array_equal(matrix, z[f'metric_{tag}_cm'])
        scores = iou_scores(matrix, DATASETS[m['dataset']].mean_from)
        assert np.allclose(scores['IoU'], m['IoU'], rtol=0, atol=1e-12)
        assert np.allclose(scores['freq'], m['freq'], rtol=0, atol=1e-12)
        assert abs(scores['mIoU'] - m['mean_iou']) < 1e-12 and abs(scores['fwIoU'] - m['freq_iou']) < 1e-12
        if tag.endswith('_c0'):
            mask = np.zeros(z[f'metric_{tag}_label'].shape, bool)
            mask[..., 10:30, 5:50] = True
            assert np.array_equal(confusion_matrix(z[f'metric_{tag}_label'], z[f'metric_{tag}_pred'], m['n'],
                                                   m['ignore_label'], mask), z[f'metric_{tag}_cm_masked'])
    for tag in ('cs', 'dg'):
        total = z[f'metric_{tag}_c0_cm'] + z[f'metric_{tag}_c1_cm']
        m = next(x for x in j['metrics'] if x['tag'] == f'{tag}_sum')
        scores = iou_scores(total, 1 if tag == 'dg' else 0)
        assert np.allclose(scores['IoU'], m['IoU'], atol=1e-12) and abs(scores['mIoU'] - m['mean_iou']) < 1e-12
    assert iou_scores(np.zeros((19, 19)))['mIoU'] == 0.0  # all ignored: 0, as theirs (their fwIoU raises)


def test_ohem_loss(ref):
    z, j = ref
    for case in j['loss']:
        tag = case['tag']
        if 'raises' in case:  # an all-ignored batch: IndexError in theirs, a clear error here
            with pytest.raises(ValueError, match='ignored'):
                OhemCrossEntropy(255)(torch.zeros(1, 19, 4, 4), torch.full((1, 4, 4), 255))
            continue
        loss_fn = OhemCrossEntropy(case['ignore_label'], case['thres'], case['min_kept'])
        loss = loss_fn(T(z, f'loss_{tag}_score'), T(z, f'loss_{tag}_target').long())
        assert abs(loss.item() - case['loss']) <= 1e-5 * abs(case['loss'])


def test_training_step(ref):
    z, j = ref
    step = j['training']['step']
    backbone = seed_model(HRNetOCR(19), step['backbone_seed']).eval()
    refinement = seed_model(RefinementMagNet(19), step['refinement_initial_weights_seed']).train()
    images = lambda u8: normalize_image(torch.from_numpy(u8).permute(0, 3, 1, 2))  # noqa: E731
    batch = (images(z['train_coarse_u8']), images(z['train_fine_u8']), T(z, 'train_fine_label').long(),
             T(z, 'train_coord'))
    cfg = step['config_json']
    optimizer = torch.optim.SGD(refinement.parameters(), lr=cfg['lr'], momentum=cfg['momentum'],
                                weight_decay=cfg['decay'])
    loss, outputs = training_step(refinement, backbone, batch, OhemCrossEntropy(255))
    assert abs(loss.item() - step['loss']) <= 1e-5 * step['loss']
    assert np.abs(outputs['crops'].double().sum((2, 3)).numpy() - z['train_crop_preds_sum']).max() < 1e-2
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    state = refinement.state_dict()
    by_name = {k.replace('.', '_'): k for k in state}
    checked = 0
    for key in z.files:
        if key.startswith('train_after_'):
            name = by_name[key[len('train_after_'):]]
            assert (state[name].double() - T(z, key).double()).abs().max() < 1e-5, name
            checked += 1
    assert checked == 8 and int(state['bn0.num_batches_tracked']) == step['num_batches_tracked_after']


def _system(j: dict, name: str) -> MagNetSystem:
    p = j['pipeline'][name]
    system = MagNetSystem(p['model'], p['num_classes'], len(p['refine_seeds']))
    seed_model(system.backbone, j['weight_seeds']['hrnet18_ocr' if name == 'cs' else 'fpn'])
    for module, seed in zip(system.refinements, p['refine_seeds']):
        seed_model(module, seed)
    return system.eval()


def _config(j: dict, name: str, run: str) -> MagNetConfig:
    p, r = j['pipeline'][name], j['pipeline'][name]['runs'][run]
    return MagNetConfig(scales=p['scales'], crop_size=p['crop_size'], input_size=p['input_size'],
                        n_patches=r['n_patches'], n_points=r.get('n_points') or 1, smooth_kernel=p['smooth_kernel'])


PIPELINES = [('cs', 'magnet'), ('cs', 'fast'), ('cs', 'fast_intpoints'), ('cs', 'baseline'),
             ('dg', 'magnet'), ('dg', 'fast'), ('dg', 'baseline')]


@pytest.mark.parametrize('name, run', PIPELINES)
def test_pipeline_with_the_stored_points(ref, name, run):
    """Every stage, with the authors' point indices injected where their result hangs on topk ties (§7.3)."""
    z, j = ref
    trace: list[dict] = []
    pick = lambda stage, error, k: T(z, f'pipe_{name}_{run}_s{stage}_point_indices').long()  # noqa: E731
    refined, coarse = progressive(_system(j, name), z[f'scene_{name}_image'], _config(j, name, run), pick, trace)
    assert np.array_equal(coarse.argmax(1)[0].numpy(), z[f'pipe_{name}_coarse_label_full'])
    stages = j['pipeline'][name]['runs'][run]['stages']
    assert len(trace) == len(stages)
    for s, (t, info) in enumerate(zip(trace, stages), start=1):
        pre = f'pipe_{name}_{run}_s{s}_'
        assert t['selected_ids'].tolist() == z[pre + 'selected_ids'].tolist() == info['selected_ids']
        assert t['k'] == info['n_points']
        assert (t['patch_uncertainty'] - T(z, pre + 'patch_uncertainty')).abs().max() < 1e-5
        # Per-patch, per-class sums of the backbone's patch predictions, the coarse crops and the refined
        # patches. MAGNET.md says 1e-3; our backbones' float32 noise (logits within their tolerances, and
        # 2-3x further from the authors' float32 than float64 is) sums to up to 1.1e-2 over a 2048-pixel
        # patch, so the bound here is 1e-3 or 1e-5 per pixel of the patch, whichever is larger.
        bound = max(1e-3, 1e-5 * t['early'].shape[-1] * t['early'].shape[-2])
        for what in ('early', 'crops', 'refined'):
            key = {'early': 'early_sum', 'crops': 'coarse_crops_sum', 'refined': 'refined_sum'}[what]
            assert np.abs(t[what].double().sum((2, 3)).numpy() - z[pre + key]).max() < bound, what
        assert torch.equal(t['mask'], T(z, pre + 'mask'))
        assert (t['error_raw'] - T(z, pre + 'error_raw')).abs().max() < 1e-5
        assert (t['error_small_blurred'] - T(z, pre + 'error_small_blurred')).abs().max() < 1e-5
        if pre + 'kept' in z.files:
            assert torch.equal(t['kept'], T(z, pre + 'kept').bool())
        if pre + 'out_label' in z.files:
            assert np.array_equal(t['probs'].argmax(1)[0].numpy(), z[pre + 'out_label'])
            assert (t['probs'].max(1).values[0] - T(z, pre + 'out_top1')).abs().max() < 1e-4
    assert np.array_equal(refined.argmax(1)[0].numpy(), z[f'pipe_{name}_{run}_final_label'])
    assert (refined.max(1).values[0] - T(z, f'pipe_{name}_{run}_final_top1')).abs().max() < 1e-4


@pytest.mark.parametrize('name, run', PIPELINES)
def test_pipeline_with_our_own_points(ref, name, run):
    """Our torch.topk on our float32 error map: every point above the k-th value is theirs; labels agree
    (§11: MagNet >= 99.5%, Fast >= 99%)."""
    z, j = ref
    trace: list[dict] = []
    refined, _ = progressive(_system(j, name), z[f'scene_{name}_image'], _config(j, name, run), trace=trace)
    for s, t in enumerate(trace, start=1):
        theirs = set(z[f'pipe_{name}_{run}_s{s}_point_indices'].tolist())
        error = t['error_small_blurred']  # the top-k runs on its nearest upsampling
        full = torch.nn.functional.interpolate(error[None, None], size=t['mask'].shape)[0, 0].flatten()
        kth = full.topk(t['k']).values[-1]
        above = set(torch.nonzero(full > kth).flatten().tolist())
        assert above <= theirs and above <= set(t['point_indices'].tolist())
    agreement = (refined.argmax(1)[0].numpy() == z[f'pipe_{name}_{run}_final_label']).mean()
    assert agreement >= (0.995 if run in ('magnet', 'baseline') else 0.99)


def test_deepglobe_through_the_command_line(ref, tmp_path):
    """The hidden case's form: eval.py --method magnet with seeded files in the released layouts."""
    z, j = ref
    backbone = seeded_state_dict(ResnetFPN(7), 0)
    torch.save({**{'model.' + k: v for k, v in backbone.items()}, 'loss.criterion.weight': torch.ones(7)},
               tmp_path / 'deepglobe_fpn.pth')
    torch.save(seeded_state_dict(RefinementMagNet(7), 3), tmp_path / 'deepglobe_refinement.pth')
    (tmp_path / 'data').mkdir()
    Image.fromarray(z['scene_dg_image']).save(tmp_path / 'data' / 'dg_image.png')
    Image.fromarray(z['scene_dg_label_file']).save(tmp_path / 'data' / 'dg_mask.png')
    (tmp_path / 'list.txt').write_text('data/dg_image.png\tdata/dg_mask.png\n')
    p = j['pipeline']['dg']
    for run in ('magnet', 'fast', 'baseline'):
        r = p['runs'][run]
        out = tmp_path / f'out_{run}'
        argv = ['--method', 'magnet', '--dataset', 'deepglobe', '--root', str(tmp_path), '--datalist',
                str(tmp_path / 'list.txt'), '--scales', '48-48,96-96,192-192', '--crop_size', '48', '48',
                '--input_size', '40', '40', '--model', 'fpn', '--pretrained', str(tmp_path / 'deepglobe_fpn.pth'),
                '--pretrained_refinement', str(tmp_path / 'deepglobe_refinement.pth'), '--num_classes', '7',
                '--n_patches', str(r['n_patches']), '--n_points', str(r.get('n_points') or 0.75),
                '--smooth_kernel', '11', '--save_pred', '--save_dir', str(out)]
        assert eval_cli.main(argv) == 0
        pred = np.asarray(Image.open(out / 'dg_image_pred.png'))
        assert pred.dtype == np.uint8 and pred.shape == (192, 192)
        assert (pred == z[f'pipe_dg_{run}_final_label']).mean() >= (0.995 if run != 'fast' else 0.99)
        assert np.array_equal(np.asarray(Image.open(out / 'dg_image_coarse.png')), z['pipe_dg_coarse_label_full'])
        results = json.loads((out / 'results.json').read_text())
        assert results['coarse']['confusion_matrix'] == r['coarse_confusion_matrix']
        assert abs(results['refined']['mIoU'] - r['final_mean_iou']) < 0.01
        assert results['label_pixels_of_unknown_id_or_colour'] == {str(tmp_path / 'data' / 'dg_mask.png'): 30}
