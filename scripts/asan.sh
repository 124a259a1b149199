#!/usr/bin/env bash
# Build the compiled forwarding path (sfu/_fastpath.c) with AddressSanitizer and UBSan and run
# the forwarding tests under it (issue 14):
#
#   ./scripts/asan.sh                  # the fast-path unit tests and tests/integration/test_forwarding.py
#   ./scripts/asan.sh tests/unit -x    # other pytest arguments
#
# The instrumented extension replaces sfu/_fastpath*.so for the run; the normal build is put
# back on exit. Leak detection is off (CPython itself does not free everything at exit); any
# invalid read/write or undefined behaviour aborts the run with a report.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
    echo "asan.sh: no .venv: run scripts/test.sh once first" >&2
    exit 2
fi
CC="${CC:-gcc}"
libasan="$("$CC" -print-file-name=libasan.so)"
libubsan="$("$CC" -print-file-name=libubsan.so)"
if [ ! -e "$libasan" ] || [ ! -e "$libubsan" ]; then
    echo "asan.sh: $CC has no libasan/libubsan (apt-get install gcc)" >&2
    exit 2
fi

saved="$(mktemp -d)"
cp sfu/_fastpath*.so "$saved/" 2>/dev/null || true
restore() {
    rm -f sfu/_fastpath*.so
    cp "$saved"/_fastpath*.so sfu/ 2>/dev/null || .venv/bin/python setup.py -q build_ext --inplace --force
    rm -rf "$saved"
}
trap restore EXIT

echo "asan.sh: building sfu/_fastpath.c with -fsanitize=address,undefined" >&2
CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1" \
LDFLAGS="-fsanitize=address,undefined" \
    .venv/bin/python setup.py -q build_ext --inplace --force

if [ "$#" -eq 0 ]; then
    set -- tests/unit/test_fastpath.py tests/unit/test_forwarding_paths.py \
        tests/integration/test_forwarding.py -k "not python_path" -x -q
fi
# --capture=sys: a sanitizer report (written to fd 2) reaches the terminal even though the
# process aborts before pytest could print captured output.
set -- -p no:cacheprovider --capture=sys "$@"
export LD_PRELOAD="$libasan:$libubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc  # every Python object allocation goes through ASan too
unshare_args=(-n)
if [ "$(id -u)" -ne 0 ]; then unshare_args=(-r -n); fi
unshare "${unshare_args[@]}" -- sh -c 'ip link set lo up && exec "$@"' sh \
    .venv/bin/python -m pytest "$@"
