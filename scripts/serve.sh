#!/usr/bin/env bash
# Run the server: ./scripts/serve.sh [--host H] [--port P] [--data-dir D] [--log-level L]
# Settings also come from SFU_* environment variables (see README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
# The compiled forwarding path (sfu/_fastpath.c, issue 14) needs libsrtp2's headers and a C
# compiler at install time; without them the server runs the pure-Python path (logged).
missing=()
[ -e /usr/include/srtp2/srtp.h ] || missing+=(libsrtp2-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "serve.sh: installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -e .
exec .venv/bin/sfu serve "$@"
