#!/usr/bin/python3
"""gen_ref.py - writes PyTorch reference data for Stride's tests into tests/ref/.

Run with the system Python (Debian's python3-torch):  /usr/bin/python3 tests/gen_ref.py
The output is deterministic (fixed seeds, one thread, deterministic algorithms): running it twice
gives byte-identical files.

File format (little-endian), read by tests/refio.h:
    magic   8 bytes  "STRIDREF"
    version u32      1
    count   u32      number of tensors
    count times:
        name_len u16, name (UTF-8, no NUL)
        dtype    u8   0 = float32, 1 = int64, 2 = uint8, 3 = float16, 4 = int32, 5 = float64
        ndim     u8   then ndim x i64 dims (ndim 0 = scalar, one element)
        data     numel x sizeof(dtype)
Tensors keep the order in which they were written (the model files list the state_dict in order).

Files
    conv.ref, batchnorm.ref, relu.ref, maxpool.ref, linear.ref, cross_entropy.ref, optim.ref
        layer cases "<i>/<tensor>", with "ncases" and "<i>/cfg" (int64 configuration).
    model_{cnn,linear,mlp}.ref
        init/<name>      the initial state_dict in order (weights: PyTorch's seeded default init
                         rounded to float16, so that they are stored in 2 bytes and are still exact
                         float32 values; BatchNorm gamma/beta/running stats perturbed away from
                         1/0/0/1 so that they matter)
        x (uint8 images, x/255 is the input), y (labels)
        logits, loss     train mode, dropout off
        gradabs/<conv>.bias/{sum,K}  sum over the batch and pixels of |gradient at the conv
                         output| per channel, and the number K of terms: the scale of the conv
                         bias gradient, which is exactly 0 before BatchNorm (only noise remains)
        grad/<name>      every parameter gradient, except for the big Linear weights (> 32768
                         elements, which would not fit the size budget) whose gradient is stored as
                         its two exact factors: gradfac/<name>/inp (N x IN: the layer's input) and
                         gradfac/<name>/dout (N x OUT: the gradient at its output), grad = dout^T inp
                         (checked here against autograd's .grad)
        after/<name>     BatchNorm buffers after the training forward
        eval_logits      evaluation mode, same images, after the training step above
    adam_{cnn,linear,mlp}.ref, sgd_mlp.ref
        the gradients of the conv biases that feed a BatchNorm are zeroed before every step (see
        conv_biases_before_bn); x (steps x N x 1 x 28 x 28 uint8), y, loss (per step), final/<name> (every tensor of the
        final state_dict; tensors of more than 32768 elements are sampled: see sample_mask) and
        eval_logits (evaluation mode, on the first batch, after training).
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ref")
DATASET = "/usr/share/datasets/fashion-mnist"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)

DT_F32, DT_I64, DT_U8, DT_F16, DT_I32, DT_F64 = 0, 1, 2, 3, 4, 5
NPDT = {DT_F32: "<f4", DT_I64: "<i8", DT_U8: "u1", DT_F16: "<f2", DT_I32: "<i4", DT_F64: "<f8"}

BIG = 32768  # tensors larger than this are sampled (Adam/SGD) or factored (gradients)
SAMPLE_EDGE = 256
SAMPLE_STEP = 7


def sample_mask(numel):
    """Elements kept of a big tensor: the first and last SAMPLE_EDGE and every SAMPLE_STEP-th.
    tests/refio.h (ref_sampled) uses the same rule."""
    i = np.arange(numel)
    return (i < SAMPLE_EDGE) | (i >= numel - SAMPLE_EDGE) | (i % SAMPLE_STEP == 0)


class RefWriter:
    def __init__(self, path):
        self.path = path
        self.items = []
        self.names = set()

    def add(self, name, value, dtype=DT_F32):
        assert name not in self.names, name
        self.names.add(name)
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        arr = np.array(np.asarray(value).astype(NPDT[dtype]), order="C")  # keeps 0-d arrays 0-d
        self.items.append((name, dtype, arr))

    def f16(self, name, value):
        """Stores a float32 tensor whose values are exact float16 values in 2 bytes."""
        v = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        h = v.astype(np.float16)
        assert np.array_equal(h.astype(np.float32), v.astype(np.float32)), name
        self.add(name, h, DT_F16)

    def close(self):
        with open(self.path, "wb") as f:
            f.write(b"STRIDREF")
            f.write(struct.pack("<II", 1, len(self.items)))
            for name, dtype, arr in self.items:
                nb = name.encode()
                f.write(struct.pack("<H", len(nb)))
                f.write(nb)
                f.write(struct.pack("<BB", dtype, arr.ndim))
                for d in arr.shape:
                    f.write(struct.pack("<q", d))
                f.write(arr.tobytes())
        print("%-24s %4d tensors %9d bytes" % (os.path.basename(self.path), len(self.items),
                                                os.path.getsize(self.path)))


def rnd(*shape, scale=1.0):
    return torch.randn(*shape) * scale


def grad_of(fn, inputs, dout):
    """Runs fn(*inputs), back-propagates dout, returns (out, [grad of each input])."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    out = fn(*leaves)
    out.backward(dout)
    return out.detach(), [l.grad if l is not None else None for l in leaves]


