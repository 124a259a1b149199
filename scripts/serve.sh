#!/usr/bin/env bash
# Run the server: ./scripts/serve.sh [--host H] [--port P] [--data-dir D] [--log-level L]
# Settings also come from SFU_* environment variables (see README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -e .
exec .venv/bin/sfu serve "$@"
