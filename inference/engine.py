"""How a network runs, whatever its method: the device, its arithmetic (exact or reordered), reduced precision.

Shared by the command lines (``--device --precision --exact``), :class:`inference.Refiner` and ``segrefine``.

By default CascadePSP's and CRM's networks compute the authors' function with cheaper arithmetic
(:mod:`util.fastconv`): batch norms folded into the convolutions before them; on the CPU, 3x3 convolutions
through Winograd's transform; linear maps moved before bilinear upsampling where they commute, or before a
look-up (``exact`` attributes of :class:`models.cascadepsp.psp.PyramidPooling`,
:class:`models.cascadepsp.upsample.UpsampleBlock` and :class:`models.crm.network.CRMNet`). Results differ from
the authors' order of operations by float rounding (about 1e-4 of an activation's scale for CascadePSP; at most
8e-6 on CRM's reference logits, whose bound is 1e-4); ``exact=True`` runs their operations one for one
(bit-identical to their code on the same kernels).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch
import torch.nn as nn

from methods import method_of_model
from methods.base import model_device
from util.fastconv import speed_up

#: ``--precision`` values and their dtypes (None: float32, no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def prepare(model: nn.Module, device: str | torch.device, exact: bool = False) -> nn.Module:
    """Move ``model`` to ``device`` in eval mode, with the reordered arithmetic unless ``exact`` or its method
    does not allow it (:attr:`methods.base.Method.fast_arithmetic`: CascadePSP's and CRM's networks; MagNet's
    reference bounds, down to 1e-5 on its refinement logits, are tighter than Winograd's rounding).
    Idempotent: a model already prepared for the same device and arithmetic is returned as it is (the command lines
    prepare it, then hand it to a :class:`inference.Refiner`). Returns the same module."""
    device = torch.device(device)
    exact = exact or not method_of_model(model).fast_arithmetic
    if model.__dict__.get('_prepared_for') == (str(device), exact) and model_device(model) == device:
        return model
    model.to(device).eval()
    for m in model.modules():  # the project's own modules only: their ``exact`` switch is documented here
        if type(m).__module__.startswith('models.') and hasattr(type(m), 'exact'):
            m.exact = exact
    cpu = device.type == 'cpu'
    speed_up(model, enable=not exact, winograd=cpu, pointwise=cpu)
    model.__dict__['_prepared_for'] = (str(device), exact)
    return model


def _cpu_supports(dtype: torch.dtype) -> bool:
    mkldnn = getattr(torch.ops, 'mkldnn', None)
    check = '_is_mkldnn_bf16_supported' if dtype == torch.bfloat16 else '_is_mkldnn_fp16_supported'
    try:
        return bool(getattr(mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def check_precision(precision: str, device: str | torch.device) -> None:
    """Raise ValueError for an unknown precision; warn when ``device`` is a CPU without the instructions for it
    (bf16: AVX512-BF16 or AMX; fp16: AVX512-FP16 or AMX-FP16): oneDNN then falls back to reference kernels,
    hundreds of times slower than float32 (about 700x for a 3x3 convolution on an AVX2 CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    dtype = PRECISIONS[precision]
    if dtype is not None and torch.device(device).type == 'cpu' and not _cpu_supports(dtype):
        warnings.warn(f'{precision} on this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native kernels: '
                      'it runs hundreds of times slower than fp32. Use fp32 here, or a GPU or a CPU with '
                      f'{"AVX512-BF16/AMX" if precision == "bf16" else "AVX512-FP16/AMX-FP16"}.', stacklevel=2)


@contextlib.contextmanager
def precision_scope(precision: str, device: str | torch.device) -> Iterator[None]:
    """Run the block's network calls in ``precision`` (autocast on ``device``'s type; fp32: no change).

    Convolutions and matrix products run in the reduced type; the methods keep full-resolution buffers,
    sigmoids and the fusion of crops in float32."""
    check_precision(precision, device)
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield
