#!/usr/bin/env python3
"""stride_torch.py - Stride weights to and from PyTorch.

Stride's weights files are safetensors files holding a PyTorch state_dict under its own names
(block1.0.weight, ..., block1.1.num_batches_tracked, classifier.4.bias) with float32 tensors,
int64 num_batches_tracked scalars and the metadata {"format": "pt", "stride_model":
"cnn"|"linear"|"mlp", ...}. This file reads and writes that format by hand (no safetensors
package needed) and defines the tutorial's three classes, so that a model trained by either side
can be used by the other. It needs only torch, numpy and the standard library (Debian:
python3-torch, python3-numpy; run it with /usr/bin/python3).

As a library (python3 -c "import sys; sys.path.insert(0, 'tools'); import stride_torch"):

    model = stride_torch.load("cnn.safetensors")    # ConvNet / SingleLayerNet / MultiLayerNet,
                                                    # load_state_dict(strict=True), eval mode
    stride_torch.save(model, "out.safetensors")     # atomically; kind from the class or names
    x, y = stride_torch.load_fashion(train=False)   # float32 (N,1,28,28) in [0,1], int64 labels
    logits = stride_torch.logits(model, x)          # flattens the input for linear / mlp

From the command line:

    # convert a torch.save'd state_dict (or whole model, or {"state_dict": ...}) to Stride
    python3 tools/stride_torch.py export model.pt out.safetensors [--kind cnn|linear|mlp]
    # train in PyTorch as the notebook does (Adam lr 0.001, batch 64, CrossEntropyLoss), then save
    python3 tools/stride_torch.py export --train cnn --epochs 1 --limit 640 out.safetensors
    # load a Stride file into PyTorch; --eval prints the test accuracy as `stride eval` does
    python3 tools/stride_torch.py import cnn.safetensors --eval --limit 1000 \
        [--predictions pred.csv] [--logits logits.npy] [--save-pt model.pt]
    ...then: build/stride eval --weights out.safetensors

Options of both commands: --data DIR (FashionMNIST IDX files, plain or .gz; default: $STRIDE_DATA,
./data/FashionMNIST/raw, /usr/share/datasets/fashion-mnist), --limit N (first N training and
test images, as in Stride), --batch N (64), --threads N, --eval (print "Test accuracy: ..."),
--predictions FILE (the CSV of `stride eval --predictions`: index,label,predicted,label_name,
predicted_name), --logits FILE.npy (float32 logits of the evaluated test images, shape (N, 10)).
export --train also takes --epochs N (1), --lr X (0.001), --seed N (777).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
DATA_DIRS = ["./data/FashionMNIST/raw", "/usr/share/datasets/fashion-mnist"]
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# ------------------------------------------------------------------------------------ models


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
        x = self.block1(x)
        x = self.block2(x)
        x = self.block3(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class SingleLayerNet(nn.Module):
    """The notebook flattens the input (X.view(-1, 784)) before calling it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x)


