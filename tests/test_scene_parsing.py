"""Scene parsing (paper §5): split, boxes, fusion and metrics against the authors' outputs
(tests/reference/scene_parsing.*), and the three command lines end to end."""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

import eval as eval_cli
import eval_post
from util.boxes import component_box
from evaluation.scene_parsing import (SceneScores, all_plus_one, closing_kernel, component_class,
                                      format_results, format_stdout, fuse, split_components)
from scripts import split_scene
from util.image_io import read_grey


@pytest.fixture(scope='module')
def scene_ref(reference_dir):
    return (np.load(reference_dir / 'scene_parsing.npz'),
            json.loads((reference_dir / 'scene_parsing.json').read_text()))


def _reference_components(z, name):
    keys = [k[len(name) + 2:-len('__split_seg')] for k in z.files
            if k.startswith(name + '__c') and k.endswith('__split_seg')]
    return {k: (z[f'{name}__{k}__split_seg'], z[f'{name}__{k}__split_gt'], tuple(int(v) for v in z[f'{name}__{k}__box']),
                z[f'{name}__{k}__prob']) for k in keys}


def _close(ours: dict, theirs: dict) -> None:
    for key, value in theirs.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # bools: notes of the generator
            assert ours[key] == pytest.approx(value, abs=1e-12, rel=0), key
    assert ours['class_i_u_by_label__new_i_new_u_old_i_old_u'] == theirs['class_i_u_by_label__new_i_new_u_old_i_old_u']


def test_every_reference_case(scene_ref):
    z, ref = scene_ref
    total = SceneScores()
    for case in ref['cases']:
        name = case['name']
        seg, gt = z[f'{name}__seg'], z[f'{name}__gt']
        theirs = _reference_components(z, name)
        ours = split_components(seg, gt)
        assert len(ours) == len(theirs), name
        files = []
        for comp in ours:  # component ids are OpenCV's: match by class and pixels
            match = [k for k, (s, g, _, _) in theirs.items()
                     if k.startswith(f'c{comp.cls}k') and np.array_equal(s, comp.seg) and np.array_equal(g, comp.gt)]
            assert len(match) == 1, (name, comp.stem)
            _, _, box, prob = theirs[match[0]]
            assert component_box(comp.seg) == box, (name, comp.stem)
            files.append((f'{name}_{comp.stem}_mask.png', comp.cls, box, prob))
        fused = fuse(seg, [(c, b, p) for _, c, b, p in sorted(files, key=lambda f: f[0])])
        assert np.array_equal(fused, z[f'{name}__fused_raw']), name
        single = SceneScores()
        seg_scored, fused_scored = single.add(f'{name}.png', gt, seg, fused)
        total.add(f'{name}.png', gt, seg, fused)
        assert np.array_equal(fused_scored, z[f'{name}__fused']) and np.array_equal(seg_scored, z[f'{name}__seg_scored'])
        summary = single.summary()
        _close(summary, case['metrics']['name'])
        assert format_results(summary).startswith(case['results_post_txt']['name'])
    summary = total.summary()
    _close(summary, ref['dataset']['name'])
    assert format_results(summary).startswith(ref['dataset']['name']['results_post_txt'])
    assert format_stdout(summary, total).startswith(ref['dataset']['name']['stdout'])  # then the extra lines


def test_kernel_box_and_helpers_hand_computed():
    k = closing_kernel()
    assert k.shape == (10, 10) and k[5, 5] == 1 and k[0, 5] == 1 and k[5, 0] == 1 and k[0, 0] == 0 and k[9].sum() == 7
    seg = np.zeros((40, 50), np.uint8)
    seg[8:39, 10:50] = 255   # rows 8..38, cols 10..49 (touches the right border)
    # h = 30, w = 39: rows 8 - 3.75 -> 4, 38 + 3.75 -> 41.75 clamped at H - 1 = 39; cols 10 - 4.875 -> 5, end 49
    assert component_box(seg) == (4, 39, 5, 49)
    assert component_class('ADE_1_123.4_mask.png') == 123 and component_class('ADE_val_00000001_12.3_mask.png') == 12
    assert all_plus_one(np.array([0, 149, 255], np.uint8)).tolist() == [1, 150, 0]


