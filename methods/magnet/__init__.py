"""MagNet (Huynh et al., CVPR 2021): multi-class, multi-scale progressive refinement of a segmentation network."""
from methods.base import Method
from methods.magnet.config import MagNetConfig, MagNetTrainConfig
from methods.magnet.inference import refine
from methods.magnet.presets import PRESETS
from methods.magnet.recipe import recipe

METHOD = Method(name='magnet', archs=('magnet',), InferConfig=MagNetConfig, TrainConfig=MagNetTrainConfig,
                refine=refine, recipe=recipe, presets=PRESETS, components=('magnet_refinement', 'magnet_fpn', 'magnet_hrnet18_ocr'),
                takes_mask=False)
