#!/usr/bin/env python3
"""notebook_torch.py - the FashionMNIST tutorial's models and training loop in PyTorch, timed.

This is the PyTorch side of bench/run (Stride vs PyTorch). It reproduces the notebook exactly:
the three models, Adam lr 0.001, CrossEntropyLoss, batch 64, DataLoader(shuffle=True) over
datasets.FashionMNIST(transform=ToTensor()), a wall-clock time per epoch, then test accuracy.

  python3 bench/notebook_torch.py --what train --model cnn --epochs 1 --threads 2
  python3 bench/notebook_torch.py --what infer --threads 2          # CNN images/s, batch 1/64/1000
  python3 bench/notebook_torch.py --what startup                    # `import torch`, fresh process
  python3 bench/notebook_torch.py --what notebook --epochs 15       # whole tutorial (3 models)
  add --json for one JSON object on the last line of stdout (what bench/run reads)

Data loading (--loader): 'torchvision' (the notebook's datasets.FashionMNIST + ToTensor, the
default when torchvision imports), 'equivalent' (a Dataset doing the same per-item work:
uint8 -> PIL image -> ToTensor-style float 1x28x28 / 255, used when torchvision is missing),
or 'tensor' (TensorDataset of pre-converted tensors: no per-item work, PyTorch's best case).
Inference timing runs the model alone on pre-loaded test tensors (no DataLoader), in eval mode
under torch.no_grad(): this is PyTorch's best case too.
Runs with Debian's /usr/bin/python3 (python3-torch) or any Python that has torch.
"""
import argparse
import gzip
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time

DATA_DIRS = ["/usr/share/datasets/fashion-mnist", "./data/FashionMNIST/raw"]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def log(args, *a):
    if not args.json:
        print(*a, flush=True)


# ------------------------------------------------------------------------------------- data


def find_data_dir(explicit):
    cands = [explicit] if explicit else [os.environ.get("STRIDE_DATA")] + DATA_DIRS
    for d in cands:
        if d and all(os.path.exists(os.path.join(d, f)) or os.path.exists(os.path.join(d, f + ".gz"))
                     for f in FILES.values()):
            return d
    sys.exit("notebook_torch.py: FashionMNIST not found (tried %s); pass --data DIR" %
             ", ".join(c for c in cands if c))


def torchvision_root(data_dir, cache):
    """A root laid out as torchvision expects (ROOT/FashionMNIST/raw/<ungzipped IDX files>)."""
    raw = os.path.join(cache, "FashionMNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for f in FILES.values():
        dst = os.path.join(raw, f)
        if os.path.exists(dst):
            continue
        src = os.path.join(data_dir, f)
        if os.path.exists(src):
            os.symlink(os.path.abspath(src), dst)
        else:
            tmp = dst + ".tmp%d" % os.getpid()
            with gzip.open(src + ".gz", "rb") as fi, open(tmp, "wb") as fo:
                shutil.copyfileobj(fi, fo)
            os.replace(tmp, dst)
    return cache


def read_idx(data_dir, name):
    """An IDX file (plain or .gz) as a uint8 torch tensor of its shape."""
    import torch
    p = os.path.join(data_dir, name)
    raw = open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz", "rb").read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).view(*shape)


def make_equivalent_dataset_class():
    import torch
    from torch.utils.data import Dataset
    try:
        from PIL import Image
    except ImportError:
        Image = None
    import numpy as np

    class FashionMNISTEquivalent(Dataset):
        """What datasets.FashionMNIST(transform=ToTensor()) does per item, without torchvision:
        uint8 28x28 -> PIL 'L' image -> float tensor 1x28x28 / 255, int label."""

        def __init__(self, images, labels):
            self.data, self.targets = images, labels

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            img, target = self.data[i], int(self.targets[i])
            if Image is not None:
                img = Image.fromarray(img.numpy(), mode="L")
                t = torch.from_numpy(np.array(img, np.uint8, copy=True))
            else:
                t = img.clone()
            t = t.view(28, 28, 1).permute((2, 0, 1)).contiguous()
            return t.to(dtype=torch.get_default_dtype()).div(255), target

    return FashionMNISTEquivalent


def load_datasets(args):
    """(train_dataset, test_dataset, loader description)."""
    import torch
    data_dir = find_data_dir(args.data)
    loader = args.loader
    if loader == "auto":
        try:
            import torchvision  # noqa: F401
            loader = "torchvision"
        except ImportError:
            loader = "equivalent"
    if loader == "torchvision":
        import torchvision
        from torchvision import datasets
        from torchvision.transforms import ToTensor
        root = torchvision_root(data_dir, args.cache)
        train = datasets.FashionMNIST(root=root, train=True, download=False, transform=ToTensor())
        test = datasets.FashionMNIST(root=root, train=False, download=False, transform=ToTensor())
        desc = "torchvision %s datasets.FashionMNIST + ToTensor" % torchvision.__version__
    else:
        tr_x, tr_y = read_idx(data_dir, FILES["train_images"]), read_idx(data_dir, FILES["train_labels"])
        te_x, te_y = read_idx(data_dir, FILES["test_images"]), read_idx(data_dir, FILES["test_labels"])
        if loader == "equivalent":
            cls = make_equivalent_dataset_class()
            train, test = cls(tr_x, tr_y.long()), cls(te_x, te_y.long())
            desc = "no torchvision: equivalent Dataset (uint8 -> PIL -> float 1x28x28/255 per item)"
        else:
            from torch.utils.data import TensorDataset
            train = TensorDataset(tr_x.float().div(255).unsqueeze(1), tr_y.long())
            test = TensorDataset(te_x.float().div(255).unsqueeze(1), te_y.long())
            desc = "TensorDataset of pre-converted tensors (no per-item work)"
    if args.limit:
        for ds in (train, test):
            if hasattr(ds, "tensors"):
                ds.tensors = tuple(t[:args.limit] for t in ds.tensors)
            else:
                ds.data, ds.targets = ds.data[:args.limit], ds.targets[:args.limit]
    return train, test, desc


def test_tensors(args, n):
    """The first n test images as a float (n,1,28,28) tensor /255 and their labels."""
    data_dir = find_data_dir(args.data)
    x = read_idx(data_dir, FILES["test_images"])[:n]
    y = read_idx(data_dir, FILES["test_labels"])[:n]
    return x.float().div(255).unsqueeze(1).contiguous(), y.long()


# ------------------------------------------------------------------------------------- models


def build_model(kind):
    import torch.nn as nn

    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.block1 = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
                                        nn.MaxPool2d(2))
            self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                        nn.MaxPool2d(2))
            self.block3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
            self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(3136, 128), nn.ReLU(),
                                            nn.Dropout(0.5), nn.Linear(128, 10))

        def forward(self, x):
            x = self.block1(x)
            x = self.block2(x)
            x = self.block3(x)
            x = x.view(x.size(0), -1)
            return self.classifier(x)

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

    return {"cnn": ConvNet, "linear": SingleLayerNet, "mlp": MultiLayerNet}[kind]()


