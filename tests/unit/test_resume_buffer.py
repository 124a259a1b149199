"""Resume bookkeeping (signaling/resume.py): numbering, the bounded replay buffer, tokens."""

from __future__ import annotations

import json

from signaling import protocol as p
from signaling.resume import ReplayBuffer, ResumeRegistry, stamp


def test_stamp_puts_seq_first_and_the_models_still_parse() -> None:
    text = stamp(p.dump(p.OkResponse(ref="7")), 42)
    assert json.loads(text) == {"seq": 42, "type": "ok", "ref": "7"}
    assert p.parse_response(text) == p.OkResponse(ref="7")


def test_buffer_numbers_from_one_and_replays_after_last_seq_in_order() -> None:
    buffer = ReplayBuffer(max_messages=8, max_bytes=1 << 20)
    stamped = [buffer.add(f'{{"type":"m{i}"}}') for i in range(5)]
    assert [seq for seq, _ in stamped] == [1, 2, 3, 4, 5]
    assert buffer.covers(0) and buffer.covers(5) and not buffer.covers(6)
    assert [json.loads(t)["seq"] for t in buffer.after(2)] == [3, 4, 5]
    assert buffer.after(5) == []


def test_buffer_forgets_the_oldest_past_either_bound() -> None:
    buffer = ReplayBuffer(max_messages=3, max_bytes=1 << 20)
    for i in range(5):
        buffer.add(f'{{"type":"m{i}"}}')
    assert len(buffer) == 3 and buffer.evicted == 2
    assert not buffer.covers(1)  # message 2 is gone: a resume from 1 would leave a gap
    assert buffer.covers(2)
    small = ReplayBuffer(max_messages=100, max_bytes=100)
    for _ in range(10):
        small.add('{"type":"' + "x" * 30 + '"}')
    assert small.nbytes <= 100 and len(small) == 2 and small.evicted == 8
    big = small.add('{"type":"' + "y" * 200 + '"}')  # larger than the whole buffer
    assert big[0] == 11 and len(small) == 0 and small.covers(11) and not small.covers(10)


def test_registry_tokens_are_random_and_forgotten() -> None:
    registry: ResumeRegistry[str] = ResumeRegistry()
    a, b = registry.mint("a"), registry.mint("b")
    assert a != b and len(a) >= 43
    assert registry.get(a) == "a" and registry.get("guess") is None
    registry.forget(a)
    registry.forget(None)
    assert registry.get(a) is None and registry.sessions() == ["b"]
