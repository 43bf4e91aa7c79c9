"""refine.py: a practitioner's files (any format, cut-outs, EXIF, wrong sizes), folders, pictures, and
many objects in one call (Refiner.refine_objects)."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import refine as refine_cli
from util.boxes import grown_box, labels_from_probabilities
from inference.refiner import Refiner
from util.image_io import read_grey
from evaluation.metrics import score_image


@pytest.fixture(scope='module')
def scene(samples_dir):
    """The motorbike sample at 160 x 120 (real content, small for speed) and its mask."""
    image = np.asarray(Image.open(samples_dir / 'motorbike.jpg').convert('RGB').resize((160, 120), Image.BILINEAR))
    mask = np.asarray(Image.open(samples_dir / 'motorbike.png').convert('L').resize((160, 120), Image.NEAREST))
    return image, np.where(mask > 127, 255, 0).astype(np.uint8)


@pytest.fixture(scope='module')
def refiner():
    return Refiner()  # the bundled lite model


def _run(*args) -> int:
    return refine_cli.main([str(a) for a in args] + ['--device', 'cpu'])


def test_mask_formats_give_the_same_result(scene, tmp_path):
    image, mask = scene
    Image.fromarray(image).save(tmp_path / 'im.png')
    Image.fromarray(mask).save(tmp_path / 'grey.png')
    Image.fromarray(mask // 255).save(tmp_path / 'labels01.png')                   # {0, 1}
    Image.fromarray(np.dstack([image, mask])).save(tmp_path / 'cutout.png')       # RGBA cut-out: alpha is the mask
    Image.fromarray(np.dstack([mask] * 3)).save(tmp_path / 'rgb.png')
    soft = cv2.GaussianBlur(mask, (0, 0), 2)
    Image.fromarray(soft).save(tmp_path / 'soft.png')                              # thresholded at 127
    outputs = {}
    for name in ('grey', 'labels01', 'cutout', 'rgb', 'soft'):
        assert _run(tmp_path / 'im.png', tmp_path / f'{name}.png', '-o', tmp_path / f'out_{name}.png') == 0
        out = Image.open(tmp_path / f'out_{name}.png')
        assert out.mode == 'L' and out.size == (160, 120)
        outputs[name] = np.asarray(out)
    for name in ('labels01', 'cutout', 'rgb'):
        assert np.array_equal(outputs[name], outputs['grey']), name
    assert np.array_equal(outputs['soft'], Refiner().refine(image, (soft > 127).astype(np.uint8) * 255))
    assert _run(tmp_path / 'im.png', tmp_path / 'grey.png', '-o', tmp_path / 'b.png', '--binary',
                '--cutout', tmp_path / 'c.png') == 0
    assert set(np.unique(np.asarray(Image.open(tmp_path / 'b.png')))) <= {0, 255}
    cut = Image.open(tmp_path / 'c.png')
    assert cut.mode == 'RGBA' and np.array_equal(np.asarray(cut)[..., 3], np.asarray(Image.open(tmp_path / 'b.png')))


def test_grey_16bit_and_exif_rotated_images(scene, tmp_path):
    image, mask = scene
    grey = np.asarray(Image.fromarray(image).convert('L'))
    Image.fromarray(grey).save(tmp_path / 'grey.png')
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / 'deep.png')   # 16-bit grey
    Image.fromarray(mask).save(tmp_path / 'mask.png')
    for name in ('grey', 'deep'):
        assert _run(tmp_path / f'{name}.png', tmp_path / 'mask.png', '-o', tmp_path / f'o_{name}.png') == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'o_grey.png')), np.asarray(Image.open(tmp_path / 'o_deep.png')))
    # A phone photo stored sideways: pixels 120 x 160 (W x H), EXIF orientation 6 (display rotated 90° clockwise).
    stored = Image.fromarray(image).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / 'phone.jpg', exif=exif, quality=95)
    assert stored.size == (120, 160)
    assert _run(tmp_path / 'phone.jpg', tmp_path / 'mask.png', '-o', tmp_path / 'o_phone.png') == 0  # mask as displayed
    assert Image.open(tmp_path / 'o_phone.png').size == (160, 120)


def test_size_mismatch_refused_or_resized(scene, tmp_path, caplog):
    image, mask = scene
    Image.fromarray(image).save(tmp_path / 'im.png')
    Image.fromarray(mask).resize((80, 60), Image.NEAREST).save(tmp_path / 'small.png')
    (tmp_path / 'out.png').write_bytes(b'previous result')
    assert _run(tmp_path / 'im.png', tmp_path / 'small.png', '-o', tmp_path / 'out.png') == 1
    assert '80x60' in caplog.text and '160x120' in caplog.text and '--resize_mask' in caplog.text
    assert (tmp_path / 'out.png').read_bytes() == b'previous result'  # nothing half-written or destroyed
    caplog.clear()
    assert _run(tmp_path / 'im.png', tmp_path / 'small.png', '-o', tmp_path / 'out.png', '--resize_mask') == 0
    assert 'resized' in caplog.text and Image.open(tmp_path / 'out.png').size == (160, 120)


def test_folder_with_an_unreadable_file_and_panels(scene, tmp_path, caplog):
    image, mask = scene
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in ('a', 'b'):
        Image.fromarray(image).save(folder / f'{name}.jpg')
        Image.fromarray(mask).save(folder / f'{name}.png')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    Image.fromarray(mask).save(folder / 'broken.png')
    assert refine_cli.main(['--dir', str(folder), '--output', str(tmp_path / 'out'), '--visualize', '--device', 'cpu']) == 1
    assert 'broken' in caplog.text and 'cannot read image' in caplog.text
    for name in ('a', 'b'):
        panel = Image.open(tmp_path / 'out' / f'{name}_panel.png')
        panel.verify()
        assert (tmp_path / 'out' / f'{name}.png').is_file()
        assert Image.open(tmp_path / 'out' / f'{name}_panel.png').size[0] > 160  # larger than the image
    assert not (tmp_path / 'out' / 'broken.png').exists()


def test_refine_objects_batch_independent_and_labels(scene, refiner):
    image, mask = scene
    h, w = mask.shape
    objects = []
    for y, x in ((20, 20), (30, 34), (50, 60)):  # three overlapping discs of one size: their windows batch
        disc = np.zeros((h, w), np.uint8)
        cv2.circle(disc, (x, y), 15, 255, -1)
        objects.append(disc)
    objects.append(mask)
    one = refiner.refine_objects(image, objects, batch=1)
    many = refiner.refine_objects(image, objects, batch=4)
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(one, many))
    for obj, prob in zip(objects, one):
        y0, y1, x0, x1 = grown_box(obj > 0)
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        assert prob.dtype == np.float32 and prob.shape == (h, w) and not prob[outside].any()
    labels = labels_from_probabilities([torch.from_numpy(p) for p in one])
    stack = np.stack(one)
    expected = np.where(stack.max(0) > 0.5, stack.argmax(0) + 1, 0)
    assert np.array_equal(labels, expected)
    both = (stack[0] > 0.5) & (stack[1] > 0.5)  # pixels two objects claim: the more probable one wins
    assert both.any() and np.array_equal(labels[both], np.where(stack[0][both] >= stack[1][both], 1, 2))
    # A label map gives the same objects in ascending id order.
    label_map = np.zeros((h, w), np.uint16)
    label_map[mask > 0] = 300
    from_map = refiner.refine_objects(image, label_map)
    assert len(from_map) == 1 and np.abs(from_map[0] - one[3]).max() < 1e-4


def test_grown_box_reaches_the_border_unlike_the_authors():
    mask = np.zeros((40, 50), bool)
    mask[20:40, 30:50] = True  # touches the bottom and right borders
    assert grown_box(mask) == (17, 40, 27, 50)
    assert grown_box(mask, authors=True) == (17, 39, 27, 49)


def test_instances_cli(scene, tmp_path):
    image, mask = scene
    labels = np.zeros(mask.shape, np.uint8)
    labels[mask > 0] = 5
    labels[5:30, 100:150] = 9
    Image.fromarray(image).save(tmp_path / 'im.png')
    Image.fromarray(labels).save(tmp_path / 'labels.png')
    assert _run(tmp_path / 'im.png', tmp_path / 'labels.png', '--instances', '-o', tmp_path / 'out.png',
                '--visualize', tmp_path / 'panel.png') == 0
    out = np.asarray(Image.open(tmp_path / 'out.png'))
    assert out.shape == labels.shape and set(np.unique(out)) <= {0, 5, 9} and (out == 5).any()


#: Measured with the bundled model (README, "Refine your own images"); the test keeps a margin below it.
H36M_MIN_GAIN = 0.08  # measured: mBA 0.633 -> 0.755 (+0.123), IoU 0.864 -> 0.912


def test_h36m_agrees_better_with_the_released_model(samples_dir, refiner):
    image = np.asarray(Image.open(samples_dir / 'H36M_test_im1.jpg').convert('RGB'))
    coarse = np.where(read_grey(samples_dir / 'H36M_test_mask1.jpg') > 127, 255, 0).astype(np.uint8)
    reference = np.where(read_grey(samples_dir / 'H36M_output1.jpg') > 127, 255, 0).astype(np.uint8)
    refined = refiner.refine(image, coarse)
    score = score_image('H36M_1', reference, coarse, refined)
    assert score.mask_mba - score.seg_mba > H36M_MIN_GAIN, (score.seg_mba, score.mask_mba)
