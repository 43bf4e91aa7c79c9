"""MagNet's sample and demo scripts: the presets against the authors' script flags, eval.py --preset with
overrides, train.py --preset, and the one-photo demo with seeded weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import train as train_cli
from evaluation import magnet as magnet_eval
from methods import METHODS
from methods.magnet.config import MagNetConfig, MagNetTrainConfig
from methods.magnet.presets import DEMO_PRESETS, PRESETS, PUBLISHED_MIOU, TEST_PRESETS
from models import hub
from models.magnet.refinement import RefinementMagNet
from models.magnet.system import MagNetSystem
from models.seeded import seeded_state_dict
from scripts import demo_magnet
from util.fetch import Remote, Source, url_candidate

#: The authors' scripts (VinAIResearch/MagNet scripts/*/test_magnet{,_fast}.sh), flag by flag, as the reference
#: specification's table lists them.
AUTHORS_TEST = {
    'cityscapes': dict(dataset='cityscapes', root='data/cityscapes', datalist='data/list/cityscapes/val.txt',
                       scales='256-128,512-256,1024-512,2048-1024', crop_size=[256, 128], input_size=[256, 128],
                       model='hrnet18+ocr', pretrained='cityscapes_hrnet.pth', num_classes=19, smooth_kernel=5,
                       pretrained_refinement=['cityscapes_refinement_512.pth', 'cityscapes_refinement_1024.pth',
                                              'cityscapes_refinement_2048.pth'], save_pred=True, sub_batch_size=1),
    'deepglobe': dict(dataset='deepglobe', root='data/deepglobe', datalist='data/list/deepglobe/test.txt',
                      scales='612-612,1224-1224,2448-2448', crop_size=[612, 612], input_size=[508, 508], model='fpn',
                      pretrained='deepglobe_fpn.pth', num_classes=7, smooth_kernel=11,
                      pretrained_refinement=['deepglobe_refinement.pth'], save_pred=True, sub_batch_size=1),
}
POINTS = {'cityscapes': (-1, 32768), 'cityscapes_fast': (4, 0.9), 'deepglobe': (-1, 0.75), 'deepglobe_fast': (3, 0.9)}


@pytest.mark.parametrize('name', sorted(POINTS))
def test_test_presets_are_the_authors_scripts(name):
    dataset = name.removesuffix('_fast')
    expected = {**AUTHORS_TEST[dataset], 'n_patches': POINTS[name][0], 'n_points': POINTS[name][1]}
    preset = {k: v for k, v in TEST_PRESETS[name].items() if k != 'save_dir'}
    assert preset == expected
    demo = DEMO_PRESETS[name]
    assert demo['sub_batch_size'] == (2 if name == 'deepglobe_fast' else 1)  # demo_magnet_fast.sh batches 2
    assert {k: v for k, v in demo.items() if k != 'sub_batch_size'} == \
        {k: v for k, v in expected.items() if k not in ('root', 'datalist', 'save_pred', 'sub_batch_size')}
    assert set(PUBLISHED_MIOU[dataset]) == {'backbone', 'magnet', 'fast'}


def test_eval_preset_gives_every_flag_and_explicit_flags_win():
    _, args = magnet_eval.parse(['--preset', 'cityscapes_fast', '--root', '/elsewhere', '--n_points', '0.5'])
    for key, value in TEST_PRESETS['cityscapes_fast'].items():
        if key not in ('root', 'n_points'):
            assert getattr(args, key) == value, key
    assert args.root == '/elsewhere' and args.n_points == 0.5
    from util.cli import dataclass_from_args
    cfg = dataclass_from_args(MagNetConfig, args)
    assert cfg.scales == [(256, 128), (512, 256), (1024, 512), (2048, 1024)] and cfg.n_patches == 4


def test_eval_without_a_preset_still_needs_its_flags(capsys):
    with pytest.raises(SystemExit):
        magnet_eval.parse(['--dataset', 'deepglobe'])
    assert '--datalist, --pretrained required' in capsys.readouterr().err


@pytest.mark.parametrize('dataset', ['cityscapes', 'deepglobe'])
def test_train_presets_are_train_magnet_sh(dataset):
    (stage,) = PRESETS[dataset]
    cfg = MagNetTrainConfig(**stage.overrides)
    assert cfg.batch_size == 8 and cfg.lr == 1e-3 and cfg.datalist == f'data/list/{dataset}/train.txt'
    for key in ('dataset', 'root', 'model', 'pretrained', 'num_classes'):
        assert getattr(cfg, key) == AUTHORS_TEST[dataset][key]
    assert cfg.crop_size == AUTHORS_TEST[dataset]['crop_size']
    assert METHODS['magnet'].presets is PRESETS
    assert train_cli._pick_method(['x', '--preset', dataset]) is METHODS['magnet']


SMALL = dict(scales='24-16,48-32', crop_size=[24, 16], input_size=[24, 16])


def _seeded(tmp_path, backbone: str, classes: int, stages: int) -> tuple[str, list[str]]:
    system = MagNetSystem(backbone, classes, stages)
    bb = tmp_path / f'{backbone}.pth'
    torch.save({'model.' + k: v for k, v in seeded_state_dict(system.backbone, 0).items()}, bb)
    refs = []
    for i in range(stages):
        refs.append(str(tmp_path / f'ref{i}.pth'))
        torch.save(seeded_state_dict(RefinementMagNet(classes), 3 + i), refs[-1])
    return str(bb), refs


@pytest.mark.parametrize('system,backbone,classes,stages', [('magnet_cityscapes', 'hrnet18+ocr', 19, 3),
                                                            ('magnet_deepglobe', 'fpn', 7, 1)])
def test_demo_writes_its_three_files(tmp_path, monkeypatch, system, backbone, classes, stages):
    """The demo with seeded weights given by path. The settings are scaled down so that the test runs in
    seconds (the preset values themselves are checked above); the photo is resized to the last scale and the
    outputs come back at the photo's size."""
    dataset = system.removeprefix('magnet_')
    for name in (dataset, dataset + '_fast'):
        monkeypatch.setitem(DEMO_PRESETS, name, {**DEMO_PRESETS[name], **SMALL})
    bb, refs = _seeded(tmp_path, backbone, classes, stages)
    photo = tmp_path / 'street scene.jpg'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / 'out'
    for fast in ([], ['--fast']):
        assert demo_magnet.main([str(photo), '--system', system, '--pretrained', bb, '--pretrained_refinement',
                                 *refs, '--output', str(out), '--device', 'cpu', *fast]) == 0
        pred = np.asarray(Image.open(out / 'street scene_pred.png'))
        colour = np.asarray(Image.open(out / 'street scene_color.png'))
        panel = np.asarray(Image.open(out / 'street scene_panel.png'))
        assert pred.shape == (30, 50) and pred.max() < classes
        assert colour.shape == (30, 50, 3) and panel.shape[1] > 3 * 50
        from dataset.magnet import PALETTES
        assert (colour[0, 0] == PALETTES[dataset][pred[0, 0]]).all()


def test_demo_says_where_absent_named_weights_go(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv('CASCADEPSP_HOME', str(tmp_path / 'cache'))
    name = 'deepglobe_fpn.pth'
    monkeypatch.setitem(hub.WEIGHT_SOURCES, name, Source(name, 'file', (
        Remote(name, (url_candidate('http://127.0.0.1:9/' + name),)),)))
    photo = tmp_path / 'p.png'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    assert demo_magnet.main([str(photo), '--system', 'magnet_deepglobe', '--output', str(tmp_path / 'o')]) == 2
    assert 'put it at' in caplog.text and str(tmp_path / 'cache' / name) in caplog.text
    assert not list((tmp_path / 'o').glob('*.png'))
