"""PipeConsumer wire format and control calls, the piped producer's parameters, and the REMB
cap (sfu/pipe.py, Producer.capped_estimate), without sockets."""

from __future__ import annotations

import dataclasses

import pytest
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from sfu import _aiortc_adapter as adapter
from sfu.pipe import (
    PIPE_AUDIO_LEVEL_ID,
    PipeConsumer,
    PipeControl,
    PipeProducerParameters,
    _negotiated,
)
from sfu.producer import REMOTE_ESTIMATE_MAX_AGE_S, Producer
from tests.support.fakes import FakeTransport

OPUS = RTCRtpCodecParameters(
    mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111, parameters={}
)


class FakePipe:
    """The parts of a PipeTransport a PipeConsumer calls."""

    nack_buffer_packets = 64
    srtp_enabled = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.controls: list[PipeControl] = []
        self.forgotten: list[PipeConsumer] = []

    def send_rtp(self, packet: bytes) -> None:
        self.sent.append(packet)

    def emit(self, control: PipeControl) -> None:
        self.controls.append(control)

    def forget_consumer(self, consumer: PipeConsumer) -> None:
        self.forgotten.append(consumer)


def _audio_producer() -> Producer:
    producer = Producer(transport=FakeTransport(), participant_sid="PA_x", mid="0", kind="audio")
    producer.on_negotiated(
        adapter.NegotiatedRtp(
            mid="0",
            kind="audio",
            codecs=[OPUS],
            header_extensions={adapter.URI_AUDIO_LEVEL: 5},
            ssrc=1111,
            rtx_ssrc=None,
            rtcp_ssrc=1,
        )
    )
    return producer


def test_pipe_consumer_sends_payload_unchanged_with_audio_level() -> None:
    producer = _audio_producer()
    pipe = FakePipe()
    consumer = PipeConsumer(producer, pipe, 0xCAFE, None)  # type: ignore[arg-type]
    producer.consumers.append(consumer)  # type: ignore[arg-type]
    params = consumer.parameters()
    assert params.producer_id == producer.id and params.ssrc == 0xCAFE
    assert params.audio_level_id == PIPE_AUDIO_LEVEL_ID and params.payload_type == 111
    for i in range(3):
        consumer.forward(i == 0, 100 + i, 960 * i, b"opus%d" % i, bytes([0x80 | 42]), False)
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=PIPE_AUDIO_LEVEL_ID, uri=adapter.URI_AUDIO_LEVEL)
            ]
        )
    )
    packets = [RtpPacket.parse(p, ext_map) for p in pipe.sent]
    assert [p.payload for p in packets] == [b"opus0", b"opus1", b"opus2"]
    assert {p.ssrc for p in packets} == {0xCAFE} and packets[0].marker
    assert [(p.sequence_number - packets[0].sequence_number) & 0xFFFF for p in packets] == [0, 1, 2]
    assert packets[0].extensions.audio_level == (True, 42)
    # Mute, media gap and close travel as control calls.
    producer.set_paused(True)
    producer.set_paused(False)
    producer.suspend()
    assert [c.action for c in pipe.controls] == ["pause", "resume", "gap_start"]
    producer.close()
    assert pipe.controls[-1] == PipeControl(producer.id, "close")
    assert pipe.forgotten == [consumer] and not producer.consumers


def _video_params() -> PipeProducerParameters:
    return PipeProducerParameters(
        producer_id="TR_x",
        participant_sid="PA_x",
        kind="video",
        source="camera",
        name="",
        mime_type="video/VP8",
        clock_rate=90000,
        channels=None,
        codec_parameters=(),
        payload_type=96,
        rtx_payload_type=97,
        ssrc=5,
        rtx_ssrc=6,
    )


def test_piped_producer_parameters_are_plain_data() -> None:
    params = _video_params()
    params.validate()
    assert PipeProducerParameters(**dataclasses.asdict(params)) == params
    rtp = _negotiated(params, rtcp_ssrc=9)
    producer = Producer(transport=FakeTransport(), participant_sid="PA_x", mid="pipe", kind="video")
    producer.on_negotiated(rtp)
    assert producer.codec is not None
    assert (producer.codec.payload_type, producer.codec.rtx_payload_type) == (96, 97)
    assert (producer.ssrc, producer.rtx_ssrc, producer.rtcp_ssrc) == (5, 6, 9)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "data"},
        {"payload_type": 128},
        {"ssrc": 0},
        {"ssrc": 1 << 32},
        {"rtx_ssrc": None},
        {"audio_level_id": 15},
        {"clock_rate": 0},
        {"mime_type": "VP8"},
    ],
)
def test_invalid_piped_producer_parameters_raise(change: dict[str, object]) -> None:
    params = dataclasses.replace(_video_params(), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        params.validate()


def test_remote_estimate_caps_the_remb_while_fresh() -> None:
    producer = _audio_producer()
    assert producer.capped_estimate(2_000_000, now_s=100.0) == 2_000_000
    producer.remote_estimates["PC_b"] = (600_000, 100.0)
    producer.remote_estimates["PC_c"] = (900_000, 100.0)
    assert producer.capped_estimate(2_000_000, now_s=101.0) == 600_000
    assert producer.capped_estimate(300_000, now_s=101.0) == 300_000
    stale = 100.0 + REMOTE_ESTIMATE_MAX_AGE_S + 1
    assert producer.capped_estimate(2_000_000, now_s=stale) == 2_000_000
