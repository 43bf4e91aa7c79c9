"""Cheaper inference convolutions, swapped into a network in place: Winograd 3x3 convolutions on the CPU
(NNPACK's F(6x6, 3x3) transform), narrow 1x1 convolutions as matrix products, and batch norms folded into the
convolution before them.

On an AVX2 CPU, oneDNN's direct 3x3 convolutions already run near the cores' peak (about 70 GMAC/s on two
cores), so the refinement networks' decoders, whose wide 3x3 convolutions at stride 4 and 2 are most of the
work, cannot get faster by scheduling. Winograd's transform does fewer multiplications for the same result:
2.5-3x faster on CascadePSP's decoder shapes. It is not exact: outputs differ from a direct convolution by
about 1e-4 of their scale (a direct float32 convolution: about 3e-5), well inside the reference tolerances of
``tests/reference/README.md``. Only the shapes that gain run it: 3x3, stride 1, undilated, same-size
padding, at least :data:`MIN_CHANNELS` input x output channels (dilated ones, split into d x d undilated
grids, measured slower at the stride-8 sizes).

A 1x1 convolution with few channels at full resolution (``lite``'s guide correction, 3 -> 16 -> 3 channels on
a 904 x 904 crop) is memory-bound, and oneDNN's kernel for it took 3-5x the time of the same product written as
one matrix multiplication (130 and 180 ms of a 580 ms forward pass); wide ones (96 x 128) are faster in oneDNN.

A whole stack of them with elementwise activations between (``lite``'s heads and guide) runs as
:class:`PointwiseStack`, a chunk of pixels at a time, so its wide intermediate (16 or 32 channels at full
resolution, 52 MB on a 904 x 904 crop) is never written out: the chunk's stays in cache.

A batch norm in eval mode is an affine map per channel; after a convolution whose output feeds nothing else,
it folds into the convolution's weights and bias: one pass and one full-size output fewer per pair.

Both apply in inference only (eval mode, no gradients; exported or compiled graphs get the plain operations);
otherwise the modules compute exactly as ``nn.Conv2d`` and ``nn.BatchNorm2d``. Parameters and state dicts are
untouched, and :func:`speed_up` with ``enable=False`` restores the plain classes.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

#: Input x output channels under which a 3x3 convolution stays direct. On two AVX2 cores, at the sizes these
#: networks run, Winograd took 0.44-0.74 of the direct time from 19 x 16 (full resolution) to 1280 x 512
#: channels; 96 x 96 at 113 x 113 px was even.
MIN_CHANNELS = 16 * 16
#: Input x output channels up to which a 1x1 convolution runs as a matrix product on the CPU (3 x 16 to 32 x 1
#: measured 2-5x faster that way at 452-904 px; 96 x 128 at 113 px, 1.3x slower).
MAX_POINTWISE_CHANNELS = 32 * 32


def winograd_available() -> bool:
    """Whether this PyTorch build has NNPACK on this CPU and the private entry that runs it (a later PyTorch may
    drop either; then the plain convolution runs). The call also initialises NNPACK, which must happen first."""
    return (hasattr(torch, '_nnpack_available') and hasattr(torch, '_nnpack_spatial_convolution')
            and torch._nnpack_available())


def plain_ops() -> bool:
    """Whether the plain operations must run: gradients, or a graph being captured (compiled, exported). Inference
    shortcuts elsewhere (writes into preallocated buffers, reordered linear maps) check it too."""
    return torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each of C values: the eval-mode batch norm as ``x * scale + shift`` per channel."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    return scale, shift if bn.bias is None else shift + bn.bias


class FastConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that, in inference, folds the batch norm after it (``folded_bn``) and, with ``winograd``,
    runs NNPACK's Winograd convolution on float32 CPU inputs (B x C x H x W; one NNPACK call per image: its
    batched path refuses many shapes). Same parameters and state dict."""

    winograd = False
    pointwise = False
    folded_bn: nn.BatchNorm2d | None = None

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        bn = self.folded_bn
        if bn is None or bn.training:
            return self.weight, self.bias
        tensors = (self.weight, self.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        key = tuple((t.data_ptr(), t._version) if t is not None else None for t in tensors)
        if self.__dict__.get('_folded_key') != key:  # the weights changed (loaded, moved): fold again
            scale, shift = bn_affine(bn)
            bias = shift if self.bias is None else self.bias * scale + shift
            self.__dict__['_folded'] = (self.weight * scale.reshape(-1, 1, 1, 1), bias)
            self.__dict__['_folded_key'] = key
        return self.__dict__['_folded']

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if plain_ops():
            return super().forward(x)
        weight, bias = self._weights()
        if self.pointwise and x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32 and x.dim() == 4:
            # B x C_out x HW; torch.matmul would broadcast the weight by transposing, then copy the output
            w = weight.flatten(1).expand(x.shape[0], -1, -1)
            x2 = x.flatten(2)
            out = torch.bmm(w, x2) if bias is None else torch.baddbmm(bias[None, :, None], w, x2)
            return out.unflatten(2, x.shape[-2:])
        if not (self.winograd and x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32
                and x.dim() == 4):
            return self._conv_forward(x, weight, bias)
        nnpack_bias = bias if bias is not None else x.new_zeros(self.out_channels)
        pad = [self.padding[0]] * 4
        try:
            if x.shape[0] == 1:
                return torch._nnpack_spatial_convolution(x.contiguous(), weight, nnpack_bias, pad, [1, 1])
            return torch.cat([torch._nnpack_spatial_convolution(x[i:i + 1].contiguous(), weight, nnpack_bias, pad,
                                                                [1, 1]) for i in range(x.shape[0])])
        except (RuntimeError, AttributeError) as e:  # a shape NNPACK refuses, or an entry this PyTorch lacks
            log.warning('Winograd convolution unavailable for %s on %s (%s): the direct convolution runs instead',
                        tuple(weight.shape), tuple(x.shape), e)
            self.__dict__['winograd'] = False
            return self._conv_forward(x, weight, bias)


#: Activations that act on each value alone (so on any chunk of pixels).
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Identity)