class MultiLayerNet(nn.Module):
    """The notebook flattens the input (X.view(-1, 784)) before calling it."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                    nn.Linear(256, 10))

    def forward(self, x):
        return self.layers(x)


MODELS = {"cnn": ConvNet, "linear": SingleLayerNet, "mlp": MultiLayerNet}
# a tensor name that only one kind has (what Stride looks for when there is no metadata)
MARKS = {"block1.0.weight": "cnn", "linear.weight": "linear", "layers.0.weight": "mlp"}


def create(kind):
    """A fresh model of kind 'cnn', 'linear' or 'mlp'."""
    if kind not in MODELS:
        raise ValueError("unknown model kind %r: expected cnn, linear or mlp" % (kind,))
    return MODELS[kind]()


def kind_of(model_or_state):
    """'cnn', 'linear' or 'mlp' for a model (by class name) or a state_dict (by tensor names)."""
    if isinstance(model_or_state, nn.Module):
        for k, cls in MODELS.items():
            if type(model_or_state).__name__ == cls.__name__:
                return k
        model_or_state = model_or_state.state_dict()
    for name, k in MARKS.items():
        if name in model_or_state:
            return k
    raise ValueError("cannot tell which model this is: no block1.0.weight, linear.weight or "
                     "layers.0.weight tensor")


def logits(model, x, batch=1000):
    """Logits (float32, eval mode, no grad) of images x (N,1,28,28); flattens for linear/mlp."""
    flat = kind_of(model) != "cnn"
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            out.append(model(xb.reshape(-1, 784) if flat else xb))
    return torch.cat(out) if out else torch.zeros(0, 10)


# ------------------------------------------------------------------------------ safetensors

# safetensors dtype -> (numpy dtype, torch dtype)
DTYPES = {
    "F64": (np.float64, torch.float64), "F32": (np.float32, torch.float32),
    "F16": (np.float16, torch.float16), "BF16": (np.int16, torch.bfloat16),
    "I64": (np.int64, torch.int64), "I32": (np.int32, torch.int32),
    "I16": (np.int16, torch.int16), "I8": (np.int8, torch.int8), "U8": (np.uint8, torch.uint8),
    "BOOL": (np.bool_, torch.bool),
}


class FormatError(ValueError):
    pass


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} (in that order) as a safetensors file, atomically: a temporary file
    in the same directory, fsync'd, then renamed over path. Tensors go out as they are (dtype
    F32 for float32, I64 for int64, ...), little-endian, contiguous."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    rev = {t: n for n, (_, t) in DTYPES.items() if n != "BF16"}
    rev[torch.bfloat16] = "BF16"
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in rev:
            raise ValueError("%s: dtype %s cannot be written" % (name, t.dtype))
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
        data = raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": rev[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".%s." % os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def read_safetensors(path):
    """(OrderedDict {name: torch tensor} in file order, metadata dict). Checks the header and
    that every tensor's bytes lie in the file and match its dtype and shape."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise FormatError("%s: not a safetensors file (%d bytes)" % (path, len(buf)))
    (n,) = struct.unpack("<Q", buf[:8])
    if n < 2 or n > len(buf) - 8:
        raise FormatError("%s: header length %d does not fit in the file (%d bytes)"
                          % (path, n, len(buf)))
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError("%s: header is not valid JSON: %s" % (path, e))
    if not isinstance(header, dict):
        raise FormatError("%s: header is not a JSON object" % path)
    data = memoryview(buf)[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise FormatError("%s: __metadata__ is not an object" % path)
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise FormatError("%s: tensor %r needs dtype, shape and data_offsets" % (path, name))
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in DTYPES:
            raise FormatError("%s: tensor %r has unsupported dtype %r" % (path, name, dt))
        if (not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape)
                or not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) for o in offs)):
            raise FormatError("%s: tensor %r has a bad shape or data_offsets" % (path, name))
        b, e = offs
        npdt = np.dtype(DTYPES[dt][0]).newbyteorder("<")
        if not 0 <= b <= e <= len(data) or e - b != math.prod(shape) * npdt.itemsize:
            raise FormatError("%s: tensor %r: data_offsets [%d, %d] do not match its shape %s "
                              "and dtype %s in %d data bytes" % (path, name, b, e, shape, dt,
                                                                 len(data)))
        entries.append((b, name, dt, shape, npdt, e))
    tensors = {}
    for b, name, dt, shape, npdt, e in entries:  # header order
        arr = np.frombuffer(data[b:e], dtype=npdt).reshape(shape).astype(npdt.newbyteorder("="))
        t = torch.from_numpy(arr.copy())
        tensors[name] = t.view(torch.bfloat16) if dt == "BF16" else t
    return tensors, meta


# ---------------------------------------------------------------------------- save and load


