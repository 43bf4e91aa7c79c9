"""MagNet's networks (Huynh et al., CVPR 2021): the refinement module and the two segmentation backbones, with
the authors' module names so their released files load strictly (see docs/magnet.md)."""