class PointwiseStack(nn.Sequential):
    """An ``nn.Sequential`` of 1x1 convolutions and elementwise activations that, in inference on float32 CPU
    inputs (B x C x H x W), runs :data:`CHUNK` pixels at a time through every layer (matrix products), writing
    only the last layer's output. Same parameters and state dict; otherwise it is the plain Sequential."""

    #: Pixels per chunk: 32 channels x 16384 px x 4 B = 2 MiB, which stays in a core's L2 cache.
    CHUNK = 16384

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convs = [m for m in self if isinstance(m, nn.Conv2d)]
        if plain_ops() or x.device.type != 'cpu' or x.dim() != 4 or any(c.weight.dtype != x.dtype for c in convs) \
                or x.dtype != torch.float32:
            return super().forward(x)
        b, _, h, w = x.shape
        weights = [(c.weight.flatten(1).expand(b, -1, -1), None if c.bias is None else c.bias[:, None])
                   for c in convs]
        flat = x.flatten(2)
        out = x.new_empty(b, convs[-1].out_channels, h * w)
        for start in range(0, h * w, self.CHUNK):
            y = flat[:, :, start:start + self.CHUNK]
            k = 0
            for m in self:
                if isinstance(m, nn.Conv2d):
                    weight, bias = weights[k]
                    y = torch.bmm(weight, y)
                    if bias is not None:
                        y += bias
                    k += 1
                else:
                    y = m(y)
            out[:, :, start:start + self.CHUNK] = y
        return out.unflatten(2, (h, w))


def _is_1x1(m: nn.Module) -> bool:
    """A plain 1x1 convolution: a matrix product per pixel (no batch norm folded into it)."""
    return (type(m) in (nn.Conv2d, FastConv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1)
            and m.padding in ((0, 0), 'valid') and m.groups == 1 and 'folded_bn' not in m.__dict__)


