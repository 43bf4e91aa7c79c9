"""The 3-level cascade run inside one forward pass (paper §3.1), shared by every architecture.

An architecture supplies an encoder and three heads (:class:`ThreeLevelCascade`'s abstract methods);
the level order, the re-entry arguments used by the Local step and the twelve outputs live here once.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

#: The twelve outputs of a full forward pass, by the authors' names. The number is the side a
#: 224 crop has at that stride (28 = stride 8, 56 = stride 4, 224 = stride 1); ``out_*`` are logits,
#: ``pred_*`` their sigmoid; ``_2``/``_3`` mark later cascade levels.
#: Level 1 gives 28; level 2 gives 28_2 and 56; level 3 gives 28_3, 56_2 and 224.
OUTPUT_KEYS = ('out_28', 'pred_28', 'out_28_2', 'pred_28_2', 'out_56', 'pred_56',
               'out_28_3', 'pred_28_3', 'out_56_2', 'pred_56_2', 'out_224', 'pred_224')


class ThreeLevelCascade(nn.Module):
    """Base class: level 1 sees the input mask alone, level 2 adds the level-1 stride-8 output, level 3
    adds the level-2 stride-8 and stride-4 outputs and also predicts at stride 1.

    Subclasses implement :meth:`encode`, :meth:`stride8`, :meth:`stride4` and :meth:`stride1`, and set
    ``arch`` (the registry name, see :mod:`models.registry`) and ``hparams`` (the keyword arguments that
    rebuild them; saved in every checkpoint).
    """

    arch: str = ''
    hparams: dict[str, Any] = {}

    def encode(self, image: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, m3: torch.Tensor) -> Any:
        """Features of the image and three mask channels (all B x . x H x W, masks in [-1, 1])."""
        raise NotImplementedError

    def stride8(self, feats: Any, prior: torch.Tensor) -> torch.Tensor:
        """Stride-8 logits (any resolution; resized to H x W here). ``prior``: B x 1 x H x W in [-1, 1],
        this level's best mask so far (an architecture may ignore it)."""
        raise NotImplementedError

    def stride4(self, feats: Any, prior: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Stride-4 logits and the decoder state that :meth:`stride1` continues from."""
        raise NotImplementedError

    def stride1(self, feats: Any, decoder: Any, image: torch.Tensor, mask: torch.Tensor,
                inter_s4: torch.Tensor) -> torch.Tensor:
        """Full-resolution logits, B x 1 x H x W."""
        raise NotImplementedError

    @staticmethod
    def _resize(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(logits.shape[-2:]) == size:
            return logits
        return F.interpolate(logits, size=size, mode='bilinear', align_corners=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor,
                inter_s8: torch.Tensor | None = None, inter_s4: torch.Tensor | None = None,
                outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Run the cascade.

        Args:
            image: B x 3 x H x W, RGB/255 normalised with the ImageNet mean/std. H and W must be
                multiples of 8 (callers pad, see :func:`methods.cascadepsp.padding.safe_forward`).
            mask: B x 1 x H x W input mask in [-1, 1].
            inter_s8: optional B x 1 x H x W map in [-1, 1] that replaces the level-1 output, so
                level 1 is skipped (the Local step passes the binarised global mask).
            inter_s4: optional B x 1 x H x W map in [-1, 1]; with ``inter_s8`` it replaces the level-2
                outputs (as the stride-8 and stride-4 inputs of level 3), so levels 1 and 2 are skipped.
            outputs: the keys wanted (None: all). Level 3's stride-8 and stride-4 outputs, and each ``pred_*``,
                are computed only when asked for: inference wants one or two full-resolution maps of twelve.

        Returns:
            A dict of B x 1 x H x W tensors keyed as in :data:`OUTPUT_KEYS`: logits ``out_*`` and
            probabilities ``pred_*`` in [0, 1]. Levels that were skipped give no entry, nor do keys that
            ``outputs`` leaves out.
        """
        if image.shape[-2] % 8 or image.shape[-1] % 8:
            raise ValueError(f'image sides must be multiples of 8, got {tuple(image.shape[-2:])}; '
                             'pad it first (methods.cascadepsp.padding)')
        if inter_s4 is not None and inter_s8 is None:
            raise ValueError('inter_s4 needs inter_s8: level 3 takes both level-2 outputs')
        size = tuple(image.shape[-2:])
        out: dict[str, torch.Tensor] = {}

        if inter_s8 is None:  # level 1: mask in all three mask channels
            feats = self.encode(image, mask, mask, mask)
            out['out_28'] = self._resize(self.stride8(feats, mask), size)
            inter_s8 = torch.tanh(out['out_28'])

        feats = None  # the previous level's features go before the next level's are made (peak memory)
        if inter_s4 is None:  # level 2: refine the level-1 stride-8 output
            feats = self.encode(image, mask, inter_s8, inter_s8)
            out['out_28_2'] = self._resize(self.stride8(feats, inter_s8), size)
            s4, _ = self.stride4(feats, inter_s8)
            out['out_56'] = self._resize(s4, size)
            inter_s8, inter_s4 = torch.tanh(out['out_28_2']), torch.tanh(out['out_56'])

        # Level 3: all three strides (its stride-8 and stride-4 maps only when asked for).
        def wanted(key: str) -> bool:  # key without its out_/pred_ prefix
            return outputs is None or f'out_{key}' in outputs or f'pred_{key}' in outputs

        feats = None  # as above
        feats = self.encode(image, mask, inter_s8, inter_s4)
        if wanted('28_3'):
            out['out_28_3'] = self._resize(self.stride8(feats, inter_s8), size)
        s4, decoder = self.stride4(feats, inter_s4)
        if wanted('56_2'):
            out['out_56_2'] = self._resize(s4, size)
        out['out_224'] = self.stride1(feats, decoder, image, mask, inter_s4)

        for key in list(out):
            if outputs is None or 'pred' + key[3:] in outputs:
                out['pred' + key[3:]] = torch.sigmoid(out[key].float())  # float32 even under autocast
        return out if outputs is None else {k: v for k, v in out.items() if k in outputs}
