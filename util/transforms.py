"""Conversions between uint8 arrays and the normalised tensors the model takes.

Conventions used throughout the project:
  * image tensors: B x 3 x H x W float32, RGB/255 normalised with the ImageNet mean/std;
  * mask tensors: B x 1 x H x W float32 in [-1, 1] (-1 background, +1 foreground);
  * probability tensors: B x 1 x H x W float32 in [0, 1].
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _mean_std(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    def as_tensor(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    return as_tensor(IMAGENET_MEAN), as_tensor(IMAGENET_STD)


def normalize_image(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H x W x 3 uint8 RGB array, B x 3 x H x W uint8 tensor (0..255) or B x 3 x H x W float tensor in [0, 1]
    -> normalised float tensor.

    A single array gives a 1 x 3 x H x W tensor.
    """
    if isinstance(image, np.ndarray):
        image = rgb_tensor(image)
    if image.dtype == torch.uint8:  # in place: one full-resolution float buffer
        mean, std = _mean_std(torch.zeros(()))
        return image.float().div_(255).sub_(mean).div_(std)
    mean, std = _mean_std(image)
    return (image - mean) / std


def as_normalized(image: torch.Tensor) -> torch.Tensor:
    """A method's image input as the network takes it: a uint8 0..255 tensor is normalised (see
    :func:`normalize_image`), an already normalised float tensor is returned as it is."""
    return normalize_image(image) if image.dtype == torch.uint8 else image


def unit_rgb(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 RGB array (uint8, or float in 0..255) -> 1 x 3 x H x W float32 in [0, 1]: a colour guided
    filter's guide. A new tensor; the array is not written to."""
    return torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1)[None] / 255


def rgb_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 RGB array -> 1 x 3 x H x W uint8 tensor sharing its memory, never written to (the
    project only reads it: a read-only array, as PIL gives, is shared too instead of copied).

    Batch-major strides (a batch of one, as indexing a batch gives): the convolutions' summation order, and
    so the last bits of the outputs, depend on them.
    """
    image = np.ascontiguousarray(image)
    with warnings.catch_warnings():  # torch warns that a read-only array could be written through the tensor
        warnings.simplefilter('ignore', UserWarning)
        return torch.from_numpy(image).unsqueeze(0).permute(0, 3, 1, 2)


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """H x W uint8 mask (0..255) -> 1 x 1 x H x W float32 in [0, 1] (no binarisation)."""
    return torch.from_numpy(np.array(mask, copy=True))[None, None].float().div_(255)


def denormalize_image(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_image`: B x 3 x H x W normalised -> RGB in [0, 1]."""
    mean, std = _mean_std(image)
    return image * std + mean


def normalize_mask(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H x W uint8 mask in 0..255 (or a tensor in [0, 1]) -> 1 x 1 x H x W (or same-rank) tensor in [-1, 1].

    No binarisation: soft masks stay soft, as in the authors' research pipeline.
    """
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.array(mask, copy=True))[None, None].float() / 255
    return mask * 2 - 1


def probability_to_uint8(prob: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 floor(p * 255), as the authors save and return masks."""
    if isinstance(prob, torch.Tensor):  # one float temporary, then the uint8 (the same truncation as numpy)
        return prob.detach().float().clamp(0, 1).mul_(255).to(torch.uint8).cpu().numpy()
    return (np.clip(prob, 0, 1) * 255).astype(np.uint8)


def binarize(mask: np.ndarray, threshold: int = 127) -> np.ndarray:
    """H x W uint8 mask (0..255) -> 0/255 uint8: foreground where above ``threshold`` (the authors' 127)."""
    return np.where(np.asarray(mask) > threshold, 255, 0).astype(np.uint8)
