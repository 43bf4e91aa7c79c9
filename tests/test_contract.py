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


def test_every_architecture_has_a_method():
    assert sorted(a for _, a in CASES) == sorted(ARCHITECTURES)
    for name, arch in CASES:
        assert method_of(arch).name == name


@pytest.mark.parametrize('name,arch', CASES)
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
    small = {'L': 32, 'stride': 40, 'chunk': 500}  # tiny settings where the method has them
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
    out = Refiner(model=loaded).refine(image, mask, cfg=cfg)
    assert out.dtype == np.uint8 and out.shape == (36, 44)
    assert np.array_equal(out, (refined.probs[0, 0].numpy().clip(0, 1) * 255).astype(np.uint8))

    # One training step through the recipe, as the generic loop runs it.
    tiny_data()
    train_cfg = method.TrainConfig(arch=arch, crop_size=32, batch_size=2, device='cpu', workers=0, holdout='')
    recipe = method.recipe(train_cfg)
    model.train()
    recipe.prepare(model)
    batch = recipe.to_device(next(iter(DataLoader(recipe.dataset(training_pairs(tmp_path / 'data')), 2))), 'cpu')
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
