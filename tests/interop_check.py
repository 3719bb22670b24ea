#!/usr/bin/env python3
"""interop_check.py - helpers for tests/cli/test_interop.sh and tests/cli/test_predict.sh.

Needs numpy and the standard library only (no torch); JPEG files are written with PIL
(python3-pil) or else cjpeg (libjpeg-turbo-progs). Checks print "ok   NAME" / "FAIL NAME" lines
(the calling script counts them) and exit 1 if any failed.

  interop_check.py pgm DATA OUTDIR I...              test images I... as 28x28 P5 files tI.pgm
  interop_check.py compare-preds NAME STRIDE.csv TORCH.csv TORCH_LOGITS.npy
  interop_check.py compare-probs NAME LOGITS.npy PREDICT.jsonl
  interop_check.py same-tensors NAME A.safetensors B.safetensors
  interop_check.py images DATA OUTDIR N              the predict test's pictures of images 0..N-1
  interop_check.py check-predict REF.csv PREDICT.jsonl [REF_TOP_PROB]
  interop_check.py check-json NAME PREDICT.jsonl COUNT   COUNT well-formed `predict --json` lines
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np

TOL = 1e-4
failures = 0


def ok(name):
    print("ok   %s" % name)


def bad(name, detail=""):
    global failures
    failures += 1
    print("FAIL %s" % name)
    for line in str(detail).splitlines()[:20]:
        print("    " + line)


def test_images(data):
    p = os.path.join(data, "t10k-images-idx3-ubyte")
    raw = open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz", "rb").read()
    n = struct.unpack(">I", raw[4:8])[0]
    return np.frombuffer(raw, np.uint8, n * 784, 16).reshape(n, 28, 28)


def read_csv(path):
    rows = open(path).read().splitlines()
    if rows[0] != "index,label,predicted,label_name,predicted_name":
        raise SystemExit("%s: unexpected CSV header %r" % (path, rows[0]))
    out = {}
    for r in rows[1:]:
        f = r.split(",")
        out[int(f[0])] = (int(f[1]), int(f[2]), f[3], f[4])
    return out


def read_jsonl(path):
    out = []
    for i, line in enumerate(open(path).read().splitlines()):
        try:
            out.append(json.loads(line))
        except ValueError as e:
            bad("%s line %d is JSON" % (path, i + 1), "%s\n%s" % (e, line))
    return out


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


# ------------------------------------------------------------------------------ image writers


def pgm(img):
    h, w = img.shape
    return b"P5\n%d %d\n255\n" % (w, h) + img.astype(np.uint8).tobytes()


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _filter_rows(raw, bpp):
    """Each row gets filter type y % 5 (None, Sub, Up, Average, Paeth)."""
    out, prev = [], np.zeros(raw.shape[1], np.int32)
    for y in range(raw.shape[0]):
        row = raw[y].astype(np.int32)
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        ft = y % 5
        if ft == 0:
            f = row
        elif ft == 1:
            f = row - left
        elif ft == 2:
            f = row - prev
        elif ft == 3:
            f = row - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = row - pred
        out.append(bytes([ft]) + (f & 0xFF).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def png(img, mode):
    """A PNG of gray uint8 img in one of the modes gray8, gray16, rgb8, graya8, rgba8, palette."""
    h, w = img.shape
    g = img.astype(np.uint16)
    plte = b""
    if mode == "gray8":
        ctype, depth, raw, bpp = 0, 8, img.astype(np.uint8), 1
    elif mode == "gray16":
        v = g * 257
        raw = np.stack([v >> 8, v & 0xFF], -1).reshape(h, w * 2).astype(np.uint8)
        ctype, depth, bpp = 0, 16, 2
    elif mode == "rgb8":
        ctype, depth, raw, bpp = 2, 8, np.repeat(img[:, :, None], 3, 2).reshape(h, w * 3), 3
    elif mode == "graya8":
        a = np.full_like(img, 255)
        ctype, depth, raw, bpp = 4, 8, np.stack([img, a], -1).reshape(h, w * 2), 2
    elif mode == "rgba8":
        a = np.full_like(img, 255)
        raw = np.stack([img, img, img, a], -1).reshape(h, w * 4)
        ctype, depth, bpp = 6, 8, 4
    elif mode == "palette":
        ctype, depth, raw, bpp = 3, 8, img.astype(np.uint8), 1
        plte = _chunk(b"PLTE", bytes(np.repeat(np.arange(256, dtype=np.uint8), 3)))
    else:
        raise ValueError(mode)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    idat = zlib.compress(_filter_rows(np.ascontiguousarray(raw, np.uint8), bpp), 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + plte + _chunk(b"IDAT", idat) +
            _chunk(b"IEND", b""))


def bmp(img):
    """A 24-bit BI_RGB BMP (bottom-up rows, BGR, rows padded to 4 bytes)."""
    h, w = img.shape
    stride = (w * 3 + 3) // 4 * 4
    rows = []
    for y in range(h - 1, -1, -1):
        r = np.repeat(img[y][:, None], 3, 1).astype(np.uint8).tobytes()
        rows.append(r + b"\0" * (stride - w * 3))
    pix = b"".join(rows)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pix), 2835, 2835, 0, 0)
    head = struct.pack("<2sIHHI", b"BM", 14 + 40 + len(pix), 0, 0, 14 + 40)
    return head + info + pix


def jpeg_writer():
    """A function (img, path) writing a quality-100 gray JPEG, and its name; or (None, why)."""
    try:
        from PIL import Image

        def w(img, path):
            Image.fromarray(img.astype(np.uint8), "L").save(path, "JPEG", quality=100)
        return w, "PIL"
    except ImportError:
        pass
    cjpeg = shutil.which("cjpeg")
    if cjpeg:
        def w(img, path):
            with open(path, "wb") as f:
                subprocess.run([cjpeg, "-quality", "100"], input=pgm(img), stdout=f, check=True)
        return w, "cjpeg"
    return None, ("no JPEG encoder: install python3-pil (PIL) or libjpeg-turbo-progs (cjpeg)")


PNG_MODES = ["gray8", "rgb8", "gray16", "graya8", "rgba8", "palette"]
SIZES = [28, 56, 84]


def make_images(data, outdir, n):
    imgs = test_images(data)[:n]
    jw, why = jpeg_writer()
    for i, base in enumerate(imgs):
        for si, s in enumerate(SIZES):
            k = s // 28
            up = np.repeat(np.repeat(base, k, 0), k, 1)
            for inv in (0, 1):
                img = 255 - up if inv else up
                stem = os.path.join(outdir, "%%s_%d_%d_%d" % (s, inv, i))
                open(stem % "pgm" + ".pgm", "wb").write(pgm(img))
                mode = PNG_MODES[(i + si + 3 * inv) % len(PNG_MODES)]
                open(stem % "png" + ".png", "wb").write(png(img, mode))
                open(stem % "bmp" + ".bmp", "wb").write(bmp(img))
                if jw:
                    jw(img, stem % "jpg" + ".jpg")
    if not jw:
        print(why)
        return 3
    print("jpeg encoder: %s" % why)
    return 0


# ------------------------------------------------------------------------------------ checks


def compare_preds(name, stride_csv, torch_csv, logits_npy):
    """Same predicted class for every image; a difference is tolerated only where PyTorch's two
    largest logits are within TOL (a tie that rounding may break either way), and reported."""
    s, t, z = read_csv(stride_csv), read_csv(torch_csv), np.load(logits_npy)
    if sorted(s) != sorted(t) or len(s) != len(z):
        return bad("%s: same images" % name, "stride %d rows, torch %d rows, %d logits"
                   % (len(s), len(t), len(z)))
    if any(s[i][0] != t[i][0] for i in s):
        return bad("%s: same labels" % name)
    diff = [i for i in sorted(s) if s[i][1] != t[i][1]]
    if any(t[i][1] != int(np.argmax(z[i])) for i in t):
        return bad("%s: torch CSV agrees with torch logits" % name)
    ties = []
    for i in diff:
        top2 = np.sort(z[i].astype(np.float64))[-2:]
        if top2[1] - top2[0] >= TOL:
            return bad("%s: identical predicted classes" % name,
                       "image %d: stride %d, torch %d, torch logits %s (%d differ)"
                       % (i, s[i][1], t[i][1], z[i], len(diff)))
        ties.append(i)
    ok("%s: identical predicted classes for %d images%s" % (
        name, len(s), " (ties within %g at %s)" % (TOL, ties) if ties else ""))
    return len(ties)


def compare_probs(name, logits_npy, jsonl):
    """stride predict --json on tI.pgm vs softmax of PyTorch's logits of test image I."""
    z = np.load(logits_npy)
    rows = read_jsonl(jsonl)
    if not rows:
        return bad("%s: predict output" % name, "no lines")
    worst, msgs = 0.0, []
    for r in rows:
        i = int(os.path.basename(r["file"])[1:].split(".")[0])
        p = softmax(z[i])
        order = [int(c) for c in np.argsort(-p, kind="stable")[:3]]
        got = [t["index"] for t in r["top"]]
        for t in r["top"]:
            worst = max(worst, abs(t["probability"] - p[t["index"]]))
        if got[0] != order[0] or r["inverted"]:
            msgs.append("%s: stride top %s, torch top %s, inverted %s"
                        % (r["file"], got, order, r["inverted"]))
    if msgs or worst > TOL:
        return bad("%s: predict probabilities = torch softmax within %g" % (name, TOL),
                   "\n".join(msgs + ["largest difference %.3g" % worst]))
    ok("%s: predict probabilities = torch softmax within %g on %d images (largest difference "
       "%.2g)" % (name, TOL, len(rows), worst))


