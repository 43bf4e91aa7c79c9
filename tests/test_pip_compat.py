"""The drop-in for the authors' pip package (``segrefine``): the package's constructor and ``refine``, its
weights folder, its threshold and output; with ``compat='pip'`` its outputs bit for bit (checked against the
package itself where it is installed: ``pip install --no-deps segmentation-refinement==0.6``; torchvision,
which it imports for ToTensor and Normalize only, is stood in for here)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

import segrefine

from inference.predict import image_tensors, refine_image
from methods.cascadepsp.config import CascadeConfig
from models.registry import build_model
from models.seeded import seeded_state_dict
from scripts.benchmark_peer import stub_torchvision


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """A released-layout file (``module.`` keys, seeded weights) where the package keeps its model."""
    path = tmp_path_factory.mktemp('weights')
    state = seeded_state_dict(build_model('cascadepsp'), 0)
    torch.save({'module.' + k: v for k, v in state.items()}, path / 'model')
    return path


def _scene(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2) < 1).astype(np.uint8) * 255
    return image, mask


@pytest.mark.slow
def test_the_packages_api_and_inputs(folder, caplog):
    refiner = segrefine.Refiner(device='cpu', model_folder=folder, download_and_check_model=True)
    assert 'MD5 of the model file does not match' in caplog.text  # seeded weights: warned, loaded as theirs
    image, mask = _scene(40, 56)
    out = refiner.refine(image, mask, fast=True, L=64)
    assert out.dtype == np.uint8 and out.shape == (40, 56)
    expected = refine_image(refiner.model, *image_tensors(image, mask), CascadeConfig(L=64, global_only=True,
                                                                                       compat='pip')).probs
    assert np.array_equal(out, (expected[0, 0].numpy().clip(0, 1) * 255).astype(np.uint8))
    same = [refiner.refine(Image.fromarray(image), Image.fromarray(mask), fast=True, L=64),  # PIL
            refiner.refine(image, mask > 0, fast=True, L=64),                                 # bool
            refiner.refine(image, mask.astype(np.float32), fast=True, L=64),                  # float 0/255
            refiner.refine(image, mask[:, :, None].astype(np.int64), fast=True, L=64),        # H x W x 1 int64
            refiner.refine(image, np.where(mask > 0, 200, 100).astype(np.uint8), fast=True, L=64)]  # threshold 127
    assert all(np.array_equal(out, s) for s in same)
    assert len(refiner.refine_batch([image, image], [mask, mask], fast=True, L=64)) == 2
    with pytest.raises(ValueError, match='differ in size'):
        refiner.refine(image, mask[:20], fast=True, L=64)


def test_pip_and_research_differ_only_where_documented(folder):
    refiner = segrefine.Refiner(model_folder=folder, download_and_check_model=False)
    image, mask = _scene(48, 64)
    cfg = CascadeConfig(L=96, compat='pip')
    assert cfg.stride == 48  # L // 2
    pip = refine_image(refiner.model, *image_tensors(image, mask), cfg).probs
    research = refine_image(refiner.model, *image_tensors(image, mask), CascadeConfig(L=96, stride=48)).probs
    assert not torch.equal(pip, research)  # the pip package upscales an image under L for the Global step
    empty = np.zeros_like(mask)
    assert refine_image(refiner.model, *image_tensors(image, empty), CascadeConfig(L=96)).probs.max() == 0
    assert refiner.refine(image, empty, L=96).shape == (48, 64)  # the package runs the network on it


@pytest.fixture(scope='module')
def package():
    import importlib.util
    if importlib.util.find_spec('segmentation_refinement') is None:
        pytest.skip('the authors\' pip package is not installed (pip install --no-deps '
                    'segmentation-refinement==0.6); the bit-for-bit check is skipped')
    stubbed = stub_torchvision()  # the package imports torchvision for ToTensor and Normalize only
    import segmentation_refinement
    yield segmentation_refinement
    if stubbed:  # leave no stand-in behind for other tests
        for name in ('torchvision', 'torchvision.transforms'):
            sys.modules.pop(name, None)


@pytest.mark.parametrize('h, w, fast, L', [(60, 80, False, 96), (60, 80, True, 96), (150, 110, False, 96),
                                           (150, 110, True, 96), (96, 72, False, 96)])
def test_bit_for_bit_with_the_package(package, folder, h, w, fast, L):
    image, mask = _scene(h, w, seed=h)
    theirs = package.Refiner(device='cpu', model_folder=str(folder), download_and_check_model=False)
    exact = segrefine.Refiner(device='cpu', model_folder=folder, download_and_check_model=False, exact=True)
    with torch.no_grad():
        expected = theirs.refine(image, mask, fast=fast, L=L)
    assert np.array_equal(exact.refine(image, mask, fast=fast, L=L), expected)
    # The default, cheaper arithmetic (Winograd convolutions): the package's procedure within rounding.
    fast_math = segrefine.Refiner(device='cpu', model_folder=folder, download_and_check_model=False)
    diff = np.abs(fast_math.refine(image, mask, fast=fast, L=L).astype(int) - expected)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())