# ----------------------------------------------------------------------------- layer cases

def gen_conv():
    w = RefWriter(os.path.join(OUT, "conv.ref"))
    # N, C, H, W, OC, KH, KW, stride, pad, bias
    cases = [
        (1, 1, 8, 8, 4, 3, 3, 1, 1, 1),
        (3, 3, 7, 9, 5, 3, 3, 2, 1, 1),
        (3, 16, 7, 9, 8, 1, 1, 1, 0, 0),
        (2, 3, 9, 7, 5, 5, 5, 1, 2, 1),
        (1, 4, 10, 11, 6, 5, 5, 2, 0, 0),
        (3, 2, 6, 5, 3, 3, 3, 2, 2, 1),
        (2, 2, 5, 8, 3, 1, 3, 1, 1, 1),   # non-square kernel
        (1, 3, 4, 4, 2, 5, 5, 1, 2, 0),   # kernel larger than... nearly the input, all padding
        (1, 1, 28, 28, 16, 5, 5, 1, 2, 1),  # ConvNet block1.0
        (1, 16, 14, 14, 32, 3, 3, 1, 1, 1),  # ConvNet block2.0
    ]
    w.add("ncases", [len(cases)], DT_I64)
    for i, (N, C, H, W, OC, KH, KW, s, p, hb) in enumerate(cases):
        x = rnd(N, C, H, W)
        bound = 1.0 / (C * KH * KW) ** 0.5
        wt = (torch.rand(OC, C, KH, KW) * 2 - 1) * bound
        b = (torch.rand(OC) * 2 - 1) * bound if hb else None
        out = F.conv2d(x, wt, b, stride=s, padding=p)
        dout = rnd(*out.shape)
        out, (dx, dw, db) = grad_of(lambda a, k, c: F.conv2d(a, k, c, stride=s, padding=p),
                                    [x, wt, b], dout)
        w.add("%d/cfg" % i, [N, C, H, W, OC, KH, KW, s, p, hb], DT_I64)
        w.add("%d/inp" % i, x)
        w.add("%d/w" % i, wt)
        if hb:
            w.add("%d/b" % i, b)
            w.add("%d/db" % i, db)
        w.add("%d/out" % i, out)
        w.add("%d/dout" % i, dout)
        w.add("%d/dinp" % i, dx)
        w.add("%d/dw" % i, dw)
    w.close()