def _state_dict_of(obj):
    """A state_dict from a model, a state_dict, or a checkpoint dict holding one under
    "state_dict", "model_state_dict" or "model"."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if not sd:
            for key in ("state_dict", "model_state_dict", "model"):
                if isinstance(obj.get(key), (dict, nn.Module)):
                    return _state_dict_of(obj[key])
        if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
            sd = {k[len("module."):]: v for k, v in sd.items()}
        return sd
    raise TypeError("expected a model or a state_dict, got %s" % type(obj).__name__)


def save(model, path, kind=None, metadata=None):
    """Writes model (a ConvNet / SingleLayerNet / MultiLayerNet, any nn.Module with the same
    state_dict, or a state_dict) as a Stride weights file, atomically. The state_dict must be
    exactly the kind's (names and shapes); float tensors are written as F32 and
    num_batches_tracked as I64. metadata: extra string entries."""
    sd = _state_dict_of(model)
    kind = kind or kind_of(model if isinstance(model, nn.Module) else sd)
    ref = create(kind).state_dict()
    missing = [k for k in ref if k not in sd]
    extra = [k for k in sd if k not in ref]
    if missing or extra:
        raise ValueError("%s: state_dict does not match the %s model (%s): missing %s, "
                         "unexpected %s" % (path, kind, MODELS[kind].__name__, missing or "none",
                                            extra or "none"))
    out = {}
    for name, r in ref.items():  # the model's own order, as Stride writes it
        t = sd[name]
        if tuple(t.shape) != tuple(r.shape):
            raise ValueError("%s: tensor %s has shape %s, expected %s" %
                             (path, name, list(t.shape), list(r.shape)))
        out[name] = t.detach().to(torch.int64 if r.dtype == torch.int64 else torch.float32)
    meta = {"format": "pt", "stride_model": kind}
    meta.update(metadata or {})
    write_safetensors(path, out, meta)
    return kind


def load(path, kind=None):
    """The model in a Stride (or PyTorch safetensors) weights file, in eval mode: kind from the
    stride_model metadata or else the tensor names; dtypes must be the model's (F32, and I64 for
    num_batches_tracked) and load_state_dict(strict=True) checks names and shapes."""
    return _load(path, kind)[0]


def _load(path, kind=None):
    tensors, meta = read_safetensors(path)
    k = kind or meta.get("stride_model")
    if k is not None and k not in MODELS:
        raise FormatError("%s: metadata stride_model is %r, expected cnn, linear or mlp"
                          % (path, k))
    if k is None:
        try:
            k = kind_of(tensors)
        except ValueError as e:
            raise FormatError("%s: %s" % (path, e))
    model = create(k)
    ref = model.state_dict()
    for name, t in tensors.items():
        if name in ref and ref[name].dtype != t.dtype:
            raise FormatError("%s: tensor %s has dtype %s, expected %s" % (
                path, name, t.dtype, ref[name].dtype))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise FormatError("%s: %s" % (path, " ".join(str(e).split())))
    model.eval()
    return model, meta


# --------------------------------------------------------------------------------------- data


def find_data_dir(explicit=None):
    cands = [explicit] if explicit else [os.environ.get("STRIDE_DATA")] + DATA_DIRS
    for d in cands:
        if d and all(os.path.exists(os.path.join(d, f)) or os.path.exists(os.path.join(d, f + ".gz"))
                     for f in IDX_FILES[True] + IDX_FILES[False]):
            return d
    raise FileNotFoundError("FashionMNIST not found (looked in %s); pass --data DIR holding "
                            "t10k-images-idx3-ubyte[.gz] and the other IDX files"
                            % ", ".join(c for c in cands if c))


def read_idx(path):
    """An IDX file (path, or path + '.gz') as a uint8 numpy array of its shape."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08:
        raise FormatError("%s: not an unsigned-byte IDX file" % path)
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    n = math.prod(shape)
    if len(raw) - 4 - 4 * ndim != n:
        raise FormatError("%s: %d data bytes, expected %d for shape %s"
                          % (path, len(raw) - 4 - 4 * ndim, n, list(shape)))
    return np.frombuffer(raw, np.uint8, n, 4 + 4 * ndim).reshape(shape)


def load_fashion(data_dir=None, train=False, limit=0):
    """FashionMNIST as ToTensor() gives it: float32 images (N,1,28,28) = uint8 / 255 and int64
    labels; the first limit images only if limit > 0."""
    d = find_data_dir(data_dir)
    imgs, labels = (read_idx(os.path.join(d, f)) for f in IDX_FILES[train])
    if limit:
        imgs, labels = imgs[:limit], labels[:limit]
    x = torch.from_numpy(imgs.astype(np.float32)).div(255).unsqueeze(1).contiguous()
    return x, torch.from_numpy(labels.astype(np.int64))


# -------------------------------------------------------------------------------------- train


