"""Networks and their weights only: the authors' RM and ``lite`` (``models/cascadepsp``), the architecture
registry, checkpoints and weights by name. What to do with a network lives in ``methods/``."""
from models.cascadepsp.lite import LiteRefinementModule
from models.cascadepsp.refinement import OUTPUT_KEYS, RefinementModule
from models.hub import load_pretrained
from models.registry import ARCHITECTURES, build_model

__all__ = ['ARCHITECTURES', 'OUTPUT_KEYS', 'LiteRefinementModule', 'RefinementModule', 'build_model',
           'load_pretrained']