def load_safetensors(model, path):
    """Loads a safetensors file (F32/I64 tensors named as the PyTorch state_dict) into model."""
    import torch
    raw = open(path, "rb").read()
    n, = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    sd = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=dtypes[meta["dtype"]])
        sd[name] = t.view(*meta["shape"]) if meta["shape"] else t.view(())
    model.load_state_dict(sd)


# ------------------------------------------------------------------------------------- runs


def evaluate(model, loader):
    import torch
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            pred = model(images).argmax(1)
            correct += (pred == labels).sum().item()
            total += labels.size(0)
    return 100.0 * correct / max(total, 1)


def train_one(args, kind, train_ds, test_ds):
    """The notebook's training loop for one model: per-epoch wall time, cost, test accuracy."""
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader
    torch.manual_seed(args.seed)
    train_loader = DataLoader(train_ds, batch_size=args.batch, shuffle=True)
    test_loader = DataLoader(test_ds, batch_size=args.batch, shuffle=False)
    model = build_model(kind)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    times, costs = [], []
    for epoch in range(args.epochs):
        start = time.time()
        model.train()
        total_loss, batches = 0.0, 0
        for images, labels in train_loader:
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            batches += 1
        t = time.time() - start
        times.append(t)
        costs.append(total_loss / max(batches, 1))
        log(args, "Epoch %02d/%d | cost = %.6f | time = %.2fs" % (epoch + 1, args.epochs, costs[-1], t))
    acc = evaluate(model, test_loader)
    log(args, "%s test accuracy: %.2f%% (%d images)" % (kind, acc, len(test_ds)))
    if args.save:
        torch.save(model.state_dict(), args.save)
    return {"epoch_times_s": times, "costs": costs, "test_accuracy": acc,
            "train_images": len(train_ds), "test_images": len(test_ds),
            "params": sum(p.numel() for p in model.parameters())}


