"""Running tests against both forwarding paths (issue 14)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sfu import fastpath
from signaling.settings import Settings

FORWARDING_PATHS = [True, False]
"""``SFU_FAST_PATH`` values the forwarding tests run with: the compiled fan-out and the
pure-Python path (issue 14)."""


@contextlib.contextmanager
def forwarding_path(settings: Settings, fast_path: bool) -> Iterator[Settings]:
    """``settings`` with ``fast_path`` set. On the compiled path the extension must be built
    (scripts/test.sh installs libsrtp2-dev so that ``pip install -e .`` builds it), and on
    leaving at least one subscriber transport must have used it."""
    if fast_path:
        assert fastpath.available(), "sfu._fastpath is not built (libsrtp2-dev missing?)"
    before = fastpath.senders_created
    yield settings.model_copy(update={"fast_path": fast_path})
    if settings.workers > 0:
        return  # the media ran in worker processes: their senders are not counted here
    if fast_path:
        assert fastpath.senders_created > before, "no consumer used the compiled path"
    else:
        assert fastpath.senders_created == before, "a consumer used the compiled path"
