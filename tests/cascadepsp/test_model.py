"""The refinement module: released layout, reference forward pass, checkpoints, odd sizes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import OUTPUT_KEYS, RefinementModule
from models.checkpoint import CheckpointError, load_imagenet_backbone, load_weights, save_checkpoint
from methods.cascadepsp.padding import padded_size, safe_forward
from models.seeded import seeded_state_dict
from util.transforms import normalize_image, normalize_mask


def test_released_layout_maps_one_to_one(reference_dir):
    layout = json.loads((reference_dir / 'state_dict_layout.json').read_text())['entries']
    assert len(layout) == 426
    state = RefinementModule().state_dict()
    assert [k for k, _, _ in layout] == list(state), 'keys (and their order) differ from the release'
    for key, shape, dtype in layout:
        assert list(state[key].shape) == shape, key
        assert str(state[key].dtype) == f'torch.{dtype}', key


def _check_forward(model, reference_dir):
    ref = np.load(reference_dir / 'forward.npz')
    assert int(ref['seed']) == 0
    for case in ('case0', 'case1'):
        with torch.no_grad():
            out = model(normalize_image(ref[f'{case}_image']), normalize_mask(ref[f'{case}_mask']))
        assert set(out) == set(OUTPUT_KEYS)
        for key in OUTPUT_KEYS:
            expected = ref[f'{case}_{key}']
            got = out[key].numpy()
            assert got.shape == expected.shape, key
            if key.startswith('out'):
                np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-4, err_msg=f'{case} {key}')
            else:
                np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0, err_msg=f'{case} {key}')


def test_forward_matches_reference(seeded_model, reference_dir):
    _check_forward(seeded_model, reference_dir)


def test_released_module_prefixed_checkpoint_gives_same_outputs(seeded_model, reference_dir, tmp_path):
    # The released file is a bare DataParallel state dict: every key carries "module.".
    path = tmp_path / 'model'
    torch.save({'module.' + k: v for k, v in seeded_model.state_dict().items()}, path)
    model = load_weights(RefinementModule(), path).eval()
    _check_forward(model, reference_dir)


def test_project_checkpoint_round_trip(tmp_path):
    src = RefinementModule()
    src.load_state_dict(seeded_state_dict(src, 3))
    path = tmp_path / 'ckpt.pth'
    save_checkpoint(path, src, iteration=7)
    dst = load_weights(RefinementModule(), path)
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_wrong_checkpoint_names_file_and_keys(tmp_path):
    state = RefinementModule().state_dict()
    state.pop('final_21.bias')
    state['extra.weight'] = torch.zeros(1)
    state['final_11.weight'] = torch.zeros(32, 36, 1, 1)
    path = tmp_path / 'bad.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        load_weights(RefinementModule(), path)
    msg = str(e.value)
    assert str(path) in msg and 'final_21.bias' in msg and 'extra.weight' in msg
    assert 'final_11.weight: file (32, 36, 1, 1) vs model (32, 35, 1, 1)' in msg


def test_truncated_and_missing_checkpoint(tmp_path):
    path = tmp_path / 'trunc.pth'
    torch.save(RefinementModule().final_28.state_dict(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match='trunc.pth: not a readable PyTorch checkpoint'):
        load_weights(RefinementModule(), path)
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        load_weights(RefinementModule(), tmp_path / 'absent.pth')


def test_imagenet_init_zeroes_mask_channels(tmp_path):
    # A state dict in torchvision's resnet50 layout (3-channel stem, fc classifier).
    from models.resnet import ResNet50
    net = ResNet50()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    state['conv1.weight'] = torch.randn(64, 3, 7, 7)
    state['fc.weight'], state['fc.bias'] = torch.randn(1000, 2048), torch.randn(1000)
    path = tmp_path / 'resnet50-19c8e357.pth'
    torch.save(state, path)
    model = load_imagenet_backbone(RefinementModule(), path)
    stem = model.feats.conv1.weight.detach()
    assert torch.equal(stem[:, :3], state['conv1.weight'])
    assert torch.count_nonzero(stem[:, 3:]) == 0
    assert torch.equal(model.feats.layer4[2].conv3.weight.detach(), state['layer4.2.conv3.weight'])
    with pytest.raises(CheckpointError, match='not an ImageNet ResNet-50'):
        torch.save({'conv1.weight': torch.zeros(64, 6, 7, 7)}, path)
        load_imagenet_backbone(RefinementModule(), path)


def test_dilated_layers_keep_first_block_undilated():
    feats = RefinementModule().feats
    assert feats.layer3[0].conv2.dilation == (1, 1) and feats.layer3[1].conv2.dilation == (2, 2)
    assert feats.layer4[0].conv2.dilation == (1, 1) and feats.layer4[2].conv2.dilation == (4, 4)
    assert feats.layer2[0].conv2.stride == (2, 2) and feats.layer3[0].conv2.stride == (1, 1)


@pytest.mark.parametrize('h,w,expected', [(61, 83, (64, 88)), (64, 64, (64, 64)), (64, 83, (72, 88)),
                                          (7, 8, (8, 16))])
def test_padded_size_follows_authors_rule(h, w, expected):
    assert padded_size(h, w) == expected


def test_odd_size_shapes_finite_and_gradients_reach_stem():
    torch.manual_seed(0)
    model = RefinementModule().train()
    image = torch.randn(2, 3, 61, 83)
    mask = torch.rand(2, 1, 61, 83) * 2 - 1
    out = safe_forward(model, image, mask, keys=OUTPUT_KEYS)
    for key in OUTPUT_KEYS:
        assert out[key].shape == (2, 1, 61, 83), key
        assert torch.isfinite(out[key]).all(), key
    sum(o.mean() for o in out.values()).backward()
    grad = model.feats.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_unpadded_input_rejected_and_reentry_requires_s8():
    model = RefinementModule().eval()
    with pytest.raises(ValueError, match='multiples of 8'):
        model(torch.zeros(1, 3, 61, 83), torch.zeros(1, 1, 61, 83))
    with pytest.raises(ValueError, match='inter_s4 needs inter_s8'):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 64, 64), None, torch.zeros(1, 1, 64, 64))


def test_reentry_skips_levels(seeded_model):
    image, mask = torch.randn(1, 3, 48, 64), torch.zeros(1, 1, 48, 64)
    with torch.no_grad():
        level3_only = seeded_model(image, mask, torch.ones_like(mask), -torch.ones_like(mask))
        from_level2 = seeded_model(image, mask, torch.ones_like(mask))
    assert set(level3_only) == {'out_28_3', 'pred_28_3', 'out_56_2', 'pred_56_2', 'out_224', 'pred_224'}
    assert set(from_level2) == set(level3_only) | {'out_28_2', 'pred_28_2', 'out_56', 'pred_56'}
