#!/usr/bin/env bash
# The test command: install what is missing, lint, type-check, then run pytest inside a
# loopback-only network namespace (so no test can reach any other address).
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh tests/e2e -x    # extra arguments go to pytest
#
# Exit code: pytest's; "no tests collected" (pytest exit 5) counts as a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- Debian packages ---------------------------------------------------------------------
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)  # TURN tests (issue 11)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)  # cluster tests (issue 13)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# GStreamer webrtcbin as a WHIP publisher we did not write (tests/support/gst_whip_client.py,
# run by the system python3 through PyGObject).
gst_plugins="/usr/lib/$(uname -m)-linux-gnu/gstreamer-1.0"
if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstWebRTC", "1.0")' >/dev/null 2>&1 \
    || [ ! -e "$gst_plugins/libgstnice.so" ] || [ ! -e "$gst_plugins/libgstvpx.so" ]; then
    missing+=(python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice gstreamer1.0-plugins-bad
              gstreamer1.0-plugins-good gstreamer1.0-plugins-base)
fi
# libsrtp2 headers and a C compiler: the compiled forwarding path sfu/_fastpath.c (issue 14)
[ -e /usr/include/srtp2/srtp.h ] || missing+=(libsrtp2-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # installs axe-core for the a11y tests
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- Python environment ------------------------------------------------------------------
# Playwright drives Debian's Chromium (/usr/bin/chromium); it must never download a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export PLAYWRIGHT_BROWSERS_PATH=0
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -e ".[test]"

# --- axe-core (the accessibility tests inject it into the pages; tests/e2e/a11y.py) --------
# Pinned in tests/e2e/a11y.py; installed from the npm registry into .cache/npm (git-ignored),
# here and never at test run time.
AXE_CORE_VERSION="$(sed -n 's/^AXE_CORE_VERSION = "\(.*\)"$/\1/p' tests/e2e/a11y.py)"
if [ -z "$AXE_CORE_VERSION" ]; then
    echo "test.sh: no AXE_CORE_VERSION in tests/e2e/a11y.py" >&2
    exit 1
fi
axe_pkg=.cache/npm/node_modules/axe-core/package.json
if [ ! -f "$axe_pkg" ] || ! grep -q "\"version\": \"$AXE_CORE_VERSION\"" "$axe_pkg"; then
    echo "test.sh: installing axe-core@$AXE_CORE_VERSION from the npm registry" >&2
    npm install --no-save --no-audit --no-fund --ignore-scripts --prefix .cache/npm \
        "axe-core@$AXE_CORE_VERSION"
fi

# --- static checks -----------------------------------------------------------------------
echo "test.sh: ruff check" >&2
.venv/bin/ruff check .
echo "test.sh: ruff format --check" >&2
.venv/bin/ruff format --check .
echo "test.sh: mypy" >&2
.venv/bin/mypy

# --- tests, inside a loopback-only network namespace --------------------------------------
unshare_args=(-n)
if [ "$(id -u)" -ne 0 ]; then unshare_args=(-r -n); fi  # a user namespace for non-root
set +e
if [ "${SFU_TEST_NO_NETNS:-}" = "1" ]; then
    echo "test.sh: SFU_TEST_NO_NETNS=1: running pytest WITHOUT a network namespace" >&2
    .venv/bin/python -m pytest "$@"
else
    unshare "${unshare_args[@]}" -- \
        sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' sh "$@"
fi
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