def gen_batchnorm():
    w = RefWriter(os.path.join(OUT, "batchnorm.ref"))
    momentum, eps = 0.1, 1e-5
    # N, C, H, W, training, input offset (a large mean tests the variance's numerical stability)
    cases = [
        (3, 4, 5, 7, 1, 0.0),
        (1, 2, 3, 3, 1, 0.0),   # batch 1
        (4, 16, 14, 14, 1, 0.0),
        (2, 3, 4, 5, 1, 50.0),  # mean 50, std ~ 1
        (3, 4, 5, 7, 0, 0.0),   # evaluation mode
        (2, 8, 4, 4, 0, 3.0),
    ]
    w.add("ncases", [len(cases)], DT_I64)
    for i, (N, C, H, W, train, off) in enumerate(cases):
        x = rnd(N, C, H, W) * (0.5 + torch.rand(1, C, 1, 1) * 2) + off + rnd(1, C, 1, 1)
        gamma = 1 + rnd(C, scale=0.3)
        beta = rnd(C, scale=0.3)
        rm = rnd(C, scale=0.5) + off
        rv = 0.5 + torch.rand(C) * 2
        w.add("%d/cfg" % i, [N, C, H, W, train], DT_I64)
        w.add("%d/inp" % i, x)
        w.add("%d/gamma" % i, gamma)
        w.add("%d/beta" % i, beta)
        w.add("%d/running_mean" % i, rm)
        w.add("%d/running_var" % i, rv)
        if train:
            rm2, rv2 = rm.clone(), rv.clone()
            out, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
                x, gamma, beta, rm2, rv2, True, momentum, eps)
            dout = rnd(*out.shape)
            rm3, rv3 = rm.clone(), rv.clone()
            out2, (dx, dg, dbeta) = grad_of(
                lambda a, g, b_: F.batch_norm(a, rm3, rv3, g, b_, True, momentum, eps),
                [x, gamma, beta], dout)
            assert torch.equal(out, out2) and torch.equal(rm2, rm3) and torch.equal(rv2, rv3)
            w.add("%d/out" % i, out)
            w.add("%d/save_mean" % i, save_mean)
            w.add("%d/save_invstd" % i, save_invstd)
            w.add("%d/running_mean_after" % i, rm2)
            w.add("%d/running_var_after" % i, rv2)
            w.add("%d/dout" % i, dout)
            w.add("%d/dinp" % i, dx)
            w.add("%d/dgamma" % i, dg)
            w.add("%d/dbeta" % i, dbeta)
        else:
            out = F.batch_norm(x, rm, rv, gamma, beta, False, momentum, eps)
            w.add("%d/out" % i, out)
    w.close()


def gen_relu():
    w = RefWriter(os.path.join(OUT, "relu.ref"))
    sizes = [1, 7, 1000]
    w.add("ncases", [len(sizes)], DT_I64)
    for i, n in enumerate(sizes):
        x = rnd(n)
        x[::5] = 0.0  # exact zeros: gradient 0 there, as in PyTorch
        dout = rnd(n)
        out, (dx,) = grad_of(torch.relu, [x], dout)
        w.add("%d/cfg" % i, [n], DT_I64)
        w.add("%d/inp" % i, x)
        w.add("%d/out" % i, out)
        w.add("%d/dout" % i, dout)
        w.add("%d/dinp" % i, dx)
    w.close()


