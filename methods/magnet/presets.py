"""The authors' sample scripts as named settings (VinAIResearch/MagNet ``scripts/{cityscapes,deepglobe}/``).

* :data:`TEST_PRESETS`: ``test_magnet.sh`` and ``test_magnet_fast.sh`` per dataset, as
  ``eval.py --method magnet --preset NAME``; explicit flags override a preset's values.
* :data:`DEMO_PRESETS`: ``demo_magnet.sh`` and ``demo_magnet_fast.sh``, as ``scripts/demo_magnet.py``.
* :data:`PRESETS`: ``train_magnet.sh`` per dataset, as ``train.py EXP_ID --method magnet --preset NAME``.

Weights are named as the authors' ``checkpoints/download_*.sh`` save them (``models.hub.MAGNET_FILES``): fetched
into the weights cache once, or put there by hand. Paths of data are the scripts' own, relative to the folder
the command runs in. The published mIoU each test preset should give is in :data:`PUBLISHED_MIOU` (the
authors' README; docs/magnet.md).
"""
from __future__ import annotations

from typing import Any

from methods.base import Stage

#: Per dataset: the settings every script of that dataset shares (MAGNET.md §0).
_DATASET: dict[str, dict[str, Any]] = {
    'cityscapes': dict(dataset='cityscapes', root='data/cityscapes', scales='256-128,512-256,1024-512,2048-1024',
                       crop_size=[256, 128], input_size=[256, 128], model='hrnet18+ocr',
                       pretrained='cityscapes_hrnet.pth', num_classes=19),
    'deepglobe': dict(dataset='deepglobe', root='data/deepglobe', scales='612-612,1224-1224,2448-2448',
                      crop_size=[612, 612], input_size=[508, 508], model='fpn', pretrained='deepglobe_fpn.pth',
                      num_classes=7),
}
_REFINEMENT = {'cityscapes': ['cityscapes_refinement_512.pth', 'cityscapes_refinement_1024.pth',
                              'cityscapes_refinement_2048.pth'],
               'deepglobe': ['deepglobe_refinement.pth']}
_TEST = {'cityscapes': dict(datalist='data/list/cityscapes/val.txt', smooth_kernel=5),
         'deepglobe': dict(datalist='data/list/deepglobe/test.txt', smooth_kernel=11)}
#: MagNet and MagNet-Fast's point and patch settings per dataset.
_MAGNET = {'cityscapes': dict(n_patches=-1, n_points=32768), 'deepglobe': dict(n_patches=-1, n_points=0.75)}
_FAST = {'cityscapes': dict(n_patches=4, n_points=0.9), 'deepglobe': dict(n_patches=3, n_points=0.9)}


def _test(dataset: str, fast: bool) -> dict[str, Any]:
    return {**_DATASET[dataset], 'pretrained_refinement': list(_REFINEMENT[dataset]), **_TEST[dataset],
            **(_FAST if fast else _MAGNET)[dataset], 'sub_batch_size': 1, 'save_pred': True,
            'save_dir': f'test_results/{dataset}{"_fast" if fast else ""}'}


#: ``eval.py --method magnet --preset NAME``: the test scripts' flags.
TEST_PRESETS: dict[str, dict[str, Any]] = {
    f'{dataset}{"_fast" if fast else ""}': _test(dataset, fast) for dataset in _DATASET for fast in (False, True)}
#: The demo scripts: the test settings of one photo; ``demo_magnet_fast.sh`` for DeepGlobe batches 2 patches.
DEMO_PRESETS: dict[str, dict[str, Any]] = {
    name: {k: v for k, v in values.items() if k not in ('root', 'datalist', 'save_pred', 'save_dir')}
    for name, values in TEST_PRESETS.items()}
DEMO_PRESETS['deepglobe_fast']['sub_batch_size'] = 2
#: The authors' README: mIoU (%) of the backbone alone, MagNet and MagNet-Fast with the released weights.
PUBLISHED_MIOU = {'cityscapes': {'backbone': 63.24, 'magnet': 68.20, 'fast': 67.37},
                  'deepglobe': {'backbone': 67.22, 'magnet': 72.10, 'fast': 68.22}}


#: ``train.py EXP_ID --method magnet --preset NAME``: ``train_magnet.sh`` of each dataset.
PRESETS: dict[str, tuple[Stage, ...]] = {
    dataset: (Stage('refinement', {**values, 'datalist': f'data/list/{dataset}/train.txt', 'batch_size': 8,
                                   'lr': 1e-3}),)
    for dataset, values in _DATASET.items()}
