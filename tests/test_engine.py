"""How networks run (inference.engine): Winograd convolutions, the reordered linear maps and their exact
counterparts, reduced precision, and the ONNX Runtime backend (skipped without its optional packages)."""
from __future__ import annotations

import ctypes
import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import inference.predict as predict
from inference.engine import check_precision, precision_scope, prepare
from inference.predict import image_tensors, refine_image
from inference.refiner import Refiner
from methods.cascadepsp.config import CascadeConfig
from models.cascadepsp.psp import PyramidPooling, adaptive_avg_pool2d
from models.cascadepsp.upsample import UpsampleBlock
from models.registry import build_model
from models.seeded import seed_model
from util import malloc
from util.fastconv import FastConv2d, FoldedBatchNorm2d, PointwiseStack, speed_up, winograd_available


def _scene(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    return image, ((yy - h / 2) ** 2 / (h / 3) ** 2 + (xx - w / 2) ** 2 / (w / 3) ** 2 < 1).astype(np.uint8) * 255


@pytest.fixture(scope='module')
def lite():
    """The lite architecture at its default sizes with seeded weights (its heads are non-zero, unlike at init)."""
    return seed_model(build_model('lite'), 0).eval()


def test_winograd_falls_back_to_the_direct_convolution(monkeypatch, caplog):
    """Where the private NNPACK entry is missing, or refuses a shape, the direct convolution runs (same values);
    each rewrite has its own switch."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1)).eval()
    x = torch.randn(1, 16, 20, 24)
    with torch.no_grad():
        direct = net(x)
        assert speed_up(net, winograd=False, pointwise=True) == {'folded': 0, 'winograd': 0, 'pointwise': 1,
                                                                 'stacks': 0}
        speed_up(net, enable=False)
        if winograd_available():
            assert speed_up(net, pointwise=False)['winograd'] == 1 and not net[2].__dict__.get('pointwise')

            def refuse(*args, **kwargs):
                raise RuntimeError('NNPACK SpatialConvolution_updateOutput failed')
            monkeypatch.setattr(torch, '_nnpack_spatial_convolution', refuse)
            torch.testing.assert_close(net(x), direct, atol=1e-6, rtol=0)
            assert 'the direct convolution runs instead' in caplog.text and not net[0].winograd
        monkeypatch.delattr(torch, '_nnpack_spatial_convolution', raising=False)  # a PyTorch without the entry
        speed_up(net, enable=False)
        assert not winograd_available() and speed_up(net)['winograd'] == 0
        torch.testing.assert_close(net(x), direct, atol=1e-5, rtol=0)


def test_fast_convolutions_compute_the_same_function():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.Conv2d(32, 32, 3, padding=2, dilation=2),
                        nn.BatchNorm2d(32), nn.Conv2d(32, 32, 3, stride=2, padding=1),
                        nn.Conv2d(32, 8, 1), nn.Conv2d(8, 8, 3, padding=1),  # 8 x 8 channels: too few to gain
                        nn.Conv2d(8, 256, 1))  # 1x1: narrow ones become matrix products, wide ones stay
    for bn in (net[1], net[5]):  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(2, 16, 37, 45)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        direct = net(x)
        counts = speed_up(net)
        fast = net(x)
    assert counts == {'folded': 2, 'winograd': 2 if winograd_available() else 0, 'pointwise': 1, 'stacks': 0}
    assert type(net[4]) is FastConv2d and type(net[5]) is FoldedBatchNorm2d and type(net[8]) is nn.Conv2d
    assert net[7].pointwise and not net[9].__dict__.get('pointwise')
    assert net[0].winograd == winograd_available() and not net[4].winograd
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items()) and list(net.state_dict()) == list(state)
    assert (fast - direct).abs().max() <= 1e-4 * direct.abs().max() and not torch.equal(fast, direct)
    with torch.no_grad():  # weights changed in place after a forward (a loaded checkpoint): folded again
        net[5].running_mean.add_(0.5)
        folded = net(x)
        speed_up(net, enable=False)
        plain = net(x)
        net[5].running_mean.sub_(0.5)
        speed_up(net)
    assert (folded - plain).abs().max() <= 1e-4 * plain.abs().max() and (folded - fast).abs().max() > 1e-3
    x.requires_grad_(True)  # with gradients, the plain operations run (NNPACK here has no backward)
    torch.testing.assert_close(net(x), direct, atol=1e-6, rtol=0)
    net(x).sum().backward()
    assert x.grad is not None and net[0].weight.grad is not None
    net.train()  # training mode: batch statistics, not folded
    with torch.no_grad():
        speed_up(net, enable=False)
        plain = net(x)
        speed_up(net)
        assert torch.equal(net(x), plain) or (net(x) - plain).abs().max() < 1e-5
    assert speed_up(net, enable=False) == {'folded': 0, 'winograd': 0, 'pointwise': 0, 'stacks': 0}
    assert type(net[0]) is nn.Conv2d and type(net[1]) is nn.BatchNorm2d and 'folded_bn' not in net[0].__dict__


def test_pointwise_stacks_run_by_chunks_compute_the_same_function():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 16, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(16, 3, 1)),
                        nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 1, 1)),  # a norm: kept
                        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))).eval()
    x = torch.randn(2, 3, 150, 170)  # 25500 px: one full chunk and a partial one
    with torch.no_grad():
        direct, inner = net(x), net[0](x)
        counts = speed_up(net)
        assert counts['stacks'] == 1 and type(net[0]) is PointwiseStack and type(net[1]) is nn.Sequential
        assert type(net[2]) is nn.Sequential
        torch.testing.assert_close(net[0](x), inner, atol=1e-5, rtol=0)
        torch.testing.assert_close(net[0](x.to(memory_format=torch.channels_last)), inner, atol=1e-5, rtol=0)
        torch.testing.assert_close(net(x), direct, atol=1e-5, rtol=0)
    x.requires_grad_(True)  # training: the plain Sequential, with gradients
    net[0](x).sum().backward()
    assert x.grad is not None and net[0][0].weight.grad is not None
    speed_up(net, enable=False)
    assert type(net[0]) is nn.Sequential


def test_reordered_linear_maps_equal_the_authors_order():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 13, 17)
    for bins in (1, 2, 3, 6):
        torch.testing.assert_close(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins), atol=1e-6, rtol=0)
    psp, up = PyramidPooling(32, 16).eval(), UpsampleBlock(32, 32 + 8, 16).eval()
    for m in (psp, up):
        seed_model(m, 1)
    skip = torch.randn(2, 8, 26, 34)
    with torch.no_grad():
        fast = psp(x), up(x, skip)
        psp.exact = up.exact = True
        exact = psp(x), up(x, skip)
        reference = (F.relu(psp.bottleneck(torch.cat(
            [F.interpolate(s(x), size=(13, 17), mode='bilinear', align_corners=False) for s in psp.stages] + [x], 1))),)
    assert torch.equal(exact[0], reference[0])  # exact: the authors' concatenated form
    for a, b in zip(fast, exact):
        torch.testing.assert_close(a, b, atol=1e-5 * float(b.abs().max()), rtol=0)
    psp.exact = up.exact = False
    for batch in (slice(0, 1), slice(0, 2)):  # the block's inference buffer, one image and several
        with torch.no_grad():
            torch.testing.assert_close(up(x[batch], skip[batch]), exact[1][batch],
                                       atol=1e-5 * float(exact[1].abs().max()), rtol=0)
    x_tall, skip_tall = torch.randn(1, 32, 37, 9), torch.randn(1, 8, 74, 18)
    with torch.no_grad():
        whole = up(x_tall, skip_tall)
        up.strip_bytes = 1  # 16-row strips: 5 of them, the last one short
        strips = up(x_tall, skip_tall)
        up.strip_bytes, up.exact = UpsampleBlock.strip_bytes, True
        tall_exact = up(x_tall, skip_tall)
        up.exact = False
    torch.testing.assert_close(strips, whole, atol=1e-5 * float(whole.abs().max()), rtol=0)
    torch.testing.assert_close(strips, tall_exact, atol=1e-5 * float(whole.abs().max()), rtol=0)
    with_grad = up(x, skip)  # autograd: the plain concatenation (writes into a buffer would break it)
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), exact[1], atol=1e-5 * float(exact[1].abs().max()), rtol=0)
    up.train()  # batch statistics: the norm must not move before the upsampling (the plain path runs)
    with torch.no_grad():
        train_fast = up(x, skip)
        up.exact = True
        train_exact = up(x, skip)
    torch.testing.assert_close(train_fast, train_exact, atol=1e-5 * float(train_exact.abs().max()), rtol=0)


class _RecordingLibc:
    """Stands in for glibc in :mod:`util.malloc`: records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(('mallopt', param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(('malloc_trim', pad))
        return 1


#: The glibc calls that keep freed memory, and those that restore the usual regime and return it.
_KEEP = [('mallopt', malloc._M_MMAP_MAX, 0), ('mallopt', malloc._M_TRIM_THRESHOLD, 2 ** 31 - 1)]
_RESTORE = [('mallopt', malloc._M_MMAP_MAX, 65536), ('mallopt', malloc._M_MMAP_THRESHOLD, 32 * 2 ** 20),
            ('mallopt', malloc._M_TRIM_THRESHOLD, 64 * 2 ** 20), ('malloc_trim', 0)]


def test_keep_freed_memory_sets_and_restores_glibc(monkeypatch):
    libc = _RecordingLibc()
    monkeypatch.setattr(malloc, '_LIBC', libc)
    keep, restore = _KEEP, _RESTORE
    with malloc.keep_freed_memory():
        with malloc.keep_freed_memory():  # nested: the outermost block sets and restores
            assert libc.calls == keep
        assert libc.calls == keep
    assert libc.calls == keep + restore and malloc._depth == 0
    libc.calls.clear()
    with pytest.raises(KeyError), malloc.keep_freed_memory():
        raise KeyError('restored on errors too')
    assert libc.calls == keep + restore and malloc._depth == 0
    libc.calls.clear()
    with malloc.keep_freed_memory(enabled=False):
        pass
    assert libc.calls == []


def test_returning_freed_memory_inside_a_keeping_block(monkeypatch):
    """A step that returns the kept memory (the arbiter) restores glibc's regime and trims inside a keeping block,
    then keeps again; outside any block it changes nothing."""
    libc = _RecordingLibc()
    monkeypatch.setattr(malloc, '_LIBC', libc)
    keep, restore = _KEEP, _RESTORE
    with malloc.returning_freed_memory():
        pass
    assert libc.calls == []
    with malloc.keep_freed_memory():
        with malloc.returning_freed_memory():
            assert libc.calls == keep + restore
        assert libc.calls == keep + restore + keep and malloc._depth == 1
    assert libc.calls == keep + restore + keep + restore and malloc._depth == 0


def test_refine_image_keeps_freed_memory_only_when_asked(lite, monkeypatch):
    """Process-wide allocator settings are never changed by a library call unless its caller asks (the argument,
    a Refiner's switch, or SEGREFINE_KEEP_FREED_MEMORY=1); the command lines ask for their whole run."""
    from inference.refiner import Refiner
    libc = _RecordingLibc()
    monkeypatch.setattr(malloc, '_LIBC', libc)
    image, mask = _scene()
    cfg = CascadeConfig(L=64, global_only=True)
    refine_image(lite, *image_tensors(image, mask), cfg)
    Refiner(model=lite).refine(image, mask, cfg=cfg)
    assert libc.calls == []
    refine_image(lite, *image_tensors(image, mask), cfg, keep_freed=True)
    assert libc.calls[0] == ('mallopt', malloc._M_MMAP_MAX, 0) and libc.calls[-1] == ('malloc_trim', 0)
    libc.calls.clear()
    Refiner(model=lite, keep_freed_memory=True).refine(image, mask, cfg=cfg)
    assert libc.calls[0] == ('mallopt', malloc._M_MMAP_MAX, 0) and libc.calls[-1] == ('malloc_trim', 0)
    libc.calls.clear()
    monkeypatch.setattr(predict, 'KEEP_FREED_MEMORY', True)  # SEGREFINE_KEEP_FREED_MEMORY=1
    refine_image(lite, *image_tensors(image, mask), cfg)
    assert libc.calls[-1] == ('malloc_trim', 0)


@pytest.mark.skipif(not malloc.available() or not hasattr(ctypes.CDLL(None), 'mallinfo2'),
                    reason='needs glibc 2.33+ (mallinfo2) to observe the allocator')
def test_keep_freed_memory_serves_large_blocks_from_the_heap():
    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]

    info = ctypes.CDLL(None).mallinfo2
    info.restype = Mallinfo2

    def mmapped_growth() -> tuple[int, int]:
        """(bytes, growth of the bytes in mmapped blocks) of an allocation larger than every free block of the
        heap (earlier tests leave some), so that glibc must take new memory for it."""
        size = info().fordblks + 64 * 2 ** 20
        before = info().hblkhd
        block = torch.empty(size // 4)  # not touched: no resident memory
        grown = info().hblkhd - before
        del block
        return size, grown

    size, grown = mmapped_growth()
    assert grown >= size  # glibc's default: a block this large is mmapped
    with malloc.keep_freed_memory():
        assert mmapped_growth()[1] == 0  # from the heap
    size, grown = mmapped_growth()
    assert grown >= size  # defaults restored


def test_prepare_toggles_the_arithmetic(lite):
    image, mask = _scene()
    cfg = CascadeConfig(L=64, stride=40)
    prepare(lite, 'cpu', exact=True)
    assert lite.psp.exact and not any(isinstance(m, FastConv2d) for m in lite.modules())
    exact = refine_image(lite, *image_tensors(image, mask), cfg).probs
    prepare(lite, 'cpu')
    assert not lite.psp.exact and any(isinstance(m, FoldedBatchNorm2d) for m in lite.modules())
    fast = refine_image(lite, *image_tensors(image, mask), cfg).probs
    diff = (fast - exact).abs()
    assert float(diff.max()) < 1e-3 and float(diff.mean()) < 1e-5  # inside the cascade tolerance
    out = Refiner(model=lite, exact=True).refine(image, mask, L=64, stride=40)
    assert np.array_equal(out, (exact[0, 0].numpy() * 255).astype(np.uint8))


def test_precision_option(lite):
    with pytest.raises(ValueError, match='precision must be one of'):
        check_precision('int8', 'cpu')
    image, mask = _scene()
    cfg = CascadeConfig(L=64, stride=40)
    fp32 = refine_image(lite, *image_tensors(image, mask), cfg).probs
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # an AVX2 CPU emulates bf16 (slow; this image is tiny)
        with precision_scope('bf16', 'cpu'):
            bf16 = refine_image(lite, *image_tensors(image, mask), cfg).probs
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    diff = (bf16 - fp32).abs()
    flipped = ((bf16 > 0.5) != (fp32 > 0.5)).float().mean()
    # Measured on this pair (seeded weights, emulated bf16): mean 1.6e-3, max 9.1e-3, 0.8% of pixels flipped at
    # 0.5 (fp16: 1.1e-3, 7.3e-3, 0.6%).
    assert float(diff.mean()) < 4e-3 and float(diff.max()) < 3e-2 and float(flipped) < 0.02
    assert float(diff.max()) > 0  # it did run in reduced precision


onnx_ready = all(importlib.util.find_spec(m) for m in ('onnx', 'onnxscript', 'onnxruntime'))


@pytest.mark.skipif(not onnx_ready, reason='the ONNX backend needs the optional packages onnx, onnxscript and '
                                          'onnxruntime (pip install onnx onnxscript onnxruntime)')
@pytest.mark.parametrize('arbiter', [True, False], ids=['lite_arbiter', 'lite_network_alone'])
def test_onnx_backend_reproduces_torch(tmp_path, arbiter):
    from inference.onnx_backend import OnnxCascade, export_cascade, is_export
    from models.cascadepsp.arbiter import Arbiter
    model = seed_model(build_model('lite', widths=[8, 8, 16, 16, 16], psp_channels=16, up_channels=[8, 8]), 2).eval()
    if arbiter:  # the arbiter is not a graph: its weights travel in the export folder, and it runs in PyTorch
        model.set_arbiter(seed_model(Arbiter(hidden=8, evidence=False, post_radius=0), 3).eval())
    with torch.no_grad():  # the input mask weighs in (as trained), so the global result has crops to refine
        model.prior_scale.fill_(4.0)
    folder = export_cascade(model, tmp_path / 'export')
    assert is_export(folder) and not is_export(tmp_path)
    meta = json.loads((folder / 'meta.json').read_text())
    assert meta['arch'] == 'lite' and meta['hparams']['widths'] == [8, 8, 16, 16, 16]
    onnx = OnnxCascade(folder, threads=1)
    assert (onnx.arbiter is None) == (not arbiter)
    if onnx.arbiter is not None:
        assert all(torch.equal(v, onnx.arbiter.state_dict()[k]) for k, v in model.arbiter.state_dict().items())
    image, mask = _scene(70, 90)  # any size: the procedure pads to multiples of 8, batches the crops
    assert CascadeConfig().levels(onnx) == CascadeConfig().levels(model) == 1
    # The Local step's level 3 alone (lite's default), levels 2-3, and the Global step alone.
    for cfg in (CascadeConfig(L=48, stride=40, batch=3), CascadeConfig(L=48, stride=40, batch=3, local_levels=2),
                CascadeConfig(L=64, global_only=True)):
        a = refine_image(model, *image_tensors(image, mask), cfg)
        b = refine_image(onnx, *image_tensors(image, mask), cfg)
        # (With the arbiter, a pixel whose candidates sit at 0.5 within rounding may enter its band on one side
        # only: all but such pixels agree.)
        close = (a.probs - b.probs).abs() <= 1e-4
        assert (float(close.float().mean()) >= 0.999 if arbiter else bool(close.all())) and a.stats == b.stats
        assert cfg.global_only or a.stats['crops'] > 10  # the Local step's graph ran, on batches of crops
    out = Refiner(str(folder), backend='onnx').refine(image, mask, L=48, stride=40)
    assert (np.abs(out.astype(int) - Refiner(model=model).refine(image, mask, L=48, stride=40)) <= 1).mean() >= 0.999
    if arbiter:
        (folder / 'arbiter.pt').write_bytes(b'truncated')
        with pytest.raises(ValueError, match='arbiter.pt: cannot load the arbiter'):
            OnnxCascade(folder)
        state = model.arbiter.state_dict()
        torch.save({**state, 'mean': torch.full_like(state['mean'], float('nan'))}, folder / 'arbiter.pt')
        with pytest.raises(ValueError, match='arbiter.pt: .*non-finite values in mean'):
            OnnxCascade(folder)
        torch.save(state, folder / 'arbiter.pt')
    (folder / 'local3.onnx').rename(tmp_path / 'local3.onnx')  # an export from before that graph existed
    assert not is_export(folder)
    with pytest.raises(FileNotFoundError, match='not every graph'):
        OnnxCascade(folder)
    (tmp_path / 'local3.onnx').rename(folder / 'local3.onnx')
    (folder / 'local.onnx').write_bytes(b'not a graph')
    with pytest.raises(ValueError, match='local.onnx: cannot load the ONNX graph'):
        OnnxCascade(folder)
    (folder / 'meta.json').write_text('{"arch": ')  # truncated
    with pytest.raises(ValueError, match='meta.json: not the description of an export'):
        OnnxCascade(folder)
