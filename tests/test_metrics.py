"""IoU/mBA against the authors' numbers and hand-computed cases; eval_post.py end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import eval_post
from evaluation.metrics import boundary_accuracy, boundary_radii, intersection_union, score_image, summarize
from evaluation.post_eval import find_triplets


def test_matches_reference(reference_dir):
    ref = json.loads((reference_dir / 'metrics.json').read_text())
    arrays = np.load(reference_dir / 'metrics.npz')
    for case in ref:
        c = f"case{case['case']}"
        gt, seg, mask = arrays[f'{c}_gt'], arrays[f'{c}_seg'], arrays[f'{c}_mask']
        assert gt.shape == (case['height'], case['width'])
        seg_mba, mask_mba = boundary_accuracy(gt, seg, mask)
        assert abs(seg_mba - case['seg_mba']) < 1e-9
        assert abs(mask_mba - case['mask_mba']) < 1e-9
        assert intersection_union(gt, seg) == (case['seg_intersection'], case['seg_union'])
        assert intersection_union(gt, mask) == (case['mask_intersection'], case['mask_union'])


def test_radii():
    # (W+H)/300 = 2.33 -> 1 + int(0.267 * i): int(1.07) = 1 only at i = 4
    assert boundary_radii(300, 400) == [1, 1, 1, 1, 2]
    # 8600/300 = 28.67 -> step 5.53: 1, 6, 12, 17, 23
    assert boundary_radii(3600, 5000) == [1, 6, 12, 17, 23]
    # tiny images: r_max < 1, int() truncates towards 0, so every radius is 1
    assert boundary_radii(20, 30) == [1, 1, 1, 1, 1]


def test_square_shifted_by_one_pixel():
    # 10x10 square in a 40x40 image (W+H = 80: all radii are 1, kernel = 3x3 cross).
    gt = np.zeros((40, 40), bool)
    gt[15:25, 15:25] = True
    pred = np.roll(gt, 1, axis=1)
    # Band at r=1 (cross kernel): the inner ring (36 px, minus the 4 corners whose cross
    # neighbours are all inside: no, corners do touch outside) and the outer ring without corners.
    # Inner ring: 36 pixels; outer ring (4-neighbourhood): 40 pixels -> 76 band pixels.
    # Errors of the shift: column 15 (10 px, inner ring) and column 25 (10 px, outer ring).
    (mba,) = boundary_accuracy(gt, pred)
    assert mba == pytest.approx((76 - 20) / 76, abs=1e-12)
    assert intersection_union(gt, pred) == (90, 110)


def test_empty_and_full_ground_truth_have_no_boundary():
    empty = np.zeros((30, 50), bool)
    full = np.ones((30, 50), bool)
    assert all(math.isnan(v) for v in boundary_accuracy(empty, empty, full))
    assert all(math.isnan(v) for v in boundary_accuracy(full, full))
    assert intersection_union(empty, empty) == (0, 0)
    assert intersection_union(full, empty) == (0, 1500)


def test_non_square_and_smaller_output():
    gt = np.zeros((97, 131), np.uint8)
    gt[20:70, 30:100] = 255
    seg = np.zeros_like(gt)
    seg[22:70, 30:98] = 255
    # An output at half resolution is upsampled with PIL bilinear to the ground truth's size.
    small = np.asarray(Image.fromarray(gt).resize((66, 49), Image.BILINEAR))
    s = score_image('x', gt, seg, small)
    assert (s.height, s.width) == (97, 131)
    assert s.seg_intersection == 48 * 68 and s.seg_union == 50 * 70
    assert 0.9 < s.mask_iou <= 1.0 and s.mask_mba > s.seg_mba
    with pytest.raises(ValueError, match='differ in size'):
        score_image('y', gt, seg[:-1], small)


def test_small_object_keeps_input():
    gt = np.zeros((40, 40), np.uint8)
    gt[10:20, 10:20] = 255
    seg = np.zeros_like(gt)
    seg[12:14, 12:14] = 255  # sums to 4 * 255 = 1020 < 32 * 32
    mask = gt.copy()          # a perfect output is ignored for such inputs
    s = score_image('tiny', gt, seg, mask)
    assert s.small_object and s.mask_intersection == s.seg_intersection == 4 and s.mask_mba == s.seg_mba


def test_iou_is_cumulative_not_mean():
    a = score_image('a', *(np.full((10, 10), 255, np.uint8),) * 3)
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :5] = 255
    b = score_image('b', gt, gt, np.zeros_like(gt) + 0)  # mask empty: IoU 0 on 50 pixels
    summary = summarize([a, b])
    assert summary['new_iou'] == pytest.approx(100 / 150)  # a mean of per-image IoUs would be 0.5
    assert summary['images_without_boundary'] == 1  # the full mask has no boundary


def test_multiclass_band_union_and_void():
    gt = np.zeros((40, 40), np.uint8)
    gt[:, :20], gt[:, 20:] = 1, 2
    gt[:5] = 0  # void strip at the top
    pred = gt.copy()
    pred[10:, 20] = 1  # a one-column error at the class boundary, 30 px
    (mba,) = boundary_accuracy(gt, pred, multiclass=True)
    # r=1 (cross): per-class gradients give columns 19 and 20 for rows 5..39 plus the
    # void-adjacent rows; void pixels (rows 0..4) are excluded. Band rows 5..39 x cols 19..20 = 70,
    # plus row 5 (next to void) of both classes minus the 2 already counted = 40 - 2 = 38 -> 108.
    assert mba == pytest.approx((108 - 30) / 108, abs=1e-12)


def _write_folder(folder, names, shift=1):
    for i, name in enumerate(names):
        h, w = 60 + 7 * i, 83
        gt = np.zeros((h, w), np.uint8)
        gt[15:45, 20:60] = 255
        Image.fromarray(gt).save(folder / f'{name}_gt.png')
        Image.fromarray(np.roll(gt, 3, axis=1)).save(folder / f'{name}_seg.png')
        Image.fromarray(np.roll(gt, shift, axis=0)).save(folder / f'{name}_mask.png')


def test_eval_post_end_to_end(tmp_path):
    _write_folder(tmp_path, ['a', 'b', 'c'])
    assert eval_post.main(['--dir', str(tmp_path), '--workers', '2']) == 0
    text = (tmp_path / 'results_post.txt').read_text()
    data = json.loads((tmp_path / 'results_post.json').read_text())
    expected_new_iou = (29 * 40) / (31 * 40)  # 30x40 square (rows x cols) shifted by one row
    assert data['summary']['new_iou'] == pytest.approx(expected_new_iou)
    assert data['summary']['old_iou'] == pytest.approx((30 * 37) / (30 * 43))  # shifted by 3 columns
    assert f"New IoU  : {expected_new_iou:.6f}" in text
    for label in ('Old IoU  :', 'IoU Delta:', 'New mBA  :', 'Old mBA  :', 'mBA Delta:', 'small objects: 0'):
        assert label in text
    assert [r['name'] for r in data['images']] == ['a', 'b', 'c']
    assert data['images'][1]['height'] == 67


def test_eval_post_prefix_and_problems(tmp_path):
    _write_folder(tmp_path, ['a', 'b'])
    for name in ('a', 'b'):
        (tmp_path / f'{name}_mask.png').rename(tmp_path / f'0.125_{name}_mask.png')
    assert eval_post.main(['--dir', str(tmp_path), '--mask_prefix', '0.125_', '--workers', '1']) == 0
    assert (tmp_path / '0.125_results_post.json').is_file()
    before = (tmp_path / '0.125_results_post.txt').read_text()
    # A missing output and a size mismatch are reported by name; the previous results stay intact.
    (tmp_path / '0.125_b_mask.png').unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / 'a_seg.png')
    triplets, problems = find_triplets(tmp_path, '0.125_')
    assert [t.name for t in triplets] == ['a'] and '0.125_b_mask.png' in problems[0]
    assert eval_post.main(['--dir', str(tmp_path), '--mask_prefix', '0.125_', '--workers', '1']) == 1
    assert (tmp_path / '0.125_results_post.txt').read_text() == before
    assert not list(tmp_path.glob('.*tmp*'))


def test_make_table(tmp_path):
    from evaluation.tables import results_table
    path = tmp_path / 'r.json'
    path.write_text(json.dumps({'summary': {'old_iou': 0.9049, 'new_iou': 0.9393, 'iou_delta': 0.0344,
                                            'old_mba': 0.5963, 'new_mba': 0.7532, 'mba_delta': 0.1569}}))
    table = results_table([('PSPNet', path)])
    assert '| PSPNet | 90.49 | 59.63 |' in table
    assert '| PSPNet + CascadePSP | 93.93 (↑3.44) | 75.32 (↑15.69) |' in table


def test_worst_losses_are_listed_and_drawn(tmp_path):
    """The learning benchmark's worst losses against the best filter: only losses, worst first, at most k; a
    table row and a panel (input, filter, model) for each."""
    from evaluation.learning import losses_markdown, score_folder, worst_losses
    from scripts.benchmark_learning import draw_worst
    rng = np.random.default_rng(0)
    folder = tmp_path / 'set'
    folder.mkdir()
    for i, shift in enumerate((0, 1, 3, 5)):  # the model's boundary is off by `shift` px on image i
        gt = np.zeros((48, 64), np.uint8)
        gt[12:36, 16:48] = 255
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        image[0, 0, 0] = shift  # read back by the model below
        Image.fromarray(image).save(folder / f'p{i}_im.png')
        Image.fromarray(gt).save(folder / f'p{i}_gt.png')
        Image.fromarray(np.roll(gt, 2, 1)).save(folder / f'p{i}_seg.png')

    def model(image, coarse):
        return np.roll(coarse, -2 + int(image[0, 0, 0]), 1)
    methods = {'guided filter r=1': lambda image, c: np.roll(c, -2, 1), 'model': model}
    results = {'shifted': score_folder(folder, methods)}
    worst = worst_losses(results['shifted']['model'], results['shifted']['guided filter r=1'], k=2)
    assert [a.name for a, _ in worst] == ['p3', 'p2']  # p0 ties, p1 loses least, k = 2
    assert all(a.mask_mba < b.mask_mba for a, b in worst)
    table = losses_markdown(results, ['model'], k=2)
    assert table.count('| shifted | model | p') == 2 and '| 64 x 48 |' in table
    draw_worst(results['shifted'], folder, methods, ['model'], 2, tmp_path / 'worst', 'shifted')
    panels = sorted(p.name for p in (tmp_path / 'worst').iterdir())
    assert panels == ['shifted_model_p2.png', 'shifted_model_p3.png']
    panel = np.asarray(Image.open(tmp_path / 'worst' / panels[0]))
    assert panel.shape[0] > 100 and panel.shape[1] > 4 * panel.shape[0] * 0.8  # four tiles in a row
    from scripts.benchmark_learning import main
    with pytest.raises(SystemExit):  # panels without the filters they compare with: refused up front
        main(['--panels', '--no-filters', '--output', str(tmp_path / 'none')])
    assert not (tmp_path / 'none').exists()


def test_make_table_of_the_learning_benchmark(tmp_path, capsys):
    """The README's table comes from the benchmark's results.json: best classical per family, W/T/L per image."""
    from scripts import make_table

    def method(iou, mba, per_image):
        return {'new_iou': iou, 'new_mba': mba, 'seconds': 1.0, 'per_image_mba': per_image}
    data = {'fam': {'input': method(0.9, 0.5, [0.5, 0.5, 0.5]),
                    'guided filter r=(H+W)/75 eps=0.001': method(0.91, 0.6, [0.6, 0.6, 0.6]),
                    'closed-form matting, trimap 10 px': method(0.92, 0.55, [0.55, 0.55, 0.55]),
                    'lite': method(0.93, 0.65, [0.7, 0.6, 0.5])}}
    (tmp_path / 'results.json').write_text(json.dumps(data))
    assert make_table.main(['--learning', str(tmp_path / 'results.json'), '--model', 'lite']) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert row == ('| fam | 90.00 / 50.00 | 91.00 / 60.00 (guided filter r=(H+W)/75 eps=0.001) | 93.00 / 65.00 | '
                   '1/1/1 |')
    assert make_table.main(['--learning', str(tmp_path / 'results.json'), '--model', 'other']) == 2
