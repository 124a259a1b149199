"""Active speaker detection from RFC 6464 levels (no network)."""

from __future__ import annotations

import pytest

from sfu.events import SpeakerLevel
from sfu.observers import ActiveSpeakerDetector, ActiveSpeakerObserver


class FakeProducer:
    """The attributes the detector reads from a Producer."""

    def __init__(self, sid: str, participant: str, kind: str = "audio") -> None:
        self.id = sid
        self.participant_sid = participant
        self.kind = kind
        self.closed = False
        self.paused = False
        self.level_sum = 0
        self.level_count = 0

    def hear(self, level: int, packets: int = 10) -> None:
        """``packets`` packets at RFC 6464 level ``level`` (-dBov)."""
        self.level_sum += level * packets
        self.level_count += packets


def test_loudest_first_and_silence_excluded() -> None:
    detector = ActiveSpeakerDetector(smoothing=1.0)
    loud, quiet, silent = FakeProducer("a", "A"), FakeProducer("b", "B"), FakeProducer("c", "C")
    loud.hear(10)
    quiet.hear(40)
    silent.hear(127)
    speakers = detector.update([quiet, loud, silent])  # type: ignore[list-item]
    assert speakers == [SpeakerLevel("A", "a", -10), SpeakerLevel("B", "b", -40)]
    assert loud.level_count == 0 and loud.level_sum == 0  # accumulators consumed


def test_smoothing_and_hysteresis() -> None:
    detector = ActiveSpeakerDetector(threshold_dbov=-50, hysteresis_db=5, smoothing=0.5)
    p = FakeProducer("a", "A")
    p.hear(20)
    # One loud interval after silence: 0.5 * -20 + 0.5 * -127 = -73.5: not yet active.
    assert detector.update([p]) == []  # type: ignore[list-item]
    p.hear(20)
    assert [s.track for s in detector.update([p])] == ["a"]  # -46.75 > -50  # type: ignore[list-item]
    p.hear(70)  # -58.4: below the threshold but within the hysteresis of an active speaker?
    assert detector.update([p]) == []  # type: ignore[list-item]
    detector2 = ActiveSpeakerDetector(threshold_dbov=-50, hysteresis_db=5, smoothing=1.0)
    q = FakeProducer("q", "Q")
    q.hear(45)
    assert detector2.update([q])  # -45 > -50: active  # type: ignore[list-item]
    q.hear(53)
    assert detector2.update([q])  # -53 > -55: stays active (hysteresis)  # type: ignore[list-item]
    q.hear(56)
    assert detector2.update([q]) == []  # -56 < -55: inactive  # type: ignore[list-item]


def test_no_packets_or_paused_counts_as_silence() -> None:
    detector = ActiveSpeakerDetector(smoothing=1.0)
    p = FakeProducer("a", "A")
    assert detector.update([p]) == []  # type: ignore[list-item]
    p.hear(5)
    p.paused = True
    assert detector.update([p]) == []  # type: ignore[list-item]
    video = FakeProducer("v", "A", kind="video")
    video.hear(0)
    assert detector.update([video]) == []  # type: ignore[list-item]


def test_observer_reports_only_changes() -> None:
    p = FakeProducer("a", "A")
    seen: list[list[SpeakerLevel]] = []
    observer = ActiveSpeakerObserver(
        lambda: [p],  # type: ignore[list-item, return-value]
        seen.append,
        detector=ActiveSpeakerDetector(smoothing=1.0),
    )
    p.hear(10)
    observer.tick()
    p.hear(12)
    observer.tick()  # same speaker, level changed a little: no new report
    p.hear(127)
    observer.tick()
    assert [[s.track for s in change] for change in seen] == [["a"], []]


def test_bad_smoothing() -> None:
    with pytest.raises(ValueError):
        ActiveSpeakerDetector(smoothing=0)