def gen_maxpool():
    w = RefWriter(os.path.join(OUT, "maxpool.ref"))
    # N, C, H, W, K, S, kind (0 = random normal, 1 = small integers: ties, 2 = mostly constant)
    cases = [
        (2, 3, 8, 8, 2, 2, 0),
        (1, 2, 7, 9, 2, 2, 0),   # odd sizes: the last row/column is dropped
        (2, 2, 7, 9, 3, 2, 0),   # overlapping windows
        (1, 3, 8, 6, 3, 2, 0),
        (2, 3, 6, 6, 2, 2, 1),   # exact ties
        (2, 2, 7, 7, 3, 2, 1),   # ties and overlapping windows
        (1, 2, 5, 6, 3, 2, 2),   # all-equal windows (negative constant) with a few bumps
        (1, 16, 28, 28, 2, 2, 0),  # ConvNet block1.3
    ]
    w.add("ncases", [len(cases)], DT_I64)
    for i, (N, C, H, W, K, S, kind) in enumerate(cases):
        if kind == 0:
            x = rnd(N, C, H, W)
        elif kind == 1:
            x = torch.randint(0, 3, (N, C, H, W)).float()
        else:
            x = torch.full((N, C, H, W), -1.5)
            x.view(-1)[::7] = 2.0
        dout_shape = (N, C, (H - K) // S + 1, (W - K) // S + 1)
        dout = rnd(*dout_shape)
        out, idx = F.max_pool2d(x, K, S, return_indices=True)
        out2, (dx,) = grad_of(lambda a: F.max_pool2d(a, K, S), [x], dout)
        assert torch.equal(out, out2)
        # PyTorch's tie rule: the first maximum of the window in row-major order.
        if kind != 0:
            for n in range(N):
                for c in range(C):
                    for oh in range(dout_shape[2]):
                        for ow in range(dout_shape[3]):
                            win = x[n, c, oh * S:oh * S + K, ow * S:ow * S + K]
                            first = int((win == win.max()).flatten().nonzero()[0])
                            r, q = divmod(first, K)
                            assert int(idx[n, c, oh, ow]) == (oh * S + r) * W + ow * S + q
        w.add("%d/cfg" % i, [N, C, H, W, K, S], DT_I64)
        w.add("%d/inp" % i, x)
        w.add("%d/out" % i, out)
        w.add("%d/argmax" % i, idx, DT_I32)
        w.add("%d/dout" % i, dout)
        w.add("%d/dinp" % i, dx)
    w.close()


def gen_linear():
    w = RefWriter(os.path.join(OUT, "linear.ref"))
    # N, IN, OUT, bias
    cases = [(1, 7, 3, 1), (5, 7, 3, 1), (5, 784, 10, 1), (1, 784, 10, 0), (4, 256, 10, 1),
             (3, 33, 17, 0)]
    w.add("ncases", [len(cases)], DT_I64)
    for i, (N, IN, OUTF, hb) in enumerate(cases):
        x = rnd(N, IN)
        bound = 1.0 / IN ** 0.5
        wt = (torch.rand(OUTF, IN) * 2 - 1) * bound
        b = (torch.rand(OUTF) * 2 - 1) * bound if hb else None
        dout = rnd(N, OUTF)
        out, (dx, dw, db) = grad_of(F.linear, [x, wt, b], dout)
        w.add("%d/cfg" % i, [N, IN, OUTF, hb], DT_I64)
        w.add("%d/inp" % i, x)
        w.add("%d/w" % i, wt)
        if hb:
            w.add("%d/b" % i, b)
            w.add("%d/db" % i, db)
        w.add("%d/out" % i, out)
        w.add("%d/dout" % i, dout)
        w.add("%d/dinp" % i, dx)
        w.add("%d/dw" % i, dw)
    w.close()


def gen_cross_entropy():
    w = RefWriter(os.path.join(OUT, "cross_entropy.ref"))
    # N, C, logit scale
    cases = [(1, 10, 1.0), (3, 10, 1.0), (8, 10, 3.0), (5, 10, 60.0), (16, 10, 0.0)]
    w.add("ncases", [len(cases)], DT_I64)
    for i, (N, C, scale) in enumerate(cases):
        logits = rnd(N, C) * scale + 0.5
        y = torch.arange(N) % C  # every class position
        y = y[torch.randperm(N)]
        x = logits.clone().requires_grad_(True)
        loss = F.cross_entropy(x, y)
        loss.backward()
        w.add("%d/cfg" % i, [N, C], DT_I64)
        w.add("%d/logits" % i, logits)
        w.add("%d/labels" % i, y, DT_U8)
        w.add("%d/loss" % i, [loss.item()])
        w.add("%d/dlogits" % i, x.grad)
    w.close()


def gen_optim():
    """Adam and SGD over a few steps of given gradients (the kernels, not the models)."""
    w = RefWriter(os.path.join(OUT, "optim.ref"))
    # kind (0 Adam, 1 SGD), n, steps, lr, beta1 / momentum, beta2, eps
    cases = [(0, 1000, 4, 1e-3, 0.9, 0.999, 1e-8), (0, 37, 3, 1e-2, 0.8, 0.99, 1e-6),
             (1, 1000, 4, 1e-2, 0.9, 0, 0), (1, 37, 3, 0.1, 0.0, 0, 0)]
    w.add("ncases", [len(cases)], DT_I64)
    for i, (kind, n, steps, lr, b1, b2, eps) in enumerate(cases):
        p = nn.Parameter(rnd(n, scale=0.1))
        w.add("%d/cfg" % i, [kind, n, steps], DT_I64)
        w.add("%d/hyper" % i, [lr, b1, b2, eps], DT_F64)  # exactly the Python floats
        w.add("%d/param" % i, p)
        if kind == 0:
            opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
        else:
            opt = torch.optim.SGD([p], lr=lr, momentum=b1)
        for s in range(steps):
            g = rnd(n) * 10.0 ** torch.randint(-6, 1, (n,)).float()  # many magnitudes
            g[::11] = 0.0
            p.grad = g.clone()
            opt.step()
            w.add("%d/grad%d" % (i, s), g)
            w.add("%d/param%d" % (i, s), p)
        st = opt.state[p]
        if kind == 0:
            w.add("%d/m" % i, st["exp_avg"])
            w.add("%d/v" % i, st["exp_avg_sq"])
        elif b1 != 0:
            w.add("%d/buf" % i, st["momentum_buffer"])
    w.add("fused", [optim_fused()], DT_I64)
    w.close()


def optim_fused():
    """1 if this PyTorch's CPU kernels fuse the optimisers' multiply-adds (add_ with alpha: ATen's
    vec::fmadd at its AVX2 and AVX-512 levels), 0 if not (its default level), -1 if neither
    explains them. Probed on fixed values; numpy's generator, not torch's."""
    r = np.random.default_rng(5)
    a = r.standard_normal(4099).astype(np.float32)
    b = r.standard_normal(4099).astype(np.float32)
    got = torch.from_numpy(a.copy()).add_(torch.from_numpy(b), alpha=0.1).numpy()
    alpha = np.float32(0.1)
    fused = (a.astype(np.float64) + b.astype(np.float64) * np.float64(alpha)).astype(np.float32)
    plain = a + b * alpha
    if np.array_equal(got, fused) and not np.array_equal(got, plain):
        return 1
    return 0 if np.array_equal(got, plain) else -1


# ----------------------------------------------------------------------------- models

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
                                    nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64),
                                    nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(3136, 128), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(128, 10))

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x)))
        return self.classifier(x.view(x.size(0), -1))


class SingleLayerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.view(-1, 784))


class MultiLayerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                    nn.Linear(256, 10))

    def forward(self, x):
        return self.layers(x.view(-1, 784))


MODELS = {"cnn": (ConvNet, 426602), "linear": (SingleLayerNet, 7850), "mlp": (MultiLayerNet, 535818)}


def load_images():
    """(uint8 images N x 28 x 28, labels) of the FashionMNIST test set, or random ones."""
    ip = os.path.join(DATASET, "t10k-images-idx3-ubyte.gz")
    lp = os.path.join(DATASET, "t10k-labels-idx1-ubyte.gz")
    if os.path.exists(ip) and os.path.exists(lp):
        with gzip.open(ip) as f:
            img = np.frombuffer(f.read(), np.uint8)[16:].reshape(-1, 28, 28)
        with gzip.open(lp) as f:
            lab = np.frombuffer(f.read(), np.uint8)[8:]
        print("images: FashionMNIST test set")
        return img[:200].copy(), lab[:200].copy()
    print("images: random (no dataset at %s)" % DATASET)
    g = torch.Generator().manual_seed(7)
    return (torch.randint(0, 256, (200, 28, 28), generator=g, dtype=torch.uint8).numpy(),
            torch.randint(0, 10, (200,), generator=g, dtype=torch.uint8).numpy())


def to_input(u8):
    return torch.from_numpy(np.ascontiguousarray(u8)).float().div(255).view(-1, 1, 28, 28)


