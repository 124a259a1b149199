from sfu.rtp.stats import ReceiveStats


def test_empty_report() -> None:
    s = ReceiveStats(90000)
    assert s.report() == (0, 0, 0, 0)
    assert s.packets == 0


def test_constant_transit_no_loss_zero_jitter() -> None:
    s2 = ReceiveStats(8000)
    for i in range(200):
        s2.on_packet(i, 160 * i, 1000 + 20 * i)  # 160 ticks @ 8 kHz == 20 ms
    fraction, lost, ext_max, jitter = s2.report()
    assert (fraction, lost, ext_max, jitter) == (0, 0, 199, 0)
    assert s2.packets == 200


def test_known_loss_fraction_and_cumulative() -> None:
    s = ReceiveStats(8000)
    # 100 packets, every 4th lost (25 lost)
    for i in range(100):
        if i % 4 != 3:
            s.on_packet(i, 160 * i, 20 * i)
    fraction, lost, ext_max, _ = s.report()
    assert ext_max == 98  # 99 was lost
    expected = 99
    assert lost == expected - 75
    assert fraction == (24 * 256) // 99
    # next interval: no loss
    for i in range(100, 200):
        s.on_packet(i, 160 * i, 20 * i)
    fraction, lost, ext_max, _ = s.report()
    # seq 99 is only "expected" once 100 arrives: 1 of 101 lost in this interval
    assert fraction == 256 // 101
    assert lost == 25
    assert ext_max == 199
    # next interval: half lost
    for i in range(200, 300, 2):
        s.on_packet(i, 160 * i, 20 * i)
    fraction, lost, _, _ = s.report()
    assert lost == 25 + 49
    assert fraction == (49 * 256) // 99


def test_seq_wraparound_extended_highest() -> None:
    s = ReceiveStats(90000)
    for i in range(65530, 65546):
        s.on_packet(i & 0xFFFF, i * 3000 & 0xFFFFFFFF, i)
    fraction, lost, ext_max, _ = s.report()
    assert ext_max == 65545  # cycles = 1
    assert ext_max >> 16 == 1 and ext_max & 0xFFFF == 9
    assert (fraction, lost) == (0, 0)


def test_reordered_and_duplicate_packets() -> None:
    s = ReceiveStats(8000)
    for seq in [0, 1, 3, 2, 4, 4, 5]:
        s.on_packet(seq, seq * 160, seq * 20)
    fraction, lost, ext_max, _ = s.report()
    assert ext_max == 5
    assert lost == -1  # a duplicate makes cumulative loss negative (RFC 3550 A.3)
    assert fraction == 0


def test_alternating_delay_positive_jitter() -> None:
    s = ReceiveStats(8000)
    for i in range(2000):
        delay = 10 if i % 2 else 0  # ms, i.e. 80 ticks of transit difference
        s.on_packet(i, 160 * i, 20 * i + delay)
    jitter = s.report()[3]
    # |D| = 80 ticks every packet -> J converges to 80
    assert 78 <= jitter <= 80
    assert s.jitter == jitter


def test_jitter_survives_timestamp_wrap() -> None:
    s = ReceiveStats(90000)
    base = 0xFFFFFFFF - 3600 * 5
    for i in range(20):
        s.on_packet(i, (base + 3600 * i) & 0xFFFFFFFF, 1000 + i * 40)  # 3600 ticks == 40 ms
    assert s.report()[3] == 0


def test_large_jump_ignored_then_accepted_as_restart() -> None:
    s = ReceiveStats(8000)
    for i in range(10):
        s.on_packet(i, 160 * i, 20 * i)
    s.on_packet(30000, 0, 300)  # single wild packet ignored
    assert s.report()[2] == 9
    assert s.packets == 10
    s.on_packet(40000, 0, 400)
    s.on_packet(40001, 160, 420)  # two sequential -> source restarted
    assert s.packets == 1
    assert s.report()[:3] == (0, 0, 40001)


def test_packets_lost_clamped_24bit() -> None:
    s = ReceiveStats(8000)
    s.on_packet(0, 0, 0)
    s._cycles = 1 << 24  # fake a long stream with massive loss
    assert s.report()[1] == 0x7FFFFF
