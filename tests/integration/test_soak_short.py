"""A short soak (``bench/soak.py`` for ~15 s): after every churner left, the server's open fds
and asyncio tasks are back near the baseline.

Each churner joins a room with two Opus speakers and a few steady listeners, completes ICE and
DTLS-SRTP, receives the speakers' audio and leaves. A server that leaks per join (a socket, an
ICE port, a DTLS transport, a task of a closed Participant or Consumer) ends tens above the
baseline; the margin (:func:`bench.soak.margin`) only allows the room's ordinary coming and
going.
"""

from __future__ import annotations

from bench.soak import margin, run_soak, verdict

CHURN_PER_S = 2.0
DURATION_S = 15.0


async def test_fds_and_tasks_return_to_baseline_after_churn(sfu_server: tuple[str, str]) -> None:
    url, secret = sfu_server
    result = await run_soak(
        url, secret, duration=DURATION_S, listeners=4, churn=CHURN_PER_S, stay=2.0, sample_every=5
    )
    print(verdict(result))
    start, end = result.start, result.end
    # The churn really happened: joins at the asked rate, each one subscribed and fed media.
    assert result.joins >= 0.8 * CHURN_PER_S * DURATION_S, verdict(result)
    assert result.join_failures == 0 and result.skipped == 0, verdict(result)
    # Most of them (all on an idle machine; a loaded one delays ICE and DTLS past the stay).
    assert result.churners_with_media >= 0.5 * result.joins, verdict(result)
    assert max(s.participants for s in result.samples) > start.participants
    # ... and left no trace: the steady room only, fds and tasks back within the margin.
    assert end.participants == start.participants == 4 + 2
    assert end.fds - start.fds <= margin(start.fds), verdict(result)
    assert end.tasks - start.tasks <= margin(start.tasks), verdict(result)
