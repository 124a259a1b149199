"""The RTCP feedback a router sends its publishers: receiver reports (RFC 3550 §6.4.2) and
REMB (draft-alvestrand-rmcat-remb-03), built in one place for WebRtcTransports and
PipeTransports alike."""

from __future__ import annotations

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    pack_remb_fci,
)

MAX_REPORT_BLOCKS = 31
"""Report blocks one RR can carry (RFC 3550 §6.4.2: a 5-bit count)."""


def remb_packet(sender_ssrc: int, bitrate_bps: int, ssrcs: list[int]) -> bytes:
    """One REMB (a PSFB, FMT 15, "Application layer FB") saying the media of ``ssrcs`` should
    not exceed ``bitrate_bps`` (bits/s) in total, sent as ``sender_ssrc`` (``ssrcs``: at most
    255, the count is one byte; the bitrate is rounded down to its 18-bit mantissa form)."""
    return bytes(
        RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=sender_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(int(bitrate_bps), ssrcs),
        )
    )


def receiver_reports(sender_ssrc: int, blocks: list[RtcpReceiverInfo]) -> list[bytes]:
    """``blocks`` as RR packets of at most :data:`MAX_REPORT_BLOCKS` each (none for none),
    sent as ``sender_ssrc``."""
    return [
        bytes(RtcpRrPacket(ssrc=sender_ssrc, reports=blocks[i : i + MAX_REPORT_BLOCKS]))
        for i in range(0, len(blocks), MAX_REPORT_BLOCKS)
    ]
