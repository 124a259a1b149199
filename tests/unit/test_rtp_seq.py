from sfu.rtp.seq import SeqUnwrapper, seq_diff, seq_newer, ts_newer


def test_seq_newer_basic_and_wrap() -> None:
    assert seq_newer(2, 1)
    assert not seq_newer(1, 2)
    assert not seq_newer(5, 5)
    assert seq_newer(0, 65535)
    assert seq_newer(10, 65530)
    assert not seq_newer(65535, 0)
    assert seq_newer(0x7FFF, 0) and not seq_newer(0, 0x7FFF)
    # exactly half way is ambiguous (RFC 1982): neither is newer
    assert not seq_newer(0, 0x8000) and not seq_newer(0x8000, 0)


def test_seq_diff_range_and_wrap() -> None:
    assert seq_diff(2, 65534) == 4
    assert seq_diff(65534, 2) == -4
    assert seq_diff(100, 100) == 0
    assert seq_diff(0x7FFF, 0) == 32767
    assert seq_diff(0x8000, 0) == -32768
    for a in range(0, 65536, 997):
        for b in range(0, 65536, 1301):
            d = seq_diff(a, b)
            assert -32768 <= d <= 32767
            assert (b + d) & 0xFFFF == a


def test_ts_newer_wrap() -> None:
    assert ts_newer(1, 0)
    assert ts_newer(5, 0xFFFFFFF0)
    assert not ts_newer(0xFFFFFFF0, 5)
    assert not ts_newer(7, 7)


def test_unwrapper_forward_wrap() -> None:
    u = SeqUnwrapper()
    assert u.highest is None
    seqs = [65533, 65534, 65535, 0, 1, 2]
    assert [u.unwrap(s) for s in seqs] == [65533, 65534, 65535, 65536, 65537, 65538]
    assert u.highest == 65538


def test_unwrapper_reordering_across_wrap() -> None:
    u = SeqUnwrapper()
    assert u.unwrap(65534) == 65534
    assert u.unwrap(1) == 65537
    # late packets from before the wrap map back below it
    assert u.unwrap(65535) == 65535
    assert u.unwrap(0) == 65536
    assert u.highest == 65537
    assert u.unwrap(2) == 65538


def test_unwrapper_many_cycles_monotonic() -> None:
    u = SeqUnwrapper()
    prev = -1
    start = 40000
    for i in range(0, 5 * 65536, 7):
        v = u.unwrap((start + i) & 0xFFFF)
        assert v == start + i
        assert v > prev
        prev = v


def test_unwrapper_older_than_first_goes_below() -> None:
    u = SeqUnwrapper()
    assert u.unwrap(0) == 0
    assert u.unwrap(65535) == -1
    assert u.highest == 0