def infer(args):
    """CNN inference images/s on pre-loaded test tensors at each batch size, eval + no_grad."""
    import torch
    model = build_model("cnn")
    if args.weights:
        load_safetensors(model, args.weights)
    model.eval()
    res = {}
    for b in args.batches:
        n = args.limit or 10000
        if b == 1:
            n = min(n, args.limit_b1)
        x, y = test_tensors(args, n)
        n = x.shape[0]
        correct = 0
        with torch.no_grad():
            model(x[:b])  # warm-up (allocations, oneDNN primitive creation)
            start = time.perf_counter()
            for i in range(0, n, b):
                pred = model(x[i:i + b]).argmax(1)
                correct += (pred == y[i:i + b]).sum().item()
            dt = time.perf_counter() - start
        r = {"images": n, "seconds": dt, "images_per_s": n / dt, "us_per_image": 1e6 * dt / n}
        if args.weights:
            r["test_accuracy"] = 100.0 * correct / n
        res[str(b)] = r
        log(args, "batch %4d: %8.1f us per image (%9.0f images/s) over %d images%s" %
            (b, r["us_per_image"], r["images_per_s"], n,
             ", accuracy %.2f%%" % r["test_accuracy"] if args.weights else ""))
    return res


def startup(args):
    """Wall time of `import torch` in a fresh interpreter (and of a bare interpreter)."""
    def wall(code):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t
    bare = wall("pass")
    imp = wall("import torch")
    log(args, "python -c 'import torch': %.3fs (bare interpreter: %.3fs)" % (imp, bare))
    return {"import_torch_s": imp, "python_bare_s": bare}


def blas_libraries():
    """The BLAS / LAPACK / oneDNN / OpenMP shared objects this process has mapped."""
    libs = set()
    try:
        for line in open("/proc/self/maps"):
            p = line.split()[-1]
            b = os.path.basename(p).lower()
            if p.startswith("/") and any(k in b for k in ("blas", "lapack", "mkl", "dnnl", "gomp",
                                                           "iomp", "blis")):
                libs.add(os.path.realpath(p))
    except OSError:
        pass
    return sorted(libs)


def blas_info(torch):
    """BLAS_INFO from torch's build configuration (mkl, open, generic = libblas.so.3, ...)."""
    try:
        import re
        m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
        return m.group(1) if m else None
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=["train", "infer", "startup", "notebook"], default="train",
                    help="train: per-epoch times + test accuracy (default); infer: CNN images/s; "
                         "startup: import torch time; notebook: the whole tutorial (3 models)")
    ap.add_argument("--model", choices=["cnn", "linear", "mlp", "all"], default="all")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N train/test images")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: as is)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loader", choices=["auto", "torchvision", "equivalent", "tensor"], default="auto")
    ap.add_argument("--data", help="FashionMNIST IDX directory (default: $STRIDE_DATA, %s)" % DATA_DIRS[0])
    ap.add_argument("--cache", default="/tmp/stride-bench-torchvision",
                    help="where the torchvision-style root (ungzipped copies) is made")
    ap.add_argument("--batches", default="1,64,1000", help="inference batch sizes")
    ap.add_argument("--limit-b1", type=int, default=2000, help="test images used at batch 1")
    ap.add_argument("--weights", help="safetensors CNN weights for --what infer (else random init)")
    ap.add_argument("--save", help="save the trained state_dict (torch.save) here")
    ap.add_argument("--json", action="store_true", help="print one JSON object of results")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]

    t_process = time.time()
    out = {"what": args.what, "python": sys.executable}
    if args.what == "startup":
        out.update(startup(args))
        print(json.dumps(out) if args.json else "", flush=True)
        return
    t0 = time.perf_counter()
    import torch
    out["import_torch_s"] = time.perf_counter() - t0
    if args.threads:
        torch.set_num_threads(args.threads)
    out.update({"torch": torch.__version__, "threads": torch.get_num_threads(),
                "blas_libs": blas_libraries(), "blas_info": blas_info(torch),
                "env": {k: os.environ[k] for k in sorted(os.environ)
                        if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOMP"))}})
    log(args, "torch %s, %d threads, BLAS etc.: %s" % (torch.__version__, out["threads"],
                                                        ", ".join(out["blas_libs"]) or "?"))
    if args.what == "infer":
        out["infer"] = infer(args)
    else:
        models = ["cnn", "linear", "mlp"] if args.model == "all" or args.what == "notebook" else [args.model]
        t0 = time.perf_counter()
        train_ds, test_ds, desc = load_datasets(args)
        out["data_load_s"] = time.perf_counter() - t0
        out["loader"] = desc
        log(args, "data: %s (%d train, %d test images)" % (desc, len(train_ds), len(test_ds)))
        out["models"] = {}
        for kind in models:
            log(args, "== %s ==" % kind)
            out["models"][kind] = train_one(args, kind, train_ds, test_ds)
    out["process_wall_s"] = time.time() - t_process
    out["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log(args, "peak RSS %.1f MiB, process time %.2fs" % (out["peak_rss_kb"] / 1024, out["process_wall_s"]))
    if args.json:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
