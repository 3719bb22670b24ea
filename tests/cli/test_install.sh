#!/bin/bash
# `make install PREFIX=...` installs the header, the library, the program and a pkg-config file
# with which a program outside the tree builds and runs.
BUILD=${BUILD:-build}
T=$(mktemp -d /tmp/stride-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "$2" ] && printf '%s\n' "$2" | head -20 | sed 's/^/    /'; }
out=$(make --no-print-directory BUILD="$BUILD" install PREFIX="$T/prefix" 2>&1) && ok "make install" || bad "make install" "$out"
for f in include/stride.h lib/libstride.a lib/pkgconfig/stride.pc bin/stride; do
    [ -e "$T/prefix/$f" ] && ok "installs $f" || bad "installs $f"
done
export PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig"
cat > "$T/hello.c" <<'C'
#include <stdio.h>
#include <stride.h>
int main(void)
{
    st_error err;
    st_model *m = st_model_create(ST_MODEL_CNN, 1, 777, &err);
    if (!m) { fprintf(stderr, "%s\n", err.msg); return 1; }
    printf("%zu\n", st_model_num_params(m));
    st_model_free(m);
    return 0;
}
C
# the sanitizer build (make sanitize-test) installs an instrumented library
case "$BUILD" in *san*) SAN="-fsanitize=address,undefined" ;; *) SAN="" ;; esac
out=$(cc $SAN "$T/hello.c" $(pkg-config --cflags --libs --static stride) -o "$T/hello" 2>&1) \
    && ok "a program builds with pkg-config" || bad "a program builds with pkg-config" "$out"
[ "$("$T/hello" 2>&1)" = "426602" ] && ok "and runs" || bad "and runs" "$("$T/hello" 2>&1)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
