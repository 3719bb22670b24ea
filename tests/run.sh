#!/bin/sh
# Runs every test program (build/tests/test_*, then those named in EXTRA_TESTS) and every CLI
# test script (tests/cli/test_*.sh), adds up their "N passed, N failed" lines, and prints the
# total last. A program that crashes or prints no summary counts as one failure.
BUILD=${BUILD:-build}
export BUILD
passed=0
failed=0
for t in "$BUILD"/tests/test_* $EXTRA_TESTS tests/cli/test_*.sh; do
    [ -e "$t" ] || continue
    echo "== $t"
    out=$("$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $t: exit status $rc and no summary line"
        failed=$((failed + 1))
        continue
    fi
    p=${line%% passed*}
    f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $t: exit status $rc"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
