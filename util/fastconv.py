"""Cheaper inference convolutions, swapped into a network in place: Winograd 3x3 convolutions on the CPU
(NNPACK's F(6x6, 3x3) transform) and batch norms folded into the convolution before them.

On an AVX2 CPU, oneDNN's direct 3x3 convolutions already run near the cores' peak (about 70 GMAC/s on two
cores), so the refinement networks' decoders, whose wide 3x3 convolutions at stride 4 and 2 are most of the
work, cannot get faster by scheduling. Winograd's transform does fewer multiplications for the same result:
2.5-3x faster on CascadePSP's decoder shapes. It is not exact: outputs differ from a direct convolution by
about 1e-4 of their scale (a direct float32 convolution: about 3e-5), well inside the reference tolerances of
``../shared/reference/README.md``. Only the shapes that gain run it: 3x3, stride 1, undilated, same-size
padding, at least :data:`MIN_CHANNELS` input x output channels (dilated ones, split into d x d undilated
grids, measured slower at the stride-8 sizes).

A batch norm in eval mode is an affine map per channel; after a convolution whose output feeds nothing else,
it folds into the convolution's weights and bias: one pass and one full-size output fewer per pair.

Both apply in inference only (eval mode, no gradients; exported or compiled graphs get the plain operations);
otherwise the modules compute exactly as ``nn.Conv2d`` and ``nn.BatchNorm2d``. Parameters and state dicts are
untouched, and :func:`speed_up` with ``enable=False`` restores the plain classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

#: Input x output channels under which a 3x3 convolution stays direct. On two AVX2 cores, at the sizes these
#: networks run, Winograd took 0.44-0.74 of the direct time from 19 x 16 (full resolution) to 1280 x 512
#: channels; 96 x 96 at 113 x 113 px was even.
MIN_CHANNELS = 16 * 16


def winograd_available() -> bool:
    """Whether this PyTorch build has NNPACK on this CPU (the call also initialises it, which must happen first)."""
    return hasattr(torch, '_nnpack_available') and torch._nnpack_available()


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
        if not (self.winograd and x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32
                and x.dim() == 4):
            return self._conv_forward(x, weight, bias)
        bias = bias if bias is not None else x.new_zeros(self.out_channels)
        pad = [self.padding[0]] * 4
        if x.shape[0] == 1:
            return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, pad, [1, 1])
        return torch.cat([torch._nnpack_spatial_convolution(x[i:i + 1].contiguous(), weight, bias, pad, [1, 1])
                          for i in range(x.shape[0])])


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """An ``nn.BatchNorm2d`` folded into the :class:`FastConv2d` before it: in inference it passes its input on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.training or plain_ops() else x


def _winograd_shape(m: nn.Conv2d) -> bool:
    return (m.kernel_size == (3, 3) and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding == (1, 1)
            and m.groups == 1 and m.padding_mode == 'zeros' and m.in_channels * m.out_channels >= MIN_CHANNELS)


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


def speed_up(model: nn.Module, enable: bool = True, winograd: bool = True) -> dict[str, int]:
    """Swap ``model``'s convolutions and batch norms to the classes above (``enable=False``: back to the plain
    ones). ``winograd``: also run eligible 3x3 convolutions through NNPACK (when this build has it; CPU only).

    Returns the counts: {'folded': batch norms folded, 'winograd': Winograd convolutions}.
    """
    for m in model.modules():  # start from the plain classes
        if type(m) is FastConv2d:
            m.__class__ = nn.Conv2d
            for attr in ('winograd', 'folded_bn', '_folded', '_folded_key'):
                m.__dict__.pop(attr, None)
        elif type(m) is FoldedBatchNorm2d:
            m.__class__ = nn.BatchNorm2d
    counts = {'folded': 0, 'winograd': 0}
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
    return counts
