"""CRM (Shen et al., CVPR 2022): continuous refinement with an implicit decoder, coarse to fine over scales."""
from methods.base import Method
from methods.crm.config import PRESETS, CRMConfig, CRMTrainConfig
from methods.crm.inference import extra_outputs, refine
from methods.crm.recipe import recipe

METHOD = Method(name='crm', archs=('crm',), InferConfig=CRMConfig, TrainConfig=CRMTrainConfig, refine=refine,
                recipe=recipe, presets=PRESETS, extra_outputs=extra_outputs, fast_arithmetic=True)
