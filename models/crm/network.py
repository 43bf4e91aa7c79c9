"""CRM's network (Shen et al., CVPR 2022): an encoder and an implicit decoder queried at any coordinate.

Module names follow the authors' released checkpoint (``feats``, ``aspp_``, ``imnet.layers``), so its state
dict loads without key mapping. Details (see docs/crm.md):

* encoder ``resnet50``: the authors' dilated ResNet-50 on the 4-channel input (RGB + mask), returning x_1
  (stem after BN+ReLU, stride 2, 64 ch), x_2 (layer1, stride 4, 256 ch) and x_3 (layer3, stride 8, 1024 ch).
  layer4 is kept so that the released file loads, but never computed (the authors compute and discard it).
* "ASPP" (no atrous branch despite the name): per input a 1x1 conv-BN-ReLU, then a second BN-ReLU and
  dropout; x_2's and x_3's branches are bilinearly upsampled (align_corners=True) to x_1's size,
  concatenated and fused by a 3x3 conv-BN-ReLU-dropout: the features, 256 ch at stride 2.
* implicit decoder (LIIF-style local ensemble): for each query, the four nearest feature cells' features,
  the relative position, the absolute coordinate and the cell size go through an MLP (262 -> 32 x 4 -> 1);
  the four predictions are blended with bilinear (diagonally swapped area) weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.cascadepsp.lite import BasicBlock, _conv_bn
from models.resnet import ResNet50


def make_coord(shape: tuple[int, ...], ranges: tuple[tuple[float, float], ...] | None = None,
               flatten: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of a grid, float32, as the authors compute them (bit for bit).

    For an axis of n cells over (v0, v1) (default (-1, 1)): r = (v1 - v0) / (2n) and the centres are
    ``float32(v0 + r) + float32(2r) * k``. Returns H x W x 2 (row, column), or (H * W) x 2 row-major with
    ``flatten``.
    """
    seqs = [axis_coord(n, *(ranges[i] if ranges else (-1, 1)), device=device) for i, n in enumerate(shape)]
    grid = torch.stack(torch.meshgrid(*seqs, indexing='ij'), dim=-1)
    return grid.view(-1, grid.shape[-1]) if flatten else grid


def axis_coord(n: int, v0: float = -1, v1: float = 1, device: torch.device | str | None = None) -> torch.Tensor:
    """The n cell centres of one axis over (v0, v1), float32 (see :func:`make_coord`)."""
    r = (v1 - v0) / (2 * n)
    return v0 + r + (2 * r) * torch.arange(n, device=device).float()


