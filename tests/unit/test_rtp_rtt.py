"""RTT from our sender reports and the receiver's LSR/DLSR (RFC 3550 §6.4.1)."""

from __future__ import annotations

from sfu.rtp.rtt import DEFAULT_RTT_MS, MAX_RTT_MS, MIN_RTT_MS, RttEstimator


def test_default_until_a_report_names_our_sr() -> None:
    rtt = RttEstimator()
    assert rtt.rtt_ms == DEFAULT_RTT_MS and not rtt.measured
    ntp = 0x0011223344556677
    rtt.on_sender_report_sent(ntp, now_ms=1000)
    assert rtt.on_report_block(0, 0, now_ms=1100) is None  # LSR 0: no SR received yet
    assert rtt.on_report_block(0x12345678, 0, now_ms=1100) is None  # not one of ours
    assert rtt.rtt_ms == DEFAULT_RTT_MS
    lsr = (ntp >> 16) & 0xFFFFFFFF
    assert rtt.on_report_block(lsr, 65536 // 4, now_ms=1300) == 50  # 300 - 250 ms held
    assert rtt.measured


def test_clamped_and_only_recent_srs_kept() -> None:
    rtt = RttEstimator()
    for i in range(20):
        rtt.on_sender_report_sent(i << 16, now_ms=1000 * i)
    assert rtt.on_report_block(19, 0, now_ms=19_000) == MIN_RTT_MS  # 0 ms: floor
    assert rtt.on_report_block(12, 0, now_ms=19_000) == MAX_RTT_MS  # 7 s: ceiling
    assert rtt.on_report_block(1, 0, now_ms=19_000) is None  # forgotten
