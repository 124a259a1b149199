"""WorkerMediaPlane's bookkeeping without worker processes: placement and early events."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.events import ParticipantClosed, ParticipantEvent, ParticipantInfo, TrackMuted
from sfu.plane.types import JoinResult, ParticipantRef, ParticipantSpec, PlaneStats
from sfu.plane.workers import WorkerMediaPlane, _Member, _Track
from sfu.worker.errors import CallTimeoutError


def _member(
    sid: str, room: str, worker: int, got: list[ParticipantEvent], publish: bool
) -> _Member:
    return _Member(
        sid=sid,
        room=room,
        identity=sid,
        worker=worker,
        listener=got.append,
        can_publish=publish,
        can_subscribe=True,
        auto_subscribe=True,
        hidden=False,
        kinds=None,
    )


def _join_room(media: WorkerMediaPlane, count: int, got: list[ParticipantEvent]) -> list[int]:
    """Place ``count`` members of room "big" one after another (the first publishes), as the
    worker plane places joins: the worker each one went to."""
    placed = []
    for i in range(count):
        worker = media._place("big")
        placed.append(worker)
        media._members[f"PA_{i}"] = _member(f"PA_{i}", "big", worker, got, publish=i == 0)
    return placed


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch) -> WorkerMediaPlane:
    media = WorkerMediaPlane(workers=3, spread_at=2)
    monkeypatch.setattr(media.pool, "is_up", lambda index: True)
    return media


def test_a_small_room_stays_on_one_worker_and_a_big_one_spreads(plane: WorkerMediaPlane) -> None:
    got: list[ParticipantEvent] = []
    placed = _join_room(plane, 6, got)
    assert placed[:2] == [0, 0], "the room stays on its worker up to spread_at"
    assert set(placed) == {0, 1, 2}, "then it spreads over every worker"
    assert placed.count(0) == 2, "the publisher's worker takes no more listeners"
    # another room starts on the least-loaded worker, not on the busiest
    assert plane._place("other") != 0


def test_early_events_wait_for_the_join_and_late_ones_are_dropped(plane: WorkerMediaPlane) -> None:
    got: list[ParticipantEvent] = []
    gone = _member("PA_gone", "r", 0, got, publish=False)
    plane._members[gone.sid] = gone
    plane._forget(gone)
    plane._on_notification(0, "ev", ["PA_gone", ParticipantClosed("left")])
    assert plane._early == {} and got == []
    for i in range(300):  # sids that never join (their join failed) do not fill the buffer
        plane._on_notification(0, "ev", [f"PA_x{i}", TrackMuted("p", "t", True)])
    plane._on_notification(0, "ev", ["PA_new", TrackMuted("p", "t", True)])
    assert plane._early["PA_new"] == [TrackMuted("p", "t", True)]
    assert len(plane._early) <= 256


async def test_summed_counters_never_go_back(
    plane: WorkerMediaPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: dict[int, PlaneStats | Exception] = {
        i: PlaneStats(0, 0, 0, 0, counters={"packets_sent": 10}) for i in range(3)
    }

    async def call(index: int, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        answer = answers[index]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(plane.pool, "call", call)
    monkeypatch.setattr(plane.pool, "worker_infos", lambda: ())
    assert (await plane.stats()).counters["packets_sent"] == 30
    answers[1] = CallTimeoutError("busy")  # a worker too busy to answer in time
    assert (await plane.stats()).counters["packets_sent"] == 30
    plane._on_worker_died(2)  # its replacement starts from zero
    answers[2] = PlaneStats(0, 0, 0, 0, counters={"packets_sent": 1})
    assert (await plane.stats()).counters["packets_sent"] == 31


async def test_a_duplicate_identity_on_another_worker_is_closed_first(
    plane: WorkerMediaPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_events: list[ParticipantEvent] = []
    old = _member("PA_old", "r", 2, old_events, publish=False)
    old.identity = "alice"
    plane._members[old.sid] = old
    calls: list[tuple[int, str, tuple[Any, ...]]] = []

    async def call(index: int, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        calls.append((index, method, args))
        if method == "join":
            info = ParticipantInfo("PA_new", "alice", "Alice")
            return JoinResult(ParticipantRef("PA_new", "r", "alice", "Alice"), info, ())
        return []

    monkeypatch.setattr(plane.pool, "call", call)
    monkeypatch.setattr(plane, "_place", lambda room, avoid=None: 0)
    result = await plane.join("r", ParticipantSpec("alice", "Alice"), lambda event: None)
    assert old_events == [ParticipantClosed("duplicate_identity")]
    assert (2, "leave", ("PA_old", "duplicate_identity", False)) in calls
    assert calls.index((2, "leave", ("PA_old", "duplicate_identity", False))) < [
        c[1] for c in calls
    ].index("join"), "the old one is gone before the new one joins"
    assert result.participant.sid == "PA_new" and plane.worker_of("PA_new") == 0
    assert plane.worker_of("PA_old") is None


def test_a_burst_of_joins_between_two_stats_samples_splits_the_room_evenly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Listeners joining faster than the workers' one-second stats (no sample moves during the
    burst, as when a big audience arrives) are still spread by what each worker will carry: the
    publisher's worker takes only a few fewer, not none (the packets the new listeners will
    receive are not in the stats yet)."""
    media = WorkerMediaPlane(workers=2, spread_at=2)
    monkeypatch.setattr(media.pool, "is_up", lambda index: True)
    got: list[ParticipantEvent] = []
    placed = _join_room(media, 200, got)
    on_publisher_worker, on_other = placed.count(0), placed.count(1)
    assert on_other > on_publisher_worker, "the publisher's worker takes fewer listeners"
    # within 20% of each other (the publisher's own cost counts as about 17 listeners)
    assert on_other - on_publisher_worker <= 0.2 * on_other, (on_publisher_worker, on_other)


def test_a_speaker_with_its_audio_track_counts_as_one_publisher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A publisher that has published its microphone weighs on its worker's load as one
    publisher, as it did before publishing: its worker takes as many listeners either way."""
    placed: list[list[int]] = []
    for published in (False, True):
        media = WorkerMediaPlane(workers=2, spread_at=2)
        monkeypatch.setattr(media.pool, "is_up", lambda index: True)
        got: list[ParticipantEvent] = []
        media._members["PA_0"] = _member("PA_0", "big", 0, got, publish=True)
        if published:
            media._tracks["TR_a"] = _Track(
                sid="TR_a",
                room="big",
                participant="PA_0",
                identity="PA_0",
                worker=0,
                kind="audio",
                muted=False,
            )
        for i in range(1, 200):
            worker = media._place("big")
            media._members[f"PA_{i}"] = _member(f"PA_{i}", "big", worker, got, publish=False)
        placed.append([m.worker for m in media._members.values()])
    assert placed[0].count(0) == placed[1].count(0), placed
