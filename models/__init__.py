"""CascadePSP refinement module, its cascade inference and its checkpoint handling."""
from models.refinement import OUTPUT_KEYS, RefinementModule
from models.refiner import Refiner, refine_image

__all__ = ['OUTPUT_KEYS', 'RefinementModule', 'Refiner', 'refine_image']
