"""Evaluation beyond the paper's folder metric: the learning benchmark (coarse families, baselines) and
the scene-parsing pipeline (paper §5)."""