def make_model(kind, seed):
    cls, nparams = MODELS[kind]
    torch.manual_seed(seed)
    m = cls()
    assert sum(p.numel() for p in m.parameters()) == nparams
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                mod.bias.copy_(0.2 * torch.randn(c, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    return m


def dropout_off(m):
    for mod in m.modules():
        if isinstance(mod, nn.Dropout):
            mod.eval()


def big_linears(m):
    return [(name, mod) for name, mod in m.named_modules()
            if isinstance(mod, nn.Linear) and mod.weight.numel() > BIG]


def gen_model(kind, img, lab, seed):
    w = RefWriter(os.path.join(OUT, "model_%s.ref" % kind))
    m = make_model(kind, seed)
    for name, t in m.state_dict().items():
        if t.is_floating_point():
            w.f16("init/" + name, t)
        else:
            w.add("init/" + name, t.reshape(()), DT_I64)
    N = 8
    xu8, y = img[:N], lab[:N]
    x = to_input(xu8)
    w.add("x", xu8.reshape(N, 1, 28, 28), DT_U8)
    w.add("y", y, DT_U8)

    saved = {}
    hooks = []
    for name, mod in big_linears(m):
        def fhook(mod_, inp, out, name=name):
            saved[name + "/inp"] = inp[0].detach().clone()
            out.register_hook(lambda g: saved.__setitem__(name + "/dout", g.detach().clone()))
        hooks.append(mod.register_forward_hook(fhook))
    # The bias gradient of a convolution followed by BatchNorm is exactly 0 (BN removes the
    # channel mean): both sides compute rounding noise, bounded by K u sum|dout| per channel.
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            def chook(mod_, inp, out, name=name):
                saved[name + "/K"] = out.numel() // out.shape[1]
                out.register_hook(lambda g: saved.__setitem__(name + "/absdout",
                                                              g.abs().sum((0, 2, 3))))
            hooks.append(mod.register_forward_hook(chook))

    m.train()
    dropout_off(m)
    logits = m(x)
    loss = F.cross_entropy(logits, torch.from_numpy(y).long())
    loss.backward()
    for h in hooks:
        h.remove()
    w.add("logits", logits)
    w.add("loss", [loss.item()])
    big = {name + ".weight" for name, _ in big_linears(m)}
    for name, p in m.named_parameters():
        if name in big:
            mod = name[:-len(".weight")]
            inp, dout = saved[mod + "/inp"], saved[mod + "/dout"]
            rec = dout.double().t() @ inp.double()
            err = (rec - p.grad.double()).abs().max().item()
            assert err <= 1e-6 * rec.abs().max().item() + 1e-9, (name, err)
            w.add("gradfac/%s/inp" % name, inp)
            w.add("gradfac/%s/dout" % name, dout)
        else:
            w.add("grad/" + name, p.grad)
        if name[:-len(".bias")] + "/absdout" in saved and name.endswith(".bias"):
            mod = name[:-len(".bias")]
            w.add("gradabs/%s/sum" % name, saved[mod + "/absdout"])
            w.add("gradabs/%s/K" % name, saved[mod + "/K"], DT_I64)
    for name, t in m.state_dict().items():
        if "running" in name or "num_batches" in name:
            w.add("after/" + name, t if t.is_floating_point() else t.reshape(()),
                  DT_F32 if t.is_floating_point() else DT_I64)
    m.eval()
    with torch.no_grad():
        w.add("eval_logits", m(x))
    w.close()


def conv_biases_before_bn(m):
    """The biases of the convolutions that feed a BatchNorm. Their exact gradient is 0 (BN
    subtracts the channel mean), so autograd returns rounding noise, ~1e-8, which Adam normalises
    into steps of ~lr in a random direction: they (and through them the BN running means and the
    evaluation-mode outputs) cannot be reproduced by any other implementation, or even by PyTorch
    with another thread count. The training cases zero these gradients before every step, on both
    sides; Adam then leaves the biases exactly unchanged (m = v = 0, update 0 / (0 + eps) = 0)."""
    out = []
    for mod in m.modules():
        if isinstance(mod, nn.Sequential):
            for a, b in zip(list(mod)[:-1], list(mod)[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and a.bias is not None:
                    out.append(a.bias)
    return out


def gen_train(kind, optname, steps, img, lab, seed):
    w = RefWriter(os.path.join(OUT, "%s_%s.ref" % (optname, kind)))
    m = make_model(kind, seed)  # the same initial state as model_<kind>.ref
    N = 8
    xs = img[8:8 + steps * N].reshape(steps, N, 1, 28, 28)
    ys = lab[8:8 + steps * N].reshape(steps, N)
    w.add("x", xs, DT_U8)
    w.add("y", ys, DT_U8)
    if optname == "adam":
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    losses = []
    m.train()
    dropout_off(m)
    frozen = conv_biases_before_bn(m)
    for s in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(m(to_input(xs[s])), torch.from_numpy(ys[s]).long())
        loss.backward()
        for p in frozen:
            p.grad.zero_()
        opt.step()
        losses.append(loss.item())
    w.add("loss", losses)
    for name, t in m.state_dict().items():
        if not t.is_floating_point():
            w.add("final/" + name, t.reshape(()), DT_I64)
        elif t.numel() > BIG:
            w.add("final_sampled/" + name, t.flatten().numpy()[sample_mask(t.numel())])
        else:
            w.add("final/" + name, t)
    m.eval()
    with torch.no_grad():
        w.add("eval_logits", m(to_input(xs[0])))
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, fn in enumerate([gen_conv, gen_batchnorm, gen_relu, gen_maxpool, gen_linear,
                            gen_cross_entropy, gen_optim]):
        torch.manual_seed(1000 + i)
        fn()
    img, lab = load_images()
    seeds = {"cnn": 1, "linear": 2, "mlp": 3}
    for kind in ("cnn", "linear", "mlp"):
        gen_model(kind, img, lab, seeds[kind])
        gen_train(kind, "adam", 10, img, lab, seeds[kind])
    gen_train("mlp", "sgd", 5, img, lab, seeds["mlp"])
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("total %d bytes" % total)
    assert total < 5 * 1000 * 1000, "tests/ref must stay under 5 MB"


if __name__ == "__main__":
    sys.exit(main())
