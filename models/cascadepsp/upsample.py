"""Decoder block: x2 bilinear upsampling fused with a skip connection through pre-activation convs."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.fastconv import bn_affine, plain_ops


def upsample_concat(x: torch.Tensor, skip: torch.Tensor, x_shift: torch.Tensor | None = None,
                    x_scale: torch.Tensor | None = None) -> torch.Tensor:
    """``cat([upsample(x * x_scale + x_shift), skip], 1)``, the bilinear upsampling (align_corners=False) to
    ``skip``'s size written straight into the result (B x (cx + cs) x H x W): one full-resolution tensor where
    ``F.interpolate`` and ``torch.cat`` make two. The optional per-channel affine map (cx x 1 x 1 each) runs on
    ``x`` before the upsampling, which it commutes with (the weights sum to one). Without it, bit-identical to
    the two calls. Inference only: writes into a buffer break autograd."""
    c, (h, w) = x.shape[1], skip.shape[-2:]
    out = x.new_empty(x.shape[0], c + skip.shape[1], h, w)
    if x_scale is not None:
        x = torch.addcmul(x_shift, x, x_scale)
    torch._C._nn.upsample_bilinear2d(x, [h, w], False, out=out[:, :c])
    out[:, c:] = skip
    return out


def _preact_convs(in_channels: int, out_channels: int) -> nn.Sequential:
    # BN-ReLU-conv twice; the Sequential indices (0, 2, 3, 5) are the released checkpoint's names.
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
    )


class UpsampleBlock(nn.Module):
    """Upsample ``x`` (B x x_channels x h x w) by 2, concatenate ``skip`` (B x s x 2h x 2w) and refine.

    ``in_channels`` = x_channels + s. Output: B x out_channels x 2h x 2w.

    Unless ``exact`` (an attribute, not saved), the 1x1 shortcut runs before the upsampling (a 1x1
    convolution commutes with bilinear upsampling, whose weights sum to one): the same function on a quarter
    of the pixels, equal to the authors' order (``exact = True``) up to float rounding. In inference (batch
    norms in eval mode, no gradients) the block also saves memory (:meth:`_first_conv`).
    """

    exact = False
    #: In inference, the concatenated input of the first convolution is built by strips of rows of about this
    #: many bytes when it would be larger than two strips. At 904 x 904 only the RM's stride-1 block (0.8 GiB)
    #: is cut, in 4 strips: the same speed, 0.8 GiB less peak memory. 64 MiB strips also cut the stride-4
    #: block, which NNPACK then ran slower on 58-row strips.
    strip_bytes = 256 * 2 ** 20

    def __init__(self, x_channels: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _preact_convs(in_channels, out_channels)
        self.conv2 = _preact_convs(out_channels, out_channels)
        self.shortcut = nn.Conv2d(x_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = None
        if self.exact or self.conv[0].training or plain_ops():
            up = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
            p = self.conv(torch.cat([up, skip], 1))
        else:
            p = self.conv[5](self._first_conv(x, skip))
        if self.exact:
            p += self.shortcut(up)
        else:
            del up
            p += F.interpolate(self.shortcut(x), scale_factor=2, mode='bilinear', align_corners=False)
        return self.conv2(p).add_(p)

    def _first_conv(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``self.conv[:5](cat([upsample(x), skip], 1))`` (norm, ReLU, 3x3 convolution, norm, ReLU) in inference.

        The authors' form holds the concatenation and its normalised copy, two full-resolution tensors of
        ``in_channels`` channels (1.6 GiB at 904 x 904 for the RM's last block). Here the first norm, an affine
        map per channel (eval mode), runs on ``x`` before the upsampling, which it commutes with; the
        upsampling, the normalised ``skip`` and the ReLU are written into one buffer (:func:`upsample_concat`);
        and above two :attr:`strip_bytes`, the buffer is built and convolved by strips of output rows, each from
        the rows of ``x`` and ``skip`` it needs plus a margin where the upsampling and the convolution see past
        the strip (interior rows are then the same as the whole map's; only the Winograd transform's rounding,
        which depends on where its tiles fall, differs). B x out_channels x 2h x 2w.
        """
        first = self.conv[2:5]
        scale, shift = (t.to(x.dtype)[:, None, None] for t in bn_affine(self.conv[0]))
        c, h, (height, width) = x.shape[1], x.shape[-2], skip.shape[-2:]

        def piece(xs: torch.Tensor, ss: torch.Tensor) -> torch.Tensor:
            buffer = upsample_concat(xs, ss, shift[:c], scale[:c])
            buffer[:, c:].mul_(scale[c:]).add_(shift[c:])
            return first(buffer.relu_())

        rows = max(16, self.strip_bytes // (skip.shape[0] * (c + skip.shape[1]) * width * x.element_size()))
        if height <= 2 * rows:
            return piece(x, skip)
        out = None
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            # x rows whose upsampling gives output rows [2 y0, 2 y1): the first and last two are off (clamped
            # interpolation) and the convolution needs one more, so 3 rows of margin unless at the map's border.
            y0, y1 = max(0, (top - 3) // 2), min(h, (bottom + 4) // 2)
            result = piece(x[:, :, y0:y1], skip[:, :, 2 * y0:2 * y1])
            if out is None:
                out = result.new_empty(*result.shape[:2], height, width)
            out[:, :, top:bottom] = result[:, :, top - 2 * y0:bottom - 2 * y0]
        return out
