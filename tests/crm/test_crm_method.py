"""CRM through every driver: eval.py's single-scale mode, tiny images, refine.py with a panel, eval.py --ade,
and train.py --arch crm (a few CPU iterations, then a resume at the same iteration)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_cli
import refine as refine_cli
import train as train_cli
from models.checkpoint import read_checkpoint, save_checkpoint
from models.registry import build_model
from models.seeded import seed_model


@pytest.fixture(scope='module')
def crm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('crm') / 'crm.pth'
    save_checkpoint(path, seed_model(build_model('crm'), 4))
    return path


def _blob(h, w, seed=0):
    from conftest import blob_scene
    return blob_scene(h, w, seed)


def test_global_only_and_tiny_images(crm_file, tmp_path):
    src = tmp_path / 'in'
    src.mkdir()
    for name, (h, w) in {'tiny': (12, 30), 'line': (5, 90), 'normal': (48, 64)}.items():  # sides <= 32 px too
        image, mask = _blob(h, w)
        Image.fromarray(image).save(src / f'{name}_im.png')
        Image.fromarray(mask).save(src / f'{name}_seg.png')
    out = tmp_path / 'out'
    assert eval_cli.main(['--dir', str(src), '--output', str(out), '--model', str(crm_file), '--chunk', '700']) == 0
    for name in ('tiny', 'line', 'normal'):
        assert sorted(p.name for p in out.glob(f'*{name}_mask.png')) == sorted(
            [f'{s}_{name}_mask.png' for s in ('0.125', '0.25', '0.5', '1.0')] + [f'{name}_mask.png'])
    single = tmp_path / 'single'
    assert eval_cli.main(['--dir', str(src), '--output', str(single), '--model', str(crm_file), '--global_only',
                          '--L', '32']) == 0
    assert sorted(p.name for p in single.glob('*_mask.png')) == ['line_mask.png', 'normal_mask.png', 'tiny_mask.png']
    assert np.asarray(Image.open(single / 'normal_mask.png')).shape == (48, 64)


def test_refine_cli_and_scene_parsing(crm_file, tmp_path):
    image, mask = _blob(40, 56)
    Image.fromarray(image).save(tmp_path / 'a.jpg')
    Image.fromarray(mask).save(tmp_path / 'a.png')
    assert refine_cli.main([str(tmp_path / 'a.jpg'), str(tmp_path / 'a.png'), '-o', str(tmp_path / 'r.png'),
                            '--model', str(crm_file), '--visualize', str(tmp_path / 'panel.png'),
                            '--scales', '0.5', '1.0']) == 0
    assert np.asarray(Image.open(tmp_path / 'r.png')).shape == (40, 56) and (tmp_path / 'panel.png').is_file()

    split = tmp_path / 'split'
    split.mkdir()
    Image.fromarray(image).save(split / 'scene_im.jpg')
    Image.fromarray(mask).save(split / 'scene_3.0_seg.png')
    Image.fromarray(mask).save(split / 'scene_3.0_gt.png')
    assert eval_cli.main(['--ade', '--dir', str(split), '--output', str(tmp_path / 'masks'),
                          '--model', str(crm_file)]) == 0
    assert (tmp_path / 'masks' / 'scene_3.0_mask.png').is_file()


def test_train_arch_crm_and_resume(tmp_path, tiny_data, train_args, caplog):
    tiny_data()
    caplog.set_level('INFO')
    assert train_cli.main(train_args('--arch', 'crm')) == 0
    (run,) = (tmp_path / 'saves').iterdir()
    final = read_checkpoint(run / 'checkpoint_final.pth')
    assert final['arch'] == 'crm' and final['iteration'] == 4 and final['config']['grad_weight'] == 2.0
    assert 'total_loss=' in caplog.text and 'ce_loss=' in caplog.text
    caplog.clear()
    (run / 'checkpoint_final.pth').unlink()  # as if killed after iteration 2
    assert train_cli.main(['--resume', str(run / 'checkpoint_2.pth')]) == 0  # the method and config from the file
    assert 'at iteration 2' in caplog.text and 'it 3 train/' in caplog.text and 'it 1 train/' not in caplog.text
    assert read_checkpoint(run / 'checkpoint_final.pth')['iteration'] == 4
    assert read_checkpoint(run / 'checkpoint_final.pth')['config']['arch'] == 'crm'
    with torch.no_grad():
        assert torch.isfinite(torch.cat([v.flatten().float() for v in final['model'].values()])).all()


def test_compact_encoder_round_trip(tmp_path):
    from inference.predict import image_tensors, refine_image
    from models.checkpoint import load_model
    model = seed_model(build_model('crm', encoder='compact', fusion_widths=[8, 8, 16], feat_channels=16,
                                   mlp_hidden=[16, 16]), 1).eval()
    assert sum(p.numel() for p in model.parameters()) < 300_000  # the authors' has 24.3 M
    save_checkpoint(tmp_path / 'c.pth', model)
    loaded = load_model(tmp_path / 'c.pth').eval()
    assert loaded.hparams == model.hparams
    image, mask = _blob(30, 40)
    a = refine_image(model, *image_tensors(image, mask)).probs
    b = refine_image(loaded, *image_tensors(image, mask)).probs
    assert a.shape == (1, 1, 30, 40) and torch.equal(a, b)
    with pytest.raises(ValueError, match='unknown encoder'):
        build_model('crm', encoder='vit')


#: CRM's README commands, verbatim but for the script's name (train.py, eval.py for test.py), --arch crm and
#: --model naming a CRM file.
README_TRAIN = ('Exp_ID -i 45000 -b 12 --steps 22500 37500 --lr 2.25e-4 --ce_weight 1.0 --l1_weight 0.5 '
                '--l2_weight 0.5 --grad_weight 2.0').split()


def test_readme_commands_run_as_written(tmp_path, tiny_data, caplog):
    """train.py with the README's flags (stopped after 2 iterations on tiny data), eval.py with test.py's flags
    on the checkpoint it wrote, then eval_post.py --mask_prefix for each of the four scales."""
    data = tiny_data(n=3, size=(48, 64))
    caplog.set_level('INFO')
    environment = ['--arch', 'crm', '--until', '2', '--save_interval', '2', '--data_root', str(data),
                   '--crop_size', '48', '--workers', '0', '--device', 'cpu', '--holdout', '',
                   '--log_dir', str(tmp_path / 'runs'), '--save_dir', str(tmp_path / 'saves')]
    assert train_cli.main(README_TRAIN + environment) == 0
    (run,) = (tmp_path / 'saves').iterdir()
    checkpoint = run / 'checkpoint_final.pth'  # --until 2: the run's end
    config = read_checkpoint(checkpoint)['config']
    assert (config['iterations'], config['batch_size'], config['steps'], config['lr']) == (45000, 12, [22500, 37500],
                                                                                         2.25e-4)
    assert (config['ce_weight'], config['l1_weight'], config['l2_weight'], config['grad_weight']) == (1.0, 0.5, 0.5, 2.0)
    src, out = tmp_path / 'test_set', tmp_path / 'output'
    src.mkdir()
    for i in range(2):
        image, mask = _blob(40, 52, seed=i)
        Image.fromarray(image).save(src / f'im{i}_im.jpg')
        Image.fromarray(np.roll(mask, 3, axis=1)).save(src / f'im{i}_seg.png')
        Image.fromarray(mask).save(src / f'im{i}_gt.png')
    assert eval_cli.main(['--dir', str(src), '--model', str(checkpoint), '--output', str(out), '--clear']) == 0
    import eval_post as eval_post_cli
    for s in ('0.125', '0.25', '0.5', '1.0'):
        assert eval_post_cli.main(['--dir', str(out), '--mask_prefix', f'{s}_', '--workers', '1']) == 0
        assert 'New IoU' in (out / f'{s}_results_post.txt').read_text()
