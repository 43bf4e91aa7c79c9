"""Refinement modules (the authors' RM and the compact lite), their cascade inference, checkpoints and
weights by name."""
from models.hub import load_pretrained
from models.lite import LiteRefinementModule
from models.refinement import OUTPUT_KEYS, RefinementModule
from models.refiner import Refiner, refine_image
from models.registry import ARCHITECTURES, build_model

__all__ = ['ARCHITECTURES', 'OUTPUT_KEYS', 'LiteRefinementModule', 'RefinementModule', 'Refiner', 'build_model',
           'load_pretrained', 'refine_image']
