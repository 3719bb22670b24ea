#!/bin/bash
# Interop tests: weights trained by Stride are used by PyTorch and the other way round, through
# tools/stride_torch.py. For each model (cnn, linear, mlp):
#   a) Stride trains a few steps; PyTorch loads the file: the same test accuracy line and the same
#      predicted class for each of the first 1000 test images as `stride eval --predictions`, and
#      `stride predict --json` probabilities on test images saved as PGM = PyTorch's softmax
#      within 1e-4;
#   b) PyTorch trains a few steps and exports; Stride evaluates the file: the same accuracy line
#      and predictions as PyTorch's.
# Plus (cnn): a torch.save'd state_dict exported by the tool holds exactly Stride's tensors.
# Needs /usr/bin/python3 with torch and numpy (Debian: python3-torch, python3-numpy) and
# FashionMNIST (dataset-fashion-mnist or $STRIDE_DATA). Missing torch is a failure, not a skip.
# Prints "ok"/"FAIL" per check and "N passed, N failed" last.
BUILD=${BUILD:-build}
S="$PWD/$BUILD/stride"
PY=${PYTHON:-/usr/bin/python3}
TOOL="$PWD/tools/stride_torch.py"
CHK="$PWD/tests/interop_check.py"
DATA=${STRIDE_DATA:-/usr/share/datasets/fashion-mnist}
N=1000            # test images compared
TRAIN=640         # training images for the short runs
PGM_IDS=(0 1 2 3 4 5 6 7 8 9)
# OpenMP threads that spin while waiting make a loaded machine many times slower (Stride and
# PyTorch both use OpenMP); sleeping waits give the same results.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
T=$(mktemp -d /tmp/stride-interop.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "$2" ] && printf '%s\n' "$2" | head -20 | sed 's/^/    /'; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
# run_check NAME CMD...: runs a helper that prints ok/FAIL lines itself; adds them up
run_check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    LAST_OUT=$out
    local p f
    p=$(printf '%s\n' "$out" | grep -c '^ok ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    pass=$((pass + p))
    fail=$((fail + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        bad "$name (exit $rc)" "$out"
    fi
    return $rc
}
acc_line() { grep -m1 '^Test accuracy: ' "$1"; }
# same_acc NAME STRIDE_LINE TORCH_LINE: identical, or different only because compare-preds (just
# run) found exact ties that rounding broke differently
same_acc() {
    if [ -n "$2" ] && [ "$2" = "$3" ]; then
        ok "$1 ($2)"
    elif [ -n "$2" ] && grep -q 'ties within' <<<"$LAST_OUT"; then
        ok "$1: differs only by ties (stride: $2; torch: $3)"
    else
        bad "$1" "stride: $2"$'\n'"torch:  $3"
    fi
}

# --- prerequisites: a missing torch counts as a failure (CI installs python3-torch)
# (find_spec: importing torch here would cost seconds; the tool's own runs import it)
if ! err=$("$PY" -c 'import importlib.util as u, sys
miss = [m for m in ("torch", "numpy") if u.find_spec(m) is None]
sys.exit("missing: " + ", ".join(miss) if miss else 0)' 2>&1); then
    bad "$PY cannot import torch and numpy: install python3-torch and python3-numpy" "$err"
    finish
fi
ok "$PY has torch and numpy"
if [ ! -x "$S" ]; then
    bad "$S not built (make)"
    finish
fi
if ! "$PY" "$CHK" pgm "$DATA" "$T" "${PGM_IDS[@]}"; then
    bad "test images as PGM (FashionMNIST in $DATA?)"
    finish
fi
pgms=()
for i in "${PGM_IDS[@]}"; do pgms+=("$T/t$i.pgm"); done

for m in cnn linear mlp; do
    # --- a) Stride -> PyTorch
    W="$T/$m.stride.safetensors"
    if ! out=$("$S" train --model $m --epochs 1 --limit $TRAIN --data "$DATA" --save "$W" --quiet 2>&1); then
        bad "$m: stride train" "$out"
        continue
    fi
    if ! out=$("$S" eval --weights "$W" --limit $N --data "$DATA" --predictions "$T/$m.a.stride.csv" \
        >"$T/$m.a.stride.txt" 2>&1); then
        bad "$m: stride eval" "$(cat "$T/$m.a.stride.txt")"
        continue
    fi
    extra=()
    [ $m = cnn ] && extra=(--save-pt "$T/cnn.pt")
    if ! "$PY" "$TOOL" import "$W" --eval --data "$DATA" --limit $N --predictions "$T/$m.a.torch.csv" \
        --logits "$T/$m.a.torch.npy" "${extra[@]}" >"$T/$m.a.torch.txt" 2>&1; then
        bad "$m: stride_torch.py import --eval of Stride's file" "$(cat "$T/$m.a.torch.txt")"
        continue
    fi
    ok "$m: stride_torch.py loads Stride's file ($(head -1 "$T/$m.a.torch.txt"))"
    run_check "$m: Stride -> PyTorch predictions" "$PY" "$CHK" compare-preds \
        "$m: Stride-trained, PyTorch vs Stride" "$T/$m.a.stride.csv" "$T/$m.a.torch.csv" "$T/$m.a.torch.npy"
    same_acc "$m: Stride-trained, same accuracy line" "$(acc_line "$T/$m.a.stride.txt")" \
        "$(acc_line "$T/$m.a.torch.txt")"
    if "$S" predict --weights "$W" --invert no --json "${pgms[@]}" >"$T/$m.predict.jsonl" 2>"$T/$m.predict.err"; then
        run_check "$m: predict vs torch softmax" "$PY" "$CHK" compare-probs "$m: Stride-trained" \
            "$T/$m.a.torch.npy" "$T/$m.predict.jsonl"
    else
        bad "$m: stride predict on PGM test images" "$(cat "$T/$m.predict.err")"
    fi

    # --- b) PyTorch -> Stride
    P="$T/$m.torch.safetensors"
    if ! "$PY" "$TOOL" export --train $m --epochs 1 --limit $N --data "$DATA" --eval \
        --predictions "$T/$m.b.torch.csv" --logits "$T/$m.b.torch.npy" "$P" >"$T/$m.b.torch.txt" 2>&1; then
        bad "$m: stride_torch.py export --train" "$(cat "$T/$m.b.torch.txt")"
        continue
    fi
    ta=$(acc_line "$T/$m.b.torch.txt")
    pct=$(sed -E 's/^Test accuracy: ([0-9]+)\..*/\1/' <<<"$ta")
    if [[ "$pct" =~ ^[0-9]+$ ]] && [ "$pct" -ge 40 ]; then
        ok "$m: PyTorch training learns ($ta)"
    else
        bad "$m: PyTorch training learns (accuracy >= 40%)" "$(cat "$T/$m.b.torch.txt")"
    fi
    if ! "$S" eval --weights "$P" --limit $N --data "$DATA" --predictions "$T/$m.b.stride.csv" \
        >"$T/$m.b.stride.txt" 2>&1; then
        bad "$m: stride eval of PyTorch's file" "$(cat "$T/$m.b.stride.txt")"
        continue
    fi
    ok "$m: stride eval reads PyTorch's file ($(head -1 "$T/$m.b.stride.txt"))"
    run_check "$m: PyTorch -> Stride predictions" "$PY" "$CHK" compare-preds \
        "$m: PyTorch-trained, Stride vs PyTorch" "$T/$m.b.stride.csv" "$T/$m.b.torch.csv" "$T/$m.b.torch.npy"
    same_acc "$m: PyTorch-trained, same accuracy line" "$(acc_line "$T/$m.b.stride.txt")" "$ta"
done

# --- a torch.save'd state_dict, exported by the tool, holds exactly Stride's tensors
if [ -s "$T/cnn.pt" ]; then
    if out=$("$PY" "$TOOL" export "$T/cnn.pt" "$T/cnn.pt.safetensors" 2>&1); then
        run_check "export of a .pt" "$PY" "$CHK" same-tensors "cnn: Stride -> .pt -> export" \
            "$T/cnn.stride.safetensors" "$T/cnn.pt.safetensors"
    else
        bad "stride_torch.py export cnn.pt" "$out"
    fi
else
    bad "stride_torch.py import --save-pt wrote cnn.pt"
fi

finish