def read_sf(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    data = b[8 + n:]
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items()}, meta


def same_tensors(name, a, b):
    (ta, ma), (tb, mb) = read_sf(a), read_sf(b)
    if list(ta) != list(tb):
        return bad("%s: same tensor names in the same order" % name, "%s\n%s" % (list(ta), list(tb)))
    d = [k for k in ta if ta[k] != tb[k]]
    if d:
        return bad("%s: same tensors" % name, "differ: %s" % d)
    if ma.get("stride_model") != mb.get("stride_model") or mb.get("format") != "pt":
        return bad("%s: metadata" % name, "%s\n%s" % (ma, mb))
    ok("%s: %d tensors identical (dtypes, shapes, bytes), metadata %s" % (name, len(ta), mb))


def check_predict(ref_csv, jsonl, threshold=0.9):
    """Every picture (FMT_SIZE_INV_I.ext) must get the class `stride eval` gave test image I;
    lossless ones also the same top-3 probabilities (within TOL) as pgm_28_0_I.pgm; JPEGs must
    match where that reference's top probability exceeds threshold (others are reported)."""
    ref = read_csv(ref_csv)
    rows = read_jsonl(jsonl)
    base = {}
    for r in rows:
        fmt, size, inv, i = os.path.basename(r["file"]).split(".")[0].split("_")
        if (fmt, size, inv) == ("pgm", "28", "0"):
            base[int(i)] = {t["index"]: t["probability"] for t in r["top"]}
    groups = {}
    for r in rows:
        fmt, size, inv, i = os.path.basename(r["file"]).split(".")[0].split("_")
        i, inv = int(i), int(inv)
        g = groups.setdefault((fmt, size, inv), {"n": 0, "errs": [], "notes": [], "worst": 0.0})
        g["n"] += 1
        want, got = ref[i][1], r["top"][0]["index"]
        if bool(r["inverted"]) != bool(inv):
            g["errs"].append("%s: inverted is %s" % (r["file"], r["inverted"]))
        if fmt != "jpg":
            for t in r["top"]:
                if i in base and t["index"] in base[i]:
                    g["worst"] = max(g["worst"], abs(t["probability"] - base[i][t["index"]]))
                else:
                    g["errs"].append("%s: class %d not in the reference top 3" % (r["file"],
                                                                                t["index"]))
        if got != want:
            p = max(base.get(i, {0: 1.0}).values())
            msg = "%s: predicted %d (%s), stride eval says %d (reference top probability %.3f)" % (
                r["file"], got, r["top"][0]["class"], want, p)
            (g["notes"] if fmt == "jpg" and p <= threshold else g["errs"]).append(msg)
        if fmt != "jpg" and g["worst"] > TOL:
            g["errs"].append("%s: probabilities differ from pgm_28_0_%d by %.3g" % (
                r["file"], i, g["worst"]))
    for (fmt, size, inv), g in sorted(groups.items()):
        name = "%s %sx%s %s: class of `stride eval --predictions` (%d images)" % (
            fmt.upper(), size, size, "inverted, auto" if inv else "as is", g["n"])
        if g["errs"]:
            bad(name, "\n".join(g["errs"]))
        else:
            ok(name + ("" if fmt == "jpg" else ", probabilities within %g" % TOL) +
               ("; note: " + "; ".join(g["notes"]) if g["notes"] else ""))
    return groups


CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def check_json(name, jsonl, count):
    """Every line is a JSON object {"file": str, "inverted": bool, "top": [3 x {"class": name,
    "index": i, "probability": p}]} with distinct classes and probabilities in [0, 1],
    non-increasing, summing to at most 1."""
    errs = []
    lines = open(jsonl).read().splitlines()
    for n, line in enumerate(lines, 1):
        try:
            r = json.loads(line)
        except ValueError as e:
            errs.append("line %d: %s: %s" % (n, e, line))
            continue
        try:
            assert isinstance(r, dict) and set(r) == {"file", "inverted", "top"}, "keys"
            assert isinstance(r["file"], str) and isinstance(r["inverted"], bool), "types"
            top = r["top"]
            assert isinstance(top, list) and len(top) == 3, "3 entries in top"
            for t in top:
                assert set(t) == {"class", "index", "probability"}, "keys of top"
                assert isinstance(t["index"], int) and 0 <= t["index"] < 10, "index"
                assert t["class"] == CLASS_NAMES[t["index"]], "class name of index"
                assert isinstance(t["probability"], float) and 0 <= t["probability"] <= 1, "p"
            assert len({t["index"] for t in top}) == 3, "distinct classes"
            ps = [t["probability"] for t in top]
            assert ps == sorted(ps, reverse=True), "probabilities non-increasing"
            assert sum(ps) <= 1 + 1e-5, "probabilities sum to at most 1"
        except (AssertionError, TypeError, KeyError) as e:
            errs.append("line %d: %s: %s" % (n, e, line))
    if len(lines) != count:
        errs.append("%d lines, expected %d" % (len(lines), count))
    if errs:
        return bad(name, "\n".join(errs))
    ok("%s: %d well-formed JSON lines" % (name, len(lines)))


def main(argv):
    cmd, a = argv[1], argv[2:]
    if cmd == "pgm":
        imgs = test_images(a[0])
        for i in a[2:]:
            open(os.path.join(a[1], "t%d.pgm" % int(i)), "wb").write(pgm(imgs[int(i)]))
        return 0
    if cmd == "images":
        return make_images(a[0], a[1], int(a[2]))
    if cmd == "compare-preds":
        compare_preds(*a)
    elif cmd == "compare-probs":
        compare_probs(*a)
    elif cmd == "same-tensors":
        same_tensors(*a)
    elif cmd == "check-json":
        check_json(a[0], a[1], int(a[2]))
    elif cmd == "check-predict":
        check_predict(a[0], a[1], float(a[2]) if len(a) > 2 else 0.9)
    else:
        raise SystemExit("unknown command %r" % cmd)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