def test_labels_above_150_are_refused(tmp_path):
    (tmp_path / 'seg').mkdir()
    (tmp_path / 'gt').mkdir()
    labels = np.full((20, 30), 151, np.uint8)
    labels[:, :10] = 3
    cv2.imwrite(str(tmp_path / 'seg' / 'a.png'), labels)
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), labels)
    args = ['--ade', '--mask_dir', str(tmp_path), '--seg_dir', str(tmp_path / 'seg'), '--gt_dir', str(tmp_path / 'gt'),
            '--split_dir', str(tmp_path)]
    with pytest.raises(SystemExit):  # no --output: a usage error, not a crash at the end
        eval_post.main(args)
    assert eval_post.main(args + ['--output', str(tmp_path / 'out')]) == 1
    assert not (tmp_path / 'out' / 'results_post.txt').exists()


def test_refining_an_empty_split_folder_is_an_error(tmp_path, caplog):
    assert eval_cli.main(['--ade', '--dir', str(tmp_path), '--output', str(tmp_path / 'm'), '--device', 'cpu']) == 1
    assert 'no NAME_<class>.<id>_gt.png component files' in caplog.text


def test_end_to_end_with_the_bundled_model(samples_dir, tmp_path, caplog):
    """A small scene of real image content: split, eval.py --ade (bundled lite), eval_post.py --ade."""
    caplog.set_level(logging.INFO)
    image = cv2.resize(cv2.imread(str(samples_dir / 'motorbike.jpg')), (160, 120), interpolation=cv2.INTER_AREA)
    bike = cv2.resize(read_grey(samples_dir / 'motorbike.png'), (160, 120), interpolation=cv2.INTER_NEAREST) > 127
    gt = np.full((120, 160), 3, np.uint8)        # a background (stuff) class everywhere
    gt[60:, :] = 7                                # another one below
    gt[bike] = 21                                 # the motorbike
    gt[:4] = 0                                    # a void band
    seg = gt.copy()
    seg[:4] = 3
    seg[cv2.dilate(bike.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 21   # a coarse, fat bike
    for sub, data in (('im', image), ('gt', gt), ('seg', seg)):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / ('scene.jpg' if sub == 'im' else 'scene.png')), data)
    split = tmp_path / 'split'
    assert split_scene.main([str(tmp_path / 'im'), str(tmp_path / 'gt'), str(tmp_path / 'seg'), str(split)]) == 0
    stems = sorted(p.name[:-len('_seg.png')] for p in split.glob('*_seg.png'))
    assert {s.split('_')[1].split('.')[0] for s in stems} == {'3', '7', '21'} and (split / 'scene_im.jpg').is_file()

    masks = tmp_path / 'masks'
    assert eval_cli.main(['--ade', '--dir', str(split), '--output', str(masks), '--device', 'cpu', '--batch', '2']) == 0
    for stem in stems:  # every component gets a mask of its box's size
        y0, y1, x0, x1 = component_box(read_grey(split / f'{stem}_seg.png'))
        assert read_grey(masks / f'{stem}_mask.png').shape == (y1 - y0, x1 - x0)
    assert eval_cli.main(['--ade', '--dir', str(split), '--output', str(masks), '--device', 'cpu']) == 0
    assert 'already done' in caplog.text  # resumes: nothing is redone

    out = tmp_path / 'out'
    assert eval_post.main(['--ade', '--mask_dir', str(masks), '--seg_dir', str(tmp_path / 'seg'), '--gt_dir',
                           str(tmp_path / 'gt'), '--split_dir', str(split), '--output', str(out), '--visualize']) == 0
    text = (out / 'results_post.txt').read_text()
    assert text.startswith('New pixel accuracy:') and 'New mBA     :' in text and 'mIoU (present)' in text
    summary = json.loads((out / 'results_post.json').read_text())
    assert set(summary['class_i_u_by_label__new_i_new_u_old_i_old_u']) == {'3', '7', '21'}
    assert summary['num_images'] == 1 and 0 < summary['new_pixel_accuracy'] <= 1
    assert (out / 'scene_labels.png').is_file()
