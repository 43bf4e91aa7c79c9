"""CascadePSP (Cheng et al., CVPR 2020): Global+Local cascade refinement with a three-level network."""
from methods.base import Method
from methods.cascadepsp.config import CascadeConfig, CascadeTrainConfig
from methods.cascadepsp.inference import refine
from methods.cascadepsp.presets import PRESETS
from methods.cascadepsp.recipe import recipe

METHOD = Method(name='cascadepsp', archs=('cascadepsp', 'lite'), InferConfig=CascadeConfig,
                TrainConfig=CascadeTrainConfig, refine=refine, recipe=recipe, presets=PRESETS,
                fast_arithmetic=True)
