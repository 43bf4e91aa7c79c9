"""``lite``: a compact refinement module for CPUs, run by the same 3-level cascade as the RM.

Design (sizes at the defaults; every size is a hyper-parameter saved with the weights):
  * encoder: a dilated ResNet-18-style net of basic blocks on the 6-channel input, output stride 8;
    pyramid pooling (bins 1, 2, 3, 6) on its last stage;
  * stride-8 and stride-4 heads as in the RM, the stride-4 one after one upsampling block that fuses the
    stride-4 encoder features;
  * stride 1: an upsampling block to stride 2 (fusing the stem features), then a *learnable guided filter*
    (Wu et al., CVPR 2018) at full resolution: the image edges, not full-resolution convolutions, give the
    output its boundary, so the cost at full resolution is a handful of box filters;
  * every head is a residual on the best mask the level has (``prior`` in :class:`ThreeLevelCascade`),
    scaled by a learned factor: an untrained or lightly trained net returns its input mask instead of
    its own weak segmentation, which is what a refiner must do with a mask that is already right.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.guided_filter import guided_filter
from models.cascadepsp.arbiter import Arbiter
from models.cascadepsp.psp import PyramidPooling
from models.cascadepsp.three_level import ThreeLevelCascade
from models.cascadepsp.upsample import upsample_concat
from util.fastconv import plain_ops
from util.transforms import denormalize_image


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs); a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride, dilation)
        self.conv2 = _conv_bn(cout, cout, 1, dilation, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class FuseUp(nn.Module):
    """x2 bilinear upsampling of ``x``, concatenated with ``skip``, then two 3x3 conv-BN-ReLU.

    x: B x cx x h x w, skip: B x cs x 2h x 2w -> B x cout x 2h x 2w.
    """

    def __init__(self, cx: int, cs: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_bn(cx + cs, cout), _conv_bn(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if not plain_ops():  # inference: the same values, one full-size tensor fewer
            return self.conv(upsample_concat(x, skip))
        x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return self.conv(torch.cat([x, skip], 1))


def _head(cin: int) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(cin, 32, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 1, 1))
    nn.init.zeros_(head[2].weight)  # start as the identity on the prior (see the module docstring)
    nn.init.zeros_(head[2].bias)
    return head


class LiteRefinementModule(ThreeLevelCascade):
    """Compact RM for 2-core CPUs; same inputs, cascade and twelve outputs as :class:`RefinementModule`.

    Args:
        widths: channels of the stem (stride 2), layer1 (stride 4), layer2 (stride 8), layer3 and layer4
            (stride 8, dilated 2 and 4).
        blocks: basic blocks in layer1..layer4.
        psp_channels: output channels of the pyramid pooling.
        up_channels: channels of the stride-4 and stride-2 upsampling blocks.
        gf_radius: guided-filter window radius, in input pixels (the window is 2r+1 wide).
        gf_eps: initial guided-filter regulariser, in squared [0, 1]-RGB units (learned, kept positive).
        prior_scale: initial factor of the residual prior (logits = head + scale * prior in [-1, 1]).
        arbiter: hyper-parameters of an :class:`~models.cascadepsp.arbiter.Arbiter` that the inference procedure
            runs on the cascade's full-resolution output (None: none; every bundled version since the third has one).
    """

    arch = 'lite'

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96, 128), blocks: tuple[int, ...] = (1, 1, 1, 1),
                 psp_channels: int = 96, up_channels: tuple[int, int] = (48, 16), gf_radius: int = 4,
                 gf_eps: float = 1e-3, prior_scale: float = 3.0, arbiter: dict | None = None) -> None:
        super().__init__()
        widths, blocks, up_channels = tuple(widths), tuple(blocks), tuple(up_channels)
        if len(widths) != 5 or len(blocks) != 4 or len(up_channels) != 2:
            raise ValueError(f'lite: widths need 5 values, blocks 4, up_channels 2; got {widths}, {blocks}, {up_channels}')
        if min(*widths, *blocks, *up_channels, psp_channels, gf_radius) < 1 or not gf_eps > 0:
            raise ValueError(f'lite: sizes and gf_radius must be at least 1 and gf_eps positive; got widths {widths}, '
                             f'blocks {blocks}, up_channels {up_channels}, psp_channels {psp_channels}, '
                             f'gf_radius {gf_radius}, gf_eps {gf_eps}')
        self.hparams = dict(widths=list(widths), blocks=list(blocks), psp_channels=psp_channels,
                            up_channels=list(up_channels), gf_radius=gf_radius, gf_eps=gf_eps,
                            prior_scale=prior_scale)
        self.gf_radius = gf_radius
        self.set_arbiter(Arbiter(**arbiter) if arbiter is not None else None)
        self.stem = _conv_bn(6, widths[0], stride=2)
        self.down = _conv_bn(widths[0], widths[1], stride=2)

        def layer(cin: int, cout: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(BasicBlock(cin, cout, stride, dilation),
                                 *[BasicBlock(cout, cout, 1, dilation) for _ in range(n - 1)])

        self.layer1 = layer(widths[1], widths[1], blocks[0])
        self.layer2 = layer(widths[1], widths[2], blocks[1], stride=2)
        self.layer3 = layer(widths[2], widths[3], blocks[2], dilation=2)
        self.layer4 = layer(widths[3], widths[4], blocks[3], dilation=4)
        self.psp = PyramidPooling(widths[4], psp_channels, (1, 2, 3, 6))
        self.up_1 = FuseUp(psp_channels, widths[1], up_channels[0])   # stride 8 -> 4
        self.up_2 = FuseUp(up_channels[0], widths[0], up_channels[1])  # stride 4 -> 2
        self.final_28 = _head(psp_channels)
        self.final_56 = _head(up_channels[0])
        self.final_s2 = _head(up_channels[1])
        # Guide for the filter: the RGB image plus a learned per-pixel correction (zero at the start, so
        # the untrained filter is a classical colour guided filter).
        self.guide = nn.Sequential(nn.Conv2d(3, 16, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(16, 3, 1))
        nn.init.zeros_(self.guide[2].weight)
        nn.init.zeros_(self.guide[2].bias)
        self.log_eps = nn.Parameter(torch.tensor(math.log(gf_eps)))
        # Residual factors: stride 8, stride 4, and stride 1 on (input mask, level-2 stride-4 output).
        self.prior_scale = nn.Parameter(torch.tensor([prior_scale, prior_scale, prior_scale, 0.0]))

    def set_arbiter(self, arbiter: Arbiter | None) -> None:
        """Attach (or remove, with None) the arbiter; its hyper-parameters go into ``hparams`` and so into every
        checkpoint (not at all without one: earlier checkpoints keep their exact hyper-parameters)."""
        self.arbiter = arbiter
        self.hparams.pop('arbiter', None)
        if arbiter is not None:
            self.hparams['arbiter'] = dict(arbiter.hparams)

    def encode(self, image: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, m3: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stem = self.stem(torch.cat((image, m1, m2, m3), 1))
        s4 = self.layer1(self.down(stem))
        f = self.layer4(self.layer3(self.layer2(s4)))
        return self.psp(f), stem, s4

    def stride8(self, feats, prior: torch.Tensor) -> torch.Tensor:
        return self._resize(self.final_28(feats[0]), tuple(prior.shape[-2:])) + self.prior_scale[0] * prior

    def stride4(self, feats, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.up_1(feats[0], feats[2])
        return self._resize(self.final_56(p), tuple(prior.shape[-2:])) + self.prior_scale[1] * prior, p

    def stride1(self, feats, decoder: torch.Tensor, image: torch.Tensor, mask: torch.Tensor,
                inter_s4: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        s2 = self.up_2(decoder, feats[1])
        logits = (self._resize(self.final_s2(s2), size)
                  + self.prior_scale[2] * mask + self.prior_scale[3] * inter_s4)
        rgb = denormalize_image(image)
        guide = rgb + self.guide(image)
        p = torch.sigmoid(logits)
        q = guided_filter(guide, p, self.gf_radius, self.log_eps.exp()).clamp(1e-4, 1 - 1e-4)
        return torch.log(q) - torch.log1p(-q)  # logits, so pred_224 = sigmoid(out_224) = q