def _pointwise_stack(m: nn.Module) -> bool:
    """An ``nn.Sequential`` of at least two 1x1 convolutions and elementwise activations, starting with one."""
    layers = list(m) if type(m) is nn.Sequential else []
    return (sum(map(_is_1x1, layers)) >= 2 and _is_1x1(layers[0])
            and all(_is_1x1(c) or isinstance(c, _ELEMENTWISE) for c in layers))


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """An ``nn.BatchNorm2d`` folded into the :class:`FastConv2d` before it: in inference it passes its input on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.training or plain_ops() else x


def _winograd_shape(m: nn.Conv2d) -> bool:
    return (m.kernel_size == (3, 3) and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding == (1, 1)
            and m.groups == 1 and m.padding_mode == 'zeros' and m.in_channels * m.out_channels >= MIN_CHANNELS)


def _pointwise_shape(m: nn.Conv2d) -> bool:
    return _is_1x1(m) and m.in_channels * m.out_channels <= MAX_POINTWISE_CHANNELS


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(convolution, batch norm) pairs where the norm takes the convolution's output and nothing else does:
    neighbours in an ``nn.Sequential``, and the attribute pairs a module lists in ``conv_bn_pairs``."""
    pairs = []
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            children = list(m)
            pairs += list(zip(children, children[1:]))
        for conv, bn in getattr(m, 'conv_bn_pairs', ()):
            pairs.append((getattr(m, conv), getattr(m, bn)))
    return [(c, b) for c, b in pairs if type(c) in (nn.Conv2d, FastConv2d)
            and type(b) in (nn.BatchNorm2d, FoldedBatchNorm2d) and b.track_running_stats]


def speed_up(model: nn.Module, enable: bool = True, winograd: bool = True, pointwise: bool | None = None
             ) -> dict[str, int]:
    """Swap ``model``'s convolutions and batch norms to the classes above (``enable=False``: back to the plain
    ones): batch norms folded always; ``winograd``: eligible 3x3 convolutions through NNPACK (when this build has
    it; CPU only); ``pointwise`` (default: as ``winograd``, both being CPU rewrites): narrow 1x1 convolutions and
    stacks of them as matrix products.

    Returns the counts: {'folded': batch norms folded, 'winograd': Winograd convolutions, 'pointwise': 1x1
    convolutions as matrix products, 'stacks': :class:`PointwiseStack` sequences}.
    """
    for m in model.modules():  # start from the plain classes
        if type(m) is FastConv2d:
            m.__class__ = nn.Conv2d
            for attr in ('winograd', 'pointwise', 'folded_bn', '_folded', '_folded_key'):
                m.__dict__.pop(attr, None)
        elif type(m) is FoldedBatchNorm2d:
            m.__class__ = nn.BatchNorm2d
        elif type(m) is PointwiseStack:
            m.__class__ = nn.Sequential
    counts = {'folded': 0, 'winograd': 0, 'pointwise': 0, 'stacks': 0}
    if not enable:
        return counts
    for conv, bn in _conv_bn_pairs(model):
        conv.__class__, bn.__class__ = FastConv2d, FoldedBatchNorm2d
        conv.__dict__['folded_bn'] = bn  # not a submodule: the state dict stays the same
        counts['folded'] += 1
    if winograd and winograd_available():
        for m in model.modules():
            if type(m) in (nn.Conv2d, FastConv2d) and _winograd_shape(m):
                m.__class__ = FastConv2d
                m.__dict__['winograd'] = True
                counts['winograd'] += 1
    if winograd if pointwise is None else pointwise:
        for m in model.modules():
            if _pointwise_stack(m):
                m.__class__ = PointwiseStack
                counts['stacks'] += 1
        for m in model.modules():
            if _pointwise_shape(m):
                m.__class__ = FastConv2d
                m.__dict__['pointwise'] = True
                counts['pointwise'] += 1
    return counts
