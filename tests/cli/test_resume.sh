#!/bin/bash
# Checkpoints and resume: an interrupted run (after an epoch, by kill -9 mid-epoch, by SIGINT and
# SIGTERM mid-epoch) resumed with --resume gives weights bit-identical to an uninterrupted run.
# Also: a loss that becomes NaN stops with an error naming the epoch and batch and keeps the last
# good checkpoint.
BUILD=${BUILD:-build}
S="$PWD/$BUILD/stride"
DATA=${STRIDE_DATA:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d /tmp/stride-resume.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "$2" ] && printf '%s\n' "$2" | head -20 | sed 's/^/    /'; }
common=(--data "$DATA" --limit 6400 --quiet --threads 2)

# the uninterrupted run
"$S" train --model cnn --epochs 2 "${common[@]}" --save "$T/full.safetensors" > "$T/full.log" 2>&1 \
    || bad "uninterrupted run" "$(cat "$T/full.log")"
[ -s "$T/full.ckpt" ] && ok "--save also writes a checkpoint" || bad "--save also writes a checkpoint"

# stop after epoch 1, resume to 2
"$S" train --model cnn --epochs 1 "${common[@]}" --save "$T/e1.safetensors" > /dev/null 2>&1
out=$("$S" train --resume "$T/e1.ckpt" --epochs 2 --data "$DATA" --quiet 2>&1)
printf '%s\n' "$out" | grep -q "Resuming CNN (3-Block) from $T/e1.ckpt at epoch 2, batch 0" \
    && ok "resume says where it starts" || bad "resume says where it starts" "$out"
cmp -s "$T/full.safetensors" "$T/e1.safetensors" && ok "resume after epoch 1 is bit-identical" \
    || bad "resume after epoch 1 is bit-identical"
grep "Epoch 02/2" "$T/full.log" | sed 's/ | time.*//' > "$T/a"
printf '%s\n' "$out" | grep "Epoch 02/2" | sed 's/ | time.*//' > "$T/b"
cmp -s "$T/a" "$T/b" && ok "resumed epoch prints the same cost" || bad "resumed epoch prints the same cost" "$(cat "$T/a" "$T/b")"

# signals mid-epoch: finish the batch, save a checkpoint, exit 128+signal; then resume
for sig in INT TERM KILL; do
    rm -f "$T/s.ckpt" "$T/s.safetensors"
    "$S" train --model cnn --epochs 2 "${common[@]}" --save "$T/s.safetensors" > "$T/s.log" 2>&1 &
    pid=$!
    # wait until epoch 1's checkpoint exists, then a little into epoch 2
    for _ in $(seq 600); do [ -s "$T/s.ckpt" ] && break; sleep 0.1; done
    sleep 0.05
    kill -$sig $pid
    wait $pid
    rc=$?
    case $sig in INT) want=130 ;; TERM) want=143 ;; KILL) want=137 ;; esac
    [ $rc -eq $want ] && ok "SIG$sig exits $want" || bad "SIG$sig exits $want (got $rc)" "$(cat "$T/s.log")"
    if [ $sig != KILL ]; then
        grep -q "checkpoint saved to $T/s.ckpt" "$T/s.log" && ok "SIG$sig says where the checkpoint is" \
            || bad "SIG$sig says where the checkpoint is" "$(cat "$T/s.log")"
    fi
    out=$("$S" train --resume "$T/s.ckpt" --data "$DATA" --quiet 2>&1) || bad "resume after SIG$sig" "$out"
    cmp -s "$T/full.safetensors" "$T/s.safetensors" && ok "resume after SIG$sig is bit-identical" \
        || bad "resume after SIG$sig is bit-identical" "$out"
done

# different thread counts give identical checkpoints
"$S" train --model mlp --epochs 1 --data "$DATA" --limit 1000 --quiet --threads 1 --save "$T/t1.safetensors" >/dev/null 2>&1
"$S" train --model mlp --epochs 1 --data "$DATA" --limit 1000 --quiet --threads 2 --save "$T/t2.safetensors" >/dev/null 2>&1
cmp -s "$T/t1.safetensors" "$T/t2.safetensors" && ok "weights identical with 1 and 2 threads" || bad "weights identical with 1 and 2 threads"

# NaN: a huge learning rate
"$S" train --model mlp --epochs 3 --lr 1e30 --data "$DATA" --limit 1000 --quiet --save "$T/nan.safetensors" > "$T/nan.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -Eq "epoch [0-9]+: the loss became (NaN|infinite) at batch [0-9]+ of 16" "$T/nan.log" \
    && ok "NaN loss stops with epoch and batch" || bad "NaN loss stops with epoch and batch (exit $rc)" "$(cat "$T/nan.log")"
[ ! -e "$T/nan.safetensors" ] && ok "no weights saved after NaN" || bad "no weights saved after NaN"

# resume errors
printf 'junk' > "$T/junk.ckpt"
out=$("$S" train --resume "$T/junk.ckpt" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s' "$out" | grep -q "junk.ckpt" && ok "bad checkpoint is an error" || bad "bad checkpoint is an error" "$out"
out=$("$S" train --resume "$T/full.safetensors" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s' "$out" | grep -q "not a Stride checkpoint" && ok "weights file is not a checkpoint" || bad "weights file is not a checkpoint" "$out"
out=$("$S" train --resume "$T/full.ckpt" --epochs 1 --data "$DATA" 2>&1); rc=$?
[ $rc -eq 2 ] && printf '%s' "$out" | grep -q "already reached epoch 2" && ok "resume to fewer epochs is an error" || bad "resume to fewer epochs is an error" "$out"
out=$("$S" train --resume "$T/full.ckpt" --model cnn 2>&1); rc=$?
[ $rc -eq 2 ] && ok "--resume with --model is an error" || bad "--resume with --model is an error" "$out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
