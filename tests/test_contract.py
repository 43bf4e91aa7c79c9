"""The method contract, for every registered method x architecture: build -> forward -> save/load round trip
-> refine a tiny image through Refiner -> one training step through the method's recipe. A new method is
covered by adding it to the registries."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset.readers import training_pairs
from inference.predict import image_tensors, refine_image
from inference.refiner import Refiner
from methods import METHODS, Refined, TrainConfig, method_of
from models.checkpoint import load_model, save_checkpoint
from models.registry import ARCHITECTURES, build_model
from models.seeded import seed_model

CASES = [(m.name, arch) for m in METHODS.values() for arch in m.archs]
COMPONENTS = [(m.name, arch) for m in METHODS.values() for arch in m.components]
#: Tiny inference settings, where a method has them (MagNet's scales end at the test image's 44 x 36).
SMALL = {'L': 32, 'stride': 40, 'chunk': 500}
SMALL_MAGNET = {'scales': '11-9,22-18,44-36', 'crop_size': [11, 9], 'input_size': [16, 16], 'n_points': 0.5}


def test_every_architecture_has_a_method():
    assert sorted(a for _, a in CASES + COMPONENTS) == sorted(ARCHITECTURES)
    for name, arch in CASES + COMPONENTS:
        assert method_of(arch).name == name


@pytest.mark.parametrize('name,arch', COMPONENTS)
def test_component_round_trip(name, arch, tmp_path):
    """A part of a method's network (loaded and trained alone) rebuilds from its file alone."""
    model = seed_model(build_model(arch), 0)
    save_checkpoint(tmp_path / 'm.pth', model)
    loaded = load_model(tmp_path / 'm.pth')
    assert loaded.arch == arch and loaded.hparams == model.hparams
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def _magnet_training(tmp_path, image: np.ndarray) -> dict:
    """MagNet trains its refinement module on a frozen backbone over a datalist: a tiny one here."""
    from models.magnet.system import BACKBONES
    torch.save(seed_model(BACKBONES['fpn'](7), 0).state_dict(), tmp_path / 'fpn.pth')
    (tmp_path / 'dg').mkdir()
    from PIL import Image
    Image.fromarray(image).save(tmp_path / 'dg' / 'a_sat.png')
    label = np.zeros_like(image)
    label[:, 20:] = (0, 255, 255)
    Image.fromarray(label).save(tmp_path / 'dg' / 'a_mask.png')
    (tmp_path / 'list.txt').write_text('dg/a_sat.png\tdg/a_mask.png\ndg/a_sat.png\tdg/a_mask.png\n')
    return dict(dataset='deepglobe', root=str(tmp_path), datalist=str(tmp_path / 'list.txt'), model='fpn',
                pretrained=str(tmp_path / 'fpn.pth'), num_classes=7, scales='11-9,22-18,44-36',
                crop_size=[11, 9], input_size=[16, 16])


@pytest.mark.parametrize('name,arch', CASES)
@pytest.mark.slow
def test_method_contract(name, arch, tmp_path, tiny_data):
    method = METHODS[name]
    assert issubclass(method.TrainConfig, TrainConfig) and dataclasses.is_dataclass(method.InferConfig)
    torch.manual_seed(0)
    model = seed_model(build_model(arch), 0).eval()
    assert model.arch == arch and isinstance(model.hparams, dict)

    # Forward through the method's inference, on a tiny image and a blob mask.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
    mask = np.zeros((36, 44), np.uint8)
    mask[8:28, 10:30] = 255
    small = SMALL_MAGNET if name == 'magnet' else SMALL
    cfg = method.InferConfig(**{k: v for k, v in small.items() if k in method.InferConfig.__dataclass_fields__})
    refined = refine_image(model, *image_tensors(image, mask), cfg)
    assert isinstance(refined, Refined) and refined.probs.shape[0] == 1 and refined.probs.shape[-2:] == (36, 44)
    assert torch.isfinite(refined.probs).all() and 0 <= float(refined.probs.min()) <= float(refined.probs.max()) <= 1

    # Save/load round trip: the file alone rebuilds the architecture, and the output is the same.
    save_checkpoint(tmp_path / 'm.pth', model)
    loaded = load_model(tmp_path / 'm.pth').eval()
    assert loaded.arch == arch and loaded.hparams == model.hparams
    again = refine_image(loaded, *image_tensors(image, mask), cfg)
    torch.testing.assert_close(again.probs, refined.probs, atol=1e-5, rtol=0)

    # Refiner, the practitioner's API.
    if method.takes_mask:
        refiner = Refiner(model=loaded)  # prepared by inference.engine: maybe the cheaper arithmetic
        out = refiner.refine(image, mask, cfg=cfg)
        assert out.dtype == np.uint8 and out.shape == (36, 44)
        expected = refine_image(refiner.model, *image_tensors(image, mask), cfg).probs
        assert np.array_equal(out, (expected[0, 0].numpy().clip(0, 1) * 255).astype(np.uint8))
        torch.testing.assert_close(expected, refined.probs, atol=1e-3, rtol=0)
    else:  # a multi-class method segments the image itself
        labels, coarse = Refiner(model=loaded).segment(image, cfg=cfg)
        assert labels.dtype == np.uint8 and labels.shape == coarse.shape == (36, 44)
        assert np.array_equal(labels, refined.probs.argmax(1)[0].numpy())
        with pytest.raises(ValueError, match='segment'):
            Refiner(model=loaded).refine(image, mask, cfg=cfg)

    # One training step through the recipe, as the generic loop runs it (on the architecture it trains).
    tiny_data()
    if name == 'magnet':
        train_cfg = method.TrainConfig(batch_size=2, device='cpu', workers=0, **_magnet_training(tmp_path, image))
    else:
        train_cfg = method.TrainConfig(arch=arch, crop_size=32, batch_size=2, device='cpu', workers=0, holdout='')
    recipe = method.recipe(train_cfg)
    if train_cfg.arch != arch:
        model = seed_model(build_model(train_cfg.arch, **train_cfg.arch_args), 0)
    model.train()
    recipe.prepare(model)
    items = recipe.pairs() if recipe.pairs else training_pairs(tmp_path / 'data')
    batch = recipe.to_device(next(iter(DataLoader(recipe.dataset(items), 2))), 'cpu')
    terms, outputs = recipe.step(model, batch, torch.autocast('cpu', enabled=False))
    assert torch.isfinite(terms['total_loss']) and terms['total_loss'].requires_grad
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    terms['total_loss'].backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(isinstance(v, float) for v in recipe.metrics(batch, outputs).values())
    columns = recipe.images(batch, outputs)
    assert all(c.shape[0] == 2 and c.shape[1] in (1, 3) for c in columns)
