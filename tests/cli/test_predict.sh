#!/bin/bash
# `stride predict` on pictures made from FashionMNIST test images: PNG (gray, gray+alpha, 16-bit,
# RGB, RGBA, palette; every row filter), JPEG (quality 100), PGM (P5) and 24-bit BMP, at 28x28,
# 56x56 and 84x84 (pixel replication, so the 28x28 input is exact), as they are and inverted
# (light background, --invert auto): each must get the class `stride eval --predictions` gives
# that test image. Then standard input, bad files (one-line error naming the file, the others
# still predicted, exit 1), --json, --show and bad flags.
# Needs /usr/bin/python3 with numpy (python3-numpy) to write the pictures, and for JPEG either
# PIL (python3-pil) or cjpeg (libjpeg-turbo-progs); a missing one is a failure, not a skip.
# Prints "ok"/"FAIL" per check and "N passed, N failed" last.
BUILD=${BUILD:-build}
S="$PWD/$BUILD/stride"
PY=${PYTHON:-/usr/bin/python3}
CHK="$PWD/tests/interop_check.py"
DATA=${STRIDE_DATA:-/usr/share/datasets/fashion-mnist}
NIMG=10
# OpenMP threads that spin while waiting make a loaded machine many times slower (a 3000-image
# epoch: 20 s instead of 5 s here); sleeping waits give the same results.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
T=$(mktemp -d /tmp/stride-predict.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "$2" ] && printf '%s\n' "$2" | head -20 | sed 's/^/    /'; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
# run_check NAME CMD...: runs a helper that prints ok/FAIL lines itself; adds them up
run_check() {
    local name=$1 out rc p f
    shift
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | grep -c '^ok ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    pass=$((pass + p))
    fail=$((fail + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        bad "$name (exit $rc)" "$out"
    fi
}
# expect NAME STATUS PATTERN -- CMD...: exit status and stdout+stderr matching PATTERN (ERE)
expect() {
    local name=$1 want=$2 pat=$3 out rc
    shift 4
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

# --- prerequisites (missing ones are failures)
if ! err=$("$PY" -c 'import numpy' 2>&1); then
    bad "$PY cannot import numpy: install python3-numpy" "$err"
    finish
fi
[ -x "$S" ] || { bad "$S not built (make)"; finish; }

# --- the model and the reference classes
W="$T/cnn.safetensors"
if ! out=$("$S" train --model cnn --epochs 1 --limit 3000 --data "$DATA" --save "$W" --quiet 2>&1); then
    bad "train cnn (--epochs 1 --limit 3000)" "$out"
    finish
fi
ok "train cnn ($(grep '^Test accuracy' <<<"$out"))"
if ! out=$("$S" eval --weights "$W" --limit $NIMG --data "$DATA" --predictions "$T/ref.csv" 2>&1); then
    bad "eval --predictions" "$out"
    finish
fi
ok "eval --predictions of the first $NIMG test images"
label() { awk -F, -v i="$1" 'NR == i + 2 { print $5 }' "$T/ref.csv"; } # predicted class name

# --- the pictures
mkdir "$T/img"
out=$("$PY" "$CHK" images "$DATA" "$T/img" $NIMG 2>&1)
rc=$?
if [ $rc -eq 3 ]; then
    bad "a JPEG encoder for the JPEG pictures" "$out"
elif [ $rc -ne 0 ]; then
    bad "writing the test pictures" "$out"
    finish
else
    ok "test pictures written ($out)"
fi

: >"$T/all.jsonl"
for fmt in pgm png bmp jpg; do
    files=("$T/img/${fmt}"_*)
    [ -e "${files[0]}" ] || continue
    if "$S" predict --weights "$W" --json "${files[@]}" >"$T/$fmt.jsonl" 2>"$T/$fmt.err" &&
        [ ! -s "$T/$fmt.err" ]; then
        ok "predict --json on ${#files[@]} $fmt pictures: exit 0, nothing on stderr"
    else
        bad "predict --json on ${#files[@]} $fmt pictures" "$(cat "$T/$fmt.err")"
    fi
    run_check "$fmt JSON" "$PY" "$CHK" check-json "--json on $fmt pictures" "$T/$fmt.jsonl" ${#files[@]}
    cat "$T/$fmt.jsonl" >>"$T/all.jsonl"
done
run_check "classes" "$PY" "$CHK" check-predict "$T/ref.csv" "$T/all.jsonl"

I="$T/img"
# --- text output and --invert modes
re_line='^[^:]+: [A-Za-z/ -]+ [0-9]+\.[0-9]%, [A-Za-z/ -]+ [0-9]+\.[0-9]%, [A-Za-z/ -]+ [0-9]+\.[0-9]%'
out=$("$S" predict --weights "$W" "$I/png_28_0_0.png" "$I/png_84_1_1.png" 2>&1)
rc=$?
l1=$(sed -n 1p <<<"$out")
l2=$(sed -n 2p <<<"$out")
if [ $rc -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 2 ] &&
    [[ "$l1" =~ $re_line$ ]] && [[ "$l1" == "$I/png_28_0_0.png: $(label 0) "* ]] &&
    [[ "$l2" =~ $re_line\ \ \(inverted\)$ ]] && [[ "$l2" == "$I/png_84_1_1.png: $(label 1) "* ]]; then
    ok "text output: 'path: Class p%, Class p%, Class p%' (+ '  (inverted)')"
else
    bad "text output" "$out"
fi
expect "--invert yes on a light-background picture: same class" 0 \
    "png_56_1_2.png\", \"inverted\": true, \"top\": \[\{\"class\": \"$(label 2)\"" -- \
    "$S" predict --weights "$W" --invert yes --json "$I/png_56_1_2.png"
expect "--invert no keeps a light background as is" 0 "\"inverted\": false" -- \
    "$S" predict --weights "$W" --invert no --json "$I/png_56_1_2.png"
expect "--invert yes inverts a dark-background picture" 0 "\"inverted\": true" -- \
    "$S" predict --weights "$W" --invert yes --json "$I/pgm_28_0_2.pgm"

# --- standard input
# shellcheck disable=SC2016 # the inner shell expands "$0" "$1" "$2"
expect "'-' reads standard input" 0 "^<stdin>: $(label 3) [0-9.]+%" -- \
    bash -c '"$0" predict --weights "$1" - <"$2"' "$S" "$W" "$I/png_56_0_3.png"
# shellcheck disable=SC2016
expect "'-' with --json" 0 "^\{\"file\": \"<stdin>\", \"inverted\": true, \"top\": \[\{\"class\": \"$(label 4)\"" -- \
    bash -c '"$0" predict --weights "$1" --json - <"$2"' "$S" "$W" "$I/bmp_84_1_4.bmp"
# shellcheck disable=SC2016
out=$(bash -c '"$0" predict --weights "$1" - "$2" - <"$3"' "$S" "$W" "$I/png_28_0_6.png" "$I/pgm_28_0_5.pgm" 2>"$T/err")
rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '<stdin>: standard input can be read only once' "$T/err" &&
    [ "$(wc -l <<<"$out")" -eq 2 ] && [[ "$out" == "<stdin>: $(label 5) "* ]]; then
    ok "'-' twice: the second is an error, the rest predicted, exit 1"
else
    bad "'-' twice (exit $rc)" "$out"$'\n'"$(cat "$T/err")"
fi

# --- bad files: one line each on stderr naming the file; the good ones still predicted; exit 1
echo "just some text, not a picture" >"$T/notimage.txt"
: >"$T/empty.png"
s=$(stat -c %s "$I/png_84_0_7.png")
head -c $((s / 2)) "$I/png_84_0_7.png" >"$T/truncated.png"
s=$(stat -c %s "$I/png_28_0_8.png")
head -c $((s - 12)) "$I/png_28_0_8.png" >"$T/no-iend.png"
s=$(stat -c %s "$I/bmp_56_0_8.bmp")
head -c $((s - 100)) "$I/bmp_56_0_8.bmp" >"$T/truncated.bmp"
badfiles=("$T/notimage.txt" "$T/truncated.png" "$T/empty.png" "$T/missing.png" "$T/no-iend.png" "$T/truncated.bmp" "$T")
if [ -e "$I/jpg_56_0_9.jpg" ]; then
    s=$(stat -c %s "$I/jpg_56_0_9.jpg")
    head -c $((s / 2)) "$I/jpg_56_0_9.jpg" >"$T/truncated.jpg"
    badfiles+=("$T/truncated.jpg")
fi
good=("$I/pgm_28_0_0.pgm" "$I/png_56_1_1.png" "$I/bmp_84_0_2.bmp")
out=$("$S" predict --weights "$W" "${good[0]}" "${badfiles[0]}" "${badfiles[1]}" "${good[1]}" \
    "${badfiles[@]:2}" "${good[2]}" 2>"$T/err")
rc=$?
if [ $rc -eq 1 ]; then
    ok "bad files: exit 1"
else
    bad "bad files: exit $rc, expected 1" "$(cat "$T/err")"
fi
if [ "$(wc -l <<<"$out")" -eq 3 ] && [[ "$(sed -n 1p <<<"$out")" == "${good[0]}: $(label 0) "* ]] &&
    [[ "$(sed -n 2p <<<"$out")" == "${good[1]}: $(label 1) "* ]] &&
    [[ "$(sed -n 3p <<<"$out")" == "${good[2]}: $(label 2) "* ]]; then
    ok "bad files: the good pictures around them still predicted"
else
    bad "bad files: the good pictures still predicted" "$out"
fi
if [ "$(wc -l <"$T/err")" -eq ${#badfiles[@]} ]; then
    ok "bad files: one line on stderr for each of the ${#badfiles[@]}"
else
    bad "bad files: one stderr line each (${#badfiles[@]})" "$(cat "$T/err")"
fi
k=1
for f in "${badfiles[@]}"; do
    line=$(sed -n ${k}p "$T/err")
    if [[ "$line" == "stride: $f: "* ]]; then
        ok "bad file $(basename "$f"): ${line#stride: }"
    else
        bad "bad file $(basename "$f"): error line names it" "$line"
    fi
    k=$((k + 1))
done

# --- --show: 28 lines of 2 characters per pixel without a terminal (14 with colour), then the line
out=$("$S" predict --weights "$W" --show "$I/pgm_28_0_0.pgm" 2>&1)
rc=$?
art=$(head -n -1 <<<"$out")
n=$(wc -l <<<"$art")
last=$(tail -n 1 <<<"$out")
if [ $rc -eq 0 ] && { [ "$n" -eq 28 ] || [ "$n" -eq 14 ]; } && [[ "$last" == "$I/pgm_28_0_0.pgm: $(label 0) "* ]] &&
    [ -z "$(awk 'length($0) != 56' <<<"$art")" ] && [ -n "$(tr -d ' \n' <<<"$art")" ]; then
    ok "--show draws $n lines of art, then the prediction"
else
    bad "--show (exit $rc, $n art lines)" "$out"
fi
if command -v script >/dev/null 2>&1; then
    out=$(COLORTERM=truecolor script -qec "\"$S\" predict --weights \"$W\" --show \"$I/pgm_28_0_0.pgm\"" /dev/null 2>&1 | tr -d '\r')
    n=$(grep -c $'\xe2\x96\x80' <<<"$out")
    if [ "$n" -eq 14 ] && grep -q $'\e\\[38;2;' <<<"$out"; then
        ok "--show on a terminal: 14 lines of half blocks in 24-bit colour"
    else
        bad "--show on a terminal ($n lines of half blocks)" "$(head -c 600 <<<"$out")"
    fi
fi

# --- flags
expect "--invert bad value: exit 2" 2 "invalid value 'maybe' for --invert" -- \
    "$S" predict --weights "$W" --invert maybe "$I/pgm_28_0_0.pgm"
expect "no image: exit 2" 2 "no image given" -- "$S" predict --weights "$W"
expect "no --weights: exit 2" 2 "--weights FILE is required" -- "$S" predict "$I/pgm_28_0_0.pgm"
expect "weights that are not a model: exit 1" 1 "notimage.txt" -- \
    "$S" predict --weights "$T/notimage.txt" "$I/pgm_28_0_0.pgm"

finish
