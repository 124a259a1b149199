import random

import pytest

from sfu.rtp.munger import RtpMunger


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(1234)


def test_first_packet_random_start_and_offsets_kept() -> None:
    m = RtpMunger()
    assert not m.started
    first = m.munge(1000, 5000)
    assert first is not None
    s0, t0 = first
    assert m.started
    assert 0 <= s0 < 0x8000  # random 15-bit start
    assert 0 <= t0 <= 0xFFFFFFFF
    assert (m.last_seq, m.last_ts) == (s0, t0)
    assert m.munge(1001, 5000 + 3000) == ((s0 + 1) & 0xFFFF, (t0 + 3000) & 0xFFFFFFFF)


def test_random_start_differs_between_mungers() -> None:
    starts = set()
    for _ in range(20):
        m = RtpMunger()
        r = m.munge(0, 0)
        assert r is not None
        starts.add(r)
    assert len(starts) > 15


def _offset_munger(seq: int, ts: int, out_seq: int, out_ts: int) -> RtpMunger:
    """Force a known start so wrap cases are deterministic."""
    m = RtpMunger()
    m._init_seq = out_seq
    m._init_ts = out_ts
    assert m.munge(seq, ts) == (out_seq, out_ts)
    return m


def test_seq_wraparound_outgoing() -> None:
    m = _offset_munger(100, 0, 65534, 0)
    assert m.munge(101, 10) == (65535, 10)
    assert m.munge(102, 20) == (0, 20)
    assert m.munge(103, 30) == (1, 30)
    assert m.last_seq == 1


def test_seq_wraparound_incoming() -> None:
    m = _offset_munger(65534, 0, 100, 0)
    assert m.munge(65535, 0) == (101, 0)
    assert m.munge(0, 0) == (102, 0)
    assert m.munge(1, 0) == (103, 0)
    # reordered packet from before the incoming wrap is still mapped (not dropped)
    m2 = _offset_munger(65533, 0, 10, 0)
    assert m2.munge(1, 0) == (14, 0)
    assert m2.munge(65535, 0) == (12, 0)
    assert m2.last_seq == 14


def test_ts_wraparound() -> None:
    m = _offset_munger(0, 1000, 0, 0xFFFFFF00)
    assert m.munge(1, 1000 + 0xFF) == (1, 0xFFFFFFFF)
    assert m.munge(2, 1000 + 0x100) == (2, 0)
    assert m.munge(3, 1000 + 0x1100) == (3, 0x1000)
    # incoming ts wrap
    m2 = _offset_munger(0, 0xFFFFFFF0, 0, 50)
    assert m2.munge(1, 0x10) == (1, 50 + 0x20)


def test_reordering_and_gaps_preserved() -> None:
    m = _offset_munger(500, 9000, 20000, 1)
    incoming = [(503, 9300), (501, 9100), (510, 10000), (502, 9200), (520, 11000)]
    out = [m.munge(s, t) for s, t in incoming]
    assert out == [(20003, 301), (20001, 101), (20010, 1001), (20002, 201), (20020, 2001)]
    # last_* track the highest seq, not the last munged (reordered) packet
    assert (m.last_seq, m.last_ts) == (20020, 2001)


def test_resync_continuity_after_seq_jump_and_ssrc_change() -> None:
    m = _offset_munger(100, 1000, 300, 7000)
    for i in range(1, 5):
        m.munge(100 + i, 1000 + 3000 * i)
    assert (m.last_seq, m.last_ts) == (304, 7000 + 12000)
    # new source: seq jumps by thousands, unrelated timestamp
    m.resync(ts_gap=4500)
    assert m.munge(41234, 123456789) == (305, 7000 + 12000 + 4500)
    assert m.munge(41235, 123456789 + 3000) == (306, 7000 + 12000 + 4500 + 3000)
    assert m.unmunge_seq(306) == 41235
    # a backwards jump of the source also continues seamlessly
    m.resync(ts_gap=90)
    assert m.munge(7, 3) == (307, 7000 + 12000 + 4500 + 3000 + 90)
    assert m.munge(8, 4) == (308, 7000 + 12000 + 4500 + 3000 + 91)


def test_resync_gap_clamped_to_one_and_wraps() -> None:
    m = _offset_munger(0, 0, 65535, 0xFFFFFFFF)
    m.resync(0)
    assert m.munge(9000, 55) == (0, 0)


def test_resync_before_start_is_noop() -> None:
    m = RtpMunger()
    m._init_seq = 42
    m._init_ts = 43
    m.resync(1000)
    assert m.munge(9, 9) == (42, 43)


def test_pre_resync_stragglers_dropped() -> None:
    m = _offset_munger(1000, 0, 0, 0)
    m.munge(1001, 100)
    m.munge(1003, 300)  # 1002 still in flight
    m.resync(10)
    assert m.munge(1004, 400) == (4, 310)
    # straggler from before the resync point: would collide, must drop
    assert m.munge(1002, 200) is None
    assert m.munge(1003, 300) is None
    assert m.munge(1005, 500) == (5, 410)
    # same source, stragglers after a resync on an SSRC switch too
    m.resync(1)
    assert m.munge(60000, 0) == (6, 411)
    assert m.munge(59999, 0) is None
    assert m.munge(60001, 1) == (7, 412)


def test_packets_older_than_first_dropped() -> None:
    m = _offset_munger(10, 0, 100, 0)
    assert m.munge(9, 0) is None
    assert m.munge(11, 0) == (101, 0)


def test_sync_point_check_survives_many_wraps() -> None:
    m = _offset_munger(0, 0, 0, 0)
    for i in range(1, 3 * 65536, 1000):
        assert m.munge(i & 0xFFFF, i) == (i & 0xFFFF, i)
    # a packet just behind the highest is still forwarded, not taken as pre-sync
    hi = m.last_seq
    assert m.munge((hi - 5) & 0xFFFF, 0) is not None


def test_unmunge_seq_inverse_with_wrap() -> None:
    m = _offset_munger(65000, 0, 300, 0)
    for s in (65000, 65535, 0, 200):
        r = m.munge(s, 0)
        assert r is not None
        assert m.unmunge_seq(r[0]) == s
