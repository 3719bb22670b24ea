#!/bin/bash
# CLI tests: help, flag errors, shapes/summary, short training runs of each model, save/load round
# trip, `stride run`, figures, and bad input (data, weights, output). Needs FashionMNIST in
# /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist) or $STRIDE_DATA.
# Prints "ok"/"FAIL" per check and "N passed, N failed" last.
BUILD=${BUILD:-build}
S="$PWD/$BUILD/stride"
DATA=${STRIDE_DATA:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d /tmp/stride-cli.XXXXXX)
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "$2" ] && printf '%s\n' "$2" | head -20 | sed 's/^/    /'; }

# expect NAME STATUS PATTERN -- CMD...: runs CMD, checks exit status and that stdout+stderr match
# the extended regex PATTERN
expect() {
    local name=$1 want=$2 pat=$3
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        bad "$name (exit $rc, expected $want)" "$out"
    elif [ -n "$pat" ] && ! printf '%s\n' "$out" | grep -Eq -- "$pat"; then
        bad "$name (output does not match /$pat/)" "$out"
    else
        ok "$name"
    fi
}

# --- help and flags
expect "help lists commands" 0 "run .*whole tutorial" -- "$S" --help
for c in run train eval predict shapes summary featuremaps plot; do
    expect "$c --help" 0 "usage: stride $c" -- "$S" "$c" --help
done
expect "no command" 2 "usage: stride" -- "$S"
expect "unknown command" 2 "unknown command 'fly'" -- "$S" fly
expect "unknown flag" 2 "unknown option '--speed'" -- "$S" train --model cnn --speed 3
expect "flag of another command" 2 "unknown option '--confusion'" -- "$S" train --model cnn --confusion
expect "epochs 0" 2 "invalid value '0' for --epochs" -- "$S" train --model cnn --epochs 0
expect "epochs not a number" 2 "invalid value 'ten' for --epochs" -- "$S" train --model cnn --epochs ten
expect "negative lr" 2 "invalid value '-1' for --lr" -- "$S" train --model cnn --lr -1
expect "lr nan" 2 "invalid value 'nan' for --lr" -- "$S" train --model cnn --lr nan
expect "batch 0" 2 "invalid value '0' for --batch" -- "$S" train --model cnn --batch 0
expect "unknown model" 2 "invalid value 'resnet' for --model" -- "$S" train --model resnet
expect "missing value" 2 "option --epochs needs a value" -- "$S" train --model cnn --epochs
expect "train needs model" 2 "--model is required" -- "$S" train
expect "eval needs weights" 2 "--weights FILE is required" -- "$S" eval
expect "threads 0" 2 "invalid value '0' for --threads" -- "$S" train --model cnn --threads 0

# --- shapes and summary
expect "shapes conv1" 0 "Conv2d\(1->16, 5x5.*\[1, 16, 28, 28\]" -- "$S" shapes
expect "shapes pool2" 0 "MaxPool2d.*\[1, 32, 7, 7\]" -- "$S" shapes
expect "shapes flatten" 0 "Flatten.*\[1, 3136\]" -- "$S" shapes
expect "shapes logits" 0 "Linear\(128->10\).*\[1, 10\]" -- "$S" shapes
expect "shapes mlp" 0 "Linear\(784->512\).*\[1, 512\]" -- "$S" shapes --model mlp
expect "summary total" 0 "ConvNet total parameters: 426,602" -- "$S" summary
expect "summary block1" 0 "Block 1 +448$" -- "$S" summary
expect "summary block2" 0 "Block 2 +4,704$" -- "$S" summary
expect "summary block3" 0 "Block 3 +18,624$" -- "$S" summary
expect "summary classifier" 0 "Classifier +402,826$" -- "$S" summary
expect "summary repr" 0 "\(1\): BatchNorm2d\(16, eps=1e-05, momentum=0.1" -- "$S" summary
expect "summary linear" 0 "SingleLayerNet total parameters: 7,850" -- "$S" summary --model linear
expect "summary mlp" 0 "MultiLayerNet total parameters: 535,818" -- "$S" summary --model mlp