def train(kind, epochs=1, limit=0, batch=64, lr=0.001, seed=777, data_dir=None, log=print):
    """Trains a fresh model as the notebook does (Adam, CrossEntropyLoss, shuffled batches)."""
    torch.manual_seed(seed)
    model = create(kind)
    x, y = load_fashion(data_dir, train=True, limit=limit)
    flat = kind != "cnn"
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        model.train()
        t0, total, n = time.time(), 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            xb, yb = x[idx], y[idx]
            loss = loss_fn(model(xb.view(-1, 784) if flat else xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            n += 1
        log("Epoch %02d/%d | cost = %.6f | time = %.2fs" % (ep + 1, epochs, total / max(n, 1),
                                                          time.time() - t0))
    model.eval()
    return model


# ---------------------------------------------------------------------------------------- CLI


def evaluate(model, args):
    x, y = load_fashion(args.data, train=False, limit=args.limit)
    t0 = time.time()
    out = logits(model, x, args.batch)
    seconds = time.time() - t0
    pred = out.argmax(1)
    correct, total = int((pred == y).sum()), len(y)
    if args.eval:
        acc = 100.0 * correct / total if total else 0.0
        p = acc / 100.0
        se = 100.0 * math.sqrt(p * (1.0 - p) / total) if total else 0.0
        print("Test accuracy: %.2f%% \u00b1 %.2f%% (%d of %d images)" % (acc, se, correct, total))
        print("Time per image: %.2f us (PyTorch %s)" % (1e6 * seconds / max(total, 1),
                                                       torch.__version__))
    if args.predictions:
        lines = ["index,label,predicted,label_name,predicted_name\n"]
        for i, (l, p) in enumerate(zip(y.tolist(), pred.tolist())):
            lines.append("%d,%d,%d,%s,%s\n" % (i, l, p, CLASS_NAMES[l], CLASS_NAMES[p]))
        _write_atomic(args.predictions, "".join(lines).encode())
    if args.logits:
        tmp = args.logits + ".tmp%d.npy" % os.getpid()
        np.save(tmp, out.numpy().astype(np.float32))
        os.replace(tmp, args.logits)


def _write_atomic(path, data):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def describe(model, path, meta):
    kind = kind_of(model)
    n = sum(p.numel() for p in model.parameters())
    print("%s (%s) from %s: %s parameters" % (type(model).__name__, kind, path, format(n, ",")))
    if meta:
        print("metadata: %s" % json.dumps(meta, sort_keys=True))


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="stride_torch.py", description="Stride weights to and from PyTorch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  stride_torch.py export model.pt out.safetensors\n"
               "  stride_torch.py export --train cnn --epochs 1 --limit 640 out.safetensors\n"
               "  stride_torch.py import cnn.safetensors --eval --limit 1000")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--data", help="FashionMNIST directory (IDX files, plain or .gz)")
        p.add_argument("--limit", type=int, default=0,
                       help="use only the first N training and test images")
        p.add_argument("--batch", type=int, default=64, help="batch size (64)")
        p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
        p.add_argument("--eval", action="store_true",
                       help="print the test accuracy as `stride eval` does")
        p.add_argument("--predictions", metavar="FILE.csv",
                       help="write index,label,predicted,label_name,predicted_name per test image")
        p.add_argument("--logits", metavar="FILE.npy", help="write the test images' logits")

    pe = sub.add_parser("export", help="PyTorch -> Stride: convert MODEL.pt or --train a model")
    pe.add_argument("src", nargs="?", metavar="MODEL.pt",
                    help="torch.save'd state_dict, model, or {'state_dict': ...}")
    pe.add_argument("out", metavar="OUT.safetensors")
    pe.add_argument("--train", choices=sorted(MODELS), metavar="cnn|linear|mlp",
                    help="train this model in PyTorch instead of converting a file")
    pe.add_argument("--kind", choices=sorted(MODELS), help="model kind (default: from the names)")
    pe.add_argument("--epochs", type=int, default=1)
    pe.add_argument("--lr", type=float, default=0.001)
    pe.add_argument("--seed", type=int, default=777)
    common(pe)

    pi = sub.add_parser("import", help="Stride -> PyTorch: load IN.safetensors, optionally evaluate")
    pi.add_argument("src", metavar="IN.safetensors")
    pi.add_argument("--save-pt", metavar="FILE.pt", help="torch.save the model's state_dict")
    common(pi)

    args = ap.parse_args(argv)
    if args.limit < 0 or args.batch < 1 or args.threads < 0:
        ap.error("--limit, --batch and --threads must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.cmd == "export":
            if bool(args.train) == bool(args.src):
                ap.error("export needs either MODEL.pt or --train cnn|linear|mlp")
            if args.train:
                if args.epochs < 1:
                    ap.error("--epochs must be at least 1")
                model = train(args.train, args.epochs, args.limit, args.batch, args.lr, args.seed,
                              args.data)
                kind = save(model, args.out, args.train)
            else:
                obj = torch.load(args.src, map_location="cpu")
                sd = _state_dict_of(obj)
                kind = args.kind or kind_of(obj if isinstance(obj, nn.Module) else sd)
                kind = save(sd, args.out, kind)
                model = create(kind)
                model.load_state_dict(sd, strict=True)
                model.eval()
            print("saved %s (%s, %s)" % (args.out, kind, MODELS[kind].__name__))
        else:
            model, meta = _load(args.src)
            describe(model, args.src, meta)
            if args.save_pt:
                torch.save(model.state_dict(), args.save_pt)
                print("saved %s" % args.save_pt)
        if args.eval or args.predictions or args.logits:
            evaluate(model, args)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        print("stride_torch.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
