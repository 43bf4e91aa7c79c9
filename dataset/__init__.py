"""Training and validation data: readers, ground-truth perturbation, augmentation."""
