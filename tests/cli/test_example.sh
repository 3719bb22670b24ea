#!/bin/bash
# Runs examples/train_cnn on a small subset and checks that its saved model evaluates to the
# accuracy it printed.
BUILD=${BUILD:-build}
DATA=${STRIDE_DATA:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d /tmp/stride-ex.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
out=$("$BUILD/examples/train_cnn" "$DATA" 640 "$T/cnn.safetensors" 2>&1)
if [ $? -eq 0 ] && printf '%s\n' "$out" | grep -q "^saved $T/cnn.safetensors"; then
    pass=$((pass + 1)); echo "ok   example trains, evaluates and saves"
else
    fail=$((fail + 1)); echo "FAIL example trains, evaluates and saves"; printf '%s\n' "$out"
fi
acc=$(printf '%s\n' "$out" | sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p')
ev=$("$BUILD/stride" eval --weights "$T/cnn.safetensors" --data "$DATA" --limit 640 2>&1 |
    sed -n 's/^Test accuracy: \([0-9.]*\)%.*/\1/p')
if [ -n "$acc" ] && [ "$acc" = "$ev" ]; then
    pass=$((pass + 1)); echo "ok   example's model evaluates to the same accuracy ($acc%)"
else
    fail=$((fail + 1)); echo "FAIL example's model evaluates to the same accuracy ($acc vs $ev)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
