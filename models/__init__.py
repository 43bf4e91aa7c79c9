"""CascadePSP refinement module and its checkpoint handling."""
from models.refinement import OUTPUT_KEYS, RefinementModule

__all__ = ['OUTPUT_KEYS', 'RefinementModule']
