"""The named training recipes of ``train.py --preset`` for CascadePSP's architectures.

``lite``: the bundled weights, trained on a 2-core CPU (docs/training.md): two stages of the network, then its
arbiter fitted on the stage-2 network's outputs with the recipe of
:class:`methods.cascadepsp.arbiter_recipe.ArbiterConfig` (whose defaults are the shipped arbiter's).
"""
from __future__ import annotations

from dataset.paths import data_root
from methods.base import Stage
from methods.cascadepsp.arbiter_recipe import arbiter_stage

#: Flags every network stage of the bundled ``lite`` shares.
_LITE_CPU = dict(arch='lite', data_root=data_root(), sources=['ecssd', 'DUTS-TE'], device='cpu',
                 batch_size=8, crop_size=192, schedule='cosine', workers=1, log_interval=50)

PRESETS: dict[str, tuple[Stage, ...]] = {
    'lite': (
        # Stage 1: the authors' perturbation mixed with low-resolution and blurred masks; stopped at 2400
        # of a 4000-iteration cosine schedule (its validation had flattened).
        Stage('stage1', dict(_LITE_CPU, degradation='mix', iterations=4000, until=2400, lr=1e-3, warmup=200,
                             save_interval=200, val_dir='data/val_mixed', val_interval=500)),
        # Stage 2: more near-right masks, and the pass the Local step makes over the model's own output.
        Stage('stage2', dict(_LITE_CPU, degradation='mix_gentle', local_pass=0.5, iterations=1900, lr=5e-4,
                             warmup=50, save_interval=100, val_dir='data/val_mixed', val_interval=500),
              load_from=('stage1', 2400)),
        # Stage 3: the arbiter (models/cascadepsp/arbiter.py) fitted on the stage-2 network's outputs.
        Stage('arbiter', {}, load_from=('stage2', None), run=arbiter_stage),
    ),
}