# --- training each model on a small subset, saving, and evaluating the saved weights
for m in cnn linear mlp; do
    out=$("$S" train --model $m --epochs 2 --limit 640 --data "$DATA" --save "$T/$m.safetensors" \
        --metrics "$T/$m.json" 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "train $m" "$out"
        continue
    fi
    if printf '%s\n' "$out" | grep -Eq '^Epoch 02/2 \| cost = [0-9]+\.[0-9]{6} \| time = [0-9]+\.[0-9]{2}s$'; then
        ok "train $m epoch lines"
    else
        bad "train $m epoch lines" "$out"
    fi
    acc=$(printf '%s\n' "$out" | grep -E '^Test accuracy: [0-9]+\.[0-9]{2}% ± [0-9]+\.[0-9]{2}%')
    [ -n "$acc" ] && ok "train $m accuracy line" || bad "train $m accuracy line" "$out"
    [ -s "$T/$m.safetensors" ] && [ -s "$T/$m.json" ] && ok "train $m files" || bad "train $m files"
    ev=$("$S" eval --weights "$T/$m.safetensors" --limit 640 --data "$DATA" 2>&1 | grep -E '^Test accuracy')
    [ "$ev" = "$acc" ] && ok "eval $m after load gives the same accuracy" \
        || bad "eval $m after load gives the same accuracy" "train: $acc / eval: $ev"
done
expect "eval confusion" 0 "Confusion matrix" -- "$S" eval --weights "$T/cnn.safetensors" --limit 100 --data "$DATA" --confusion
expect "eval no model flag needed" 0 "Model: ConvNet \(cnn\)" -- "$S" eval --weights "$T/cnn.safetensors" --limit 10 --data "$DATA"

# same seed, same weights; threads do not matter
"$S" train --model cnn --epochs 1 --limit 256 --data "$DATA" --save "$T/a.safetensors" --threads 1 >/dev/null 2>&1
"$S" train --model cnn --epochs 1 --limit 256 --data "$DATA" --save "$T/b.safetensors" --threads 2 >/dev/null 2>&1
cmp -s "$T/a.safetensors" "$T/b.safetensors" && ok "threads 1 and 2 give identical weights" \
    || bad "threads 1 and 2 give identical weights"
# the default thread count: OMP_NUM_THREADS where set (its first number), else every CPU (nproc
# itself reads OMP_NUM_THREADS)
ncpu=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
expect "OMP_NUM_THREADS sets the default threads" 0 "seed 777, 3 threads" -- \
    env OMP_NUM_THREADS=3 "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --quiet
expect "OMP_NUM_THREADS: a list's first number" 0 "seed 777, 5 threads" -- \
    env OMP_NUM_THREADS=5,2 "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --quiet
expect "--threads over OMP_NUM_THREADS" 0 "seed 777, 1 thread$" -- \
    env OMP_NUM_THREADS=3 "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --quiet \
    --threads 1
expect "OMP_NUM_THREADS unset: every CPU" 0 "seed 777, $ncpu threads?$" -- \
    env -u OMP_NUM_THREADS "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --quiet
expect "OMP_NUM_THREADS invalid: every CPU" 0 "seed 777, $ncpu threads?$" -- \
    env OMP_NUM_THREADS=99999 "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --quiet
"$S" train --model cnn --epochs 1 --limit 256 --data "$DATA" --save "$T/c.safetensors" --seed 1 >/dev/null 2>&1
cmp -s "$T/a.safetensors" "$T/c.safetensors" && bad "another seed gives other weights" \
    || ok "another seed gives other weights"

# --- the whole tutorial on a subset
out=$("$S" run --epochs 2 --limit 320 --data "$DATA" --out "$T/run" 2>&1)
rc=$?
[ $rc -eq 0 ] && ok "run exits 0" || bad "run exits 0" "$out"
for pat in "^Training data: 320 images" "^Test data: 320 images" "^Batch size: 64" \
    "== Shape trace ==" "^ConvNet\($" "CNN total parameters: 426,602|ConvNet total parameters: 426,602" \
    "^Epoch 01/2 \| cost" "^Mean epoch time: " "^Original image: Ankle boot" "FC 1-Layer training" \
    "FC Multi-Layer training" "CNN per-class test accuracy" "^Test accuracy: " \
    "^FC 1-Layer +7,850 " "^FC Multi-Layer +535,818 " "^CNN \(3-Block\) +426,602 " \
    "^  Parameters: 426,602 vs 535,818 \(79.6%\)" "^  Accuracy: .*difference: [+-][0-9.]+%p"; do
    printf '%s\n' "$out" | grep -Eq -- "$pat" && ok "run prints /$pat/" || bad "run prints /$pat/"
done
for f in cnn.safetensors linear.safetensors mlp.safetensors metrics.json featuremaps.png comparison.png; do
    [ -s "$T/run/$f" ] && ok "run writes $f" || bad "run writes $f"
done
expect "plot from metrics" 0 "saved $T/replot.png" -- "$S" plot --metrics "$T/run/metrics.json" --out "$T/replot.png"
expect "plot svg" 0 "saved" -- "$S" plot --metrics "$T/run/metrics.json" --out "$T/replot.svg"
head -c 5 "$T/replot.svg" | grep -q '<' && ok "svg is svg" || bad "svg is svg"
expect "featuremaps" 0 "saved $T/fm.png" -- "$S" featuremaps --weights "$T/run/cnn.safetensors" --data "$DATA" --out "$T/fm.png" --index 3
expect "featuremaps index out of range" 2 "--index 10000 is out of range" -- "$S" featuremaps --weights "$T/run/cnn.safetensors" --data "$DATA" --index 10000
expect "featuremaps needs cnn" 2 "feature maps need the cnn" -- "$S" featuremaps --weights "$T/run/mlp.safetensors" --data "$DATA"
printf '{"models": []}' > "$T/empty.json"
expect "plot bad metrics" 1 "no entry for model" -- "$S" plot --metrics "$T/empty.json" --out "$T/x.png"
printf '{"models": [' > "$T/broken.json"
expect "plot broken json" 1 "broken.json" -- "$S" plot --metrics "$T/broken.json" --out "$T/x.png"

# --- bad output locations
touch "$T/afile"
expect "out is a file" 1 "is not a directory" -- "$S" run --limit 64 --epochs 1 --data "$DATA" --out "$T/afile"
expect "out cannot be created" 1 "cannot create output directory" -- "$S" run --limit 64 --epochs 1 --data "$DATA" --out "$T/no/such/dir"
expect "save into missing dir" 1 "$T/missing/w.safetensors" -- "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --save "$T/missing/w.safetensors"
if [ "$(id -u)" != 0 ]; then
    mkdir "$T/ro" && chmod 555 "$T/ro"
    expect "out not writable" 1 "not writable" -- "$S" run --limit 64 --epochs 1 --data "$DATA" --out "$T/ro"
fi
cp "$T/cnn.safetensors" "$T/keep.safetensors"
if [ -w /dev/full ]; then
    expect "save to a full disk" 1 "" -- "$S" train --model linear --epochs 1 --limit 64 --data "$DATA" --save /dev/full/x
fi

# --- bad data
mkdir -p "$T/d"
expect "missing data dir" 1 "looked in: $T/nodata" -- "$S" train --model linear --data "$T/nodata"
expect "empty data dir" 1 "train-images-idx3-ubyte" -- "$S" train --model linear --data "$T/d"
gzip -dc "$DATA/train-images-idx3-ubyte.gz" | head -c 100000 > "$T/d/train-images-idx3-ubyte"
gzip -dc "$DATA/train-labels-idx1-ubyte.gz" > "$T/d/train-labels-idx1-ubyte"
gzip -dc "$DATA/t10k-images-idx3-ubyte.gz" > "$T/d/t10k-images-idx3-ubyte"
gzip -dc "$DATA/t10k-labels-idx1-ubyte.gz" > "$T/d/t10k-labels-idx1-ubyte"
expect "truncated images" 1 "train-images-idx3-ubyte.*(truncated|bytes)" -- "$S" train --model linear --data "$T/d"
# wrong magic
printf '\x00\x00\x08\x04' | cat - <(gzip -dc "$DATA/train-images-idx3-ubyte.gz" | tail -c +5) > "$T/d/train-images-idx3-ubyte"
expect "wrong magic" 1 "magic" -- "$S" train --model linear --data "$T/d"
# counts that disagree: labels file of the test set used as training labels
gzip -dc "$DATA/train-images-idx3-ubyte.gz" > "$T/d/train-images-idx3-ubyte"
cp "$T/d/t10k-labels-idx1-ubyte" "$T/d/train-labels-idx1-ubyte"
expect "counts disagree" 1 "60000.*10000|10000.*60000" -- "$S" train --model linear --data "$T/d"
# a label of 10
gzip -dc "$DATA/train-labels-idx1-ubyte.gz" > "$T/d/train-labels-idx1-ubyte"
printf '\x0a' | dd of="$T/d/train-labels-idx1-ubyte" bs=1 seek=20 conv=notrunc status=none
expect "label 10" 1 "label.*10" -- "$S" train --model linear --data "$T/d"
# corrupt gzip
gzip -c "$T/d/t10k-labels-idx1-ubyte" > "$T/d/t10k-labels-idx1-ubyte.gz"
rm "$T/d/t10k-labels-idx1-ubyte"
printf 'garbage!' | dd of="$T/d/t10k-labels-idx1-ubyte.gz" bs=1 seek=30 conv=notrunc status=none
expect "corrupt gzip" 1 "t10k-labels" -- "$S" eval --weights "$T/linear.safetensors" --data "$T/d"

# --- bad weights
printf 'not a safetensors file at all' > "$T/bad.safetensors"
expect "malformed weights" 1 "bad.safetensors" -- "$S" eval --weights "$T/bad.safetensors" --data "$DATA"
head -c 1000 "$T/cnn.safetensors" > "$T/trunc.safetensors"
expect "truncated weights" 1 "trunc.safetensors" -- "$S" eval --weights "$T/trunc.safetensors" --data "$DATA"
expect "missing weights" 1 "nothere.safetensors" -- "$S" eval --weights "$T/nothere.safetensors" --data "$DATA"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