class _Branch(nn.Module):
    """1x1 conv (no bias), BN, ReLU: the authors' ``_ASPPModule`` at kernel size 1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.atrous_conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class FeatureFusion(nn.Module):
    """The authors' ``ASPP_no4level``: three inputs (strides 2, 4, 8) -> B x ``out`` x H/2 x W/2."""

    def __init__(self, channels: tuple[int, int, int] = (64, 256, 1024), widths: tuple[int, int, int] = (64, 64, 128),
                 out: int = 256) -> None:
        super().__init__()
        names = ('128', '256', '1024')  # the released names (and order: the branches, then their second BNs)
        for cin, cout, name in zip(channels, widths, names):
            setattr(self, f'aspp1_{name}', _Branch(cin, cout))
        for cout, name in zip(widths, names):
            setattr(self, f'bn1_{name}', nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        self.last_conv = nn.Sequential(nn.Conv2d(sum(widths), out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                                       nn.ReLU(inplace=True), nn.Dropout(0.5))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        size = x1.shape[-2:]
        outs = []
        for x, name in ((x1, '128'), (x2, '256'), (x3, '1024')):
            y = self.dropout(self.relu(getattr(self, f'bn1_{name}')(getattr(self, f'aspp1_{name}')(x))))
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode='bilinear', align_corners=True)
            outs.append(y)
        return self.last_conv(torch.cat(outs, 1))


def _neighbours(coord: torch.Tensor, hf: int, wf: int):
    """The query coordinates (B x Q x 2) moved towards each of the four nearest cells of an hf x wf feature grid,
    as the authors move them (half a cell, plus 1e-6, clamped inside (-1, 1))."""
    rx, ry = 2 / hf / 2, 2 / wf / 2  # the authors' names: rx steps rows, ry columns
    for vx in (-1, 1):
        for vy in (-1, 1):
            shifted = coord.clone()
            shifted[:, :, 0] += vx * rx + 1e-6
            shifted[:, :, 1] += vy * ry + 1e-6
            yield shifted.clamp_(-1 + 1e-6, 1 - 1e-6)


def _scaled(x: torch.Tensor, hf: int, wf: int) -> torch.Tensor:
    """B x Q x 2 (rows, columns) in place times (hf, wf): offsets and cells in units of a feature cell."""
    x[:, :, 0] *= hf
    x[:, :, 1] *= wf
    return x


def _blend(preds: list[torch.Tensor], areas: list[torch.Tensor]) -> torch.Tensor:
    """The local ensemble: the four neighbours' predictions (each B x Q x 1), each weighted by its opposite
    neighbour's area (the authors' diagonal swap) over their sum."""
    total = torch.stack(areas).sum(0)
    areas = [areas[3], areas[2], areas[1], areas[0]]
    out = 0
    for pred, area in zip(preds, areas):
        out = out + pred * (area / total).unsqueeze(-1)
    return out


class MLP(nn.Module):
    """Linear-ReLU stack; the released keys are ``layers.{0,2,4,6,8}``."""

    def __init__(self, cin: int, hidden: tuple[int, ...] = (32, 32, 32, 32), cout: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.ReLU()]
            cin = h
        self.layers = nn.Sequential(*layers, nn.Linear(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CompactEncoder(nn.Module):
    """A compact CPU encoder with the ResNet-50's three outputs (strides 2, 4, 8): basic blocks of widths
    (stem, stride 4, stride 8, dilated stride 8), as in ``lite``."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 96), in_channels: int = 4) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = _conv_bn(in_channels, w0, stride=2)
        self.layer1 = nn.Sequential(_conv_bn(w0, w1, stride=2), BasicBlock(w1, w1))
        self.layer2 = BasicBlock(w1, w2, stride=2)
        self.layer3 = BasicBlock(w2, w3, dilation=2)
        self.channels = (w0, w1, w3)

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x1 = self.stem(x)
        x2 = self.layer1(x1)
        return x1, x2, self.layer3(self.layer2(x2))


class CRMNet(nn.Module):
    """CRM: features at stride 2 from (image, mask), decoded at any query coordinate.

    Args:
        encoder: ``resnet50`` (the authors') or ``compact`` (:class:`CompactEncoder`, for CPUs).
        encoder_widths: the compact encoder's widths (ignored for ``resnet50``).
        fusion_widths: channels of the three fusion branches (strides 2, 4, 8).
        feat_channels: channels of the fused features.
        mlp_hidden: widths of the decoder MLP's hidden layers.
    """

    arch = 'crm'
    exact = False

    def __init__(self, encoder: str = 'resnet50', encoder_widths: tuple[int, ...] = (16, 32, 64, 96),
                 fusion_widths: tuple[int, int, int] = (64, 64, 128), feat_channels: int = 256,
                 mlp_hidden: tuple[int, ...] = (32, 32, 32, 32)) -> None:
        super().__init__()
        if encoder == 'resnet50':
            self.feats: nn.Module = ResNet50(in_channels=4)
            channels = (64, 256, 1024)
        elif encoder == 'compact':
            if len(encoder_widths) != 4:
                raise ValueError(f'crm: the compact encoder needs 4 widths, got {list(encoder_widths)}')
            self.feats = CompactEncoder(tuple(encoder_widths))
            channels = self.feats.channels
        else:
            raise ValueError(f"crm: unknown encoder {encoder!r}; known: 'resnet50', 'compact'")
        if len(fusion_widths) != 3:
            raise ValueError(f'crm: fusion_widths needs 3 values, got {list(fusion_widths)}')
        self.hparams = dict(encoder=encoder, encoder_widths=list(encoder_widths), fusion_widths=list(fusion_widths),
                            feat_channels=feat_channels, mlp_hidden=list(mlp_hidden))
        self.aspp_ = FeatureFusion(channels, tuple(fusion_widths), feat_channels)
        self.imnet = MLP(feat_channels + 6, tuple(mlp_hidden), 1)

    def features(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """image: B x 3 x h x w normalised RGB; seg: B x 1 x h x w in [-1, 1] -> B x C x ceil(h/2) x ceil(w/2)."""
        x1, x2, x3 = self.feats.stages(torch.cat((image, seg), 1))
        return self.aspp_(x1, x2, x3)

    def decode(self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Logits B x Q x 1 at ``coord`` (B x Q x 2, (row, column) in [-1, 1]) for query cells ``cell``
        (B x Q x 2, the query grid's cell size in the same units).

        Unless ``exact`` (an attribute, not saved; set by :func:`inference.engine.prepare`), or in training, the
        decoder's first layer is split: its part on the 256 feature channels runs once per feature cell, as a
        1 x 1 convolution before the look-up (a query then gathers 32 values per neighbour instead of 256, and
        multiplies 6 inputs instead of 262). The same function up to float rounding (a sum split in two)."""
        b, c, hf, wf = feat.shape
        if self.splits_decoder:
            return self.decode_table(self.lookup_table(feat), coord, cell)
        feat_coord = make_coord((hf, wf), flatten=False, device=feat.device).permute(2, 0, 1)[None].expand(b, 2, hf, wf)
        rel_cell = _scaled(cell.clone(), hf, wf)
        preds, areas = [], []
        for shifted in _neighbours(coord, hf, wf):
            grid = shifted.flip(-1).unsqueeze(1)
            q_feat = F.grid_sample(feat, grid, mode='nearest', align_corners=False)[:, :, 0, :].permute(0, 2, 1)
            q_coord = F.grid_sample(feat_coord, grid, mode='nearest', align_corners=False)[:, :, 0, :].permute(0, 2, 1)
            rel = _scaled(coord - q_coord, hf, wf)
            inp = torch.cat([q_feat, rel, coord, rel_cell], dim=-1)
            q = coord.shape[1]
            preds.append(self.imnet(inp.view(b * q, -1)).view(b, q, -1))
            areas.append(torch.abs(rel[:, :, 0] * rel[:, :, 1]) + 1e-9)
        return _blend(preds, areas)

    @property
    def splits_decoder(self) -> bool:
        """Whether :meth:`decode` splits its first layer around the look-up (not ``exact``, not training)."""
        return not (self.exact or self.training)

    def lookup_table(self, feat: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """The split decoder's table of B x C x hf x wf features: (B x (hf wf) x 32, the first layer's part on the
        feature channels at every cell, row-major; hf; wf). Made once per feature map; the map itself is then
        no longer needed (at 2500 px it is 1.1 GB)."""
        b, c, hf, wf = feat.shape
        weight = self.imnet.layers[0].weight[:, :c, None, None]
        return F.conv2d(feat, weight).flatten(2).transpose(1, 2).contiguous(), hf, wf

    def decode_table(self, lookup: tuple[torch.Tensor, int, int], coord: torch.Tensor, cell: torch.Tensor
                     ) -> torch.Tensor:
        """:meth:`decode` with the first layer split around the look-up (``lookup``: :meth:`lookup_table`). The
        look-up is grid_sample's nearest cell, computed as its CPU kernel computes it ((g + 1) * (size / 2) - 0.5,
        rounded half to even), then read as a row of the table; the cell's coordinates are :func:`make_coord`'s.
        The MLP's ReLUs run in place."""
        table, hf, wf = lookup
        b = table.shape[0]
        first, rest = self.imnet.layers[0], list(self.imnet.layers[1:])
        c = first.in_features - 6  # the feature channels; then (rel, coord, cell), 2 each
        rows, cols = axis_coord(hf, device=table.device), axis_coord(wf, device=table.device)
        rel_cell = _scaled(cell.clone(), hf, wf)
        offset = (torch.arange(b, device=table.device) * (hf * wf))[:, None]
        preds, areas = [], []
        for shifted in _neighbours(coord, hf, wf):
            iy = ((shifted[:, :, 0] + 1) * (hf / 2) - 0.5).round_().long().clamp_(0, hf - 1)
            ix = ((shifted[:, :, 1] + 1) * (wf / 2) - 0.5).round_().long().clamp_(0, wf - 1)
            rel = _scaled(coord - torch.stack([rows[iy], cols[ix]], -1), hf, wf)
            q = coord.shape[1]
            hidden = table.view(b * hf * wf, -1)[(iy * wf + ix + offset).view(-1)]
            hidden += F.linear(torch.cat([rel, coord, rel_cell], dim=-1), first.weight[:, c:], first.bias).view(b * q, -1)
            for layer in rest:
                hidden = hidden.relu_() if isinstance(layer, nn.ReLU) else layer(hidden)
            preds.append(hidden.view(b, q, -1))
            areas.append(torch.abs(rel[:, :, 0] * rel[:, :, 1]) + 1e-9)
        return _blend(preds, areas)
    def forward(self, image: torch.Tensor, seg: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """Training forward: ``out_224`` logits and ``pred_224`` probabilities, B x Q x 1 (the authors' names)."""
        logits = self.decode(self.features(image, seg), coord, cell)
        return {'out_224': logits, 'pred_224': torch.sigmoid(logits)}
