"""Cross-node pipes (signaling/cluster/media.py) against a scripted media plane and bus: the
order of a dead node's pipe close and a moved publisher's resume (docs/cluster.md "Failover")."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from sfu.pipe import PipeProducerParameters, PipeTransportParameters
from sfu.plane import codec
from signaling import keys as app_keys
from signaling.cluster.media import MediaPipes, _Pull
from signaling.cluster.node import Summary
from signaling.stage import STAGES

ROOM = "r"
HOST_KEY = ("host", "audio", "microphone")


def _params(producer_id: str) -> PipeProducerParameters:
    return PipeProducerParameters(
        producer_id=producer_id,
        participant_sid="PA_host",
        kind="audio",
        source="microphone",
        name="",
        mime_type="audio/opus",
        clock_rate=48000,
        channels=2,
        codec_parameters=(),
        payload_type=111,
        rtx_payload_type=None,
        ssrc=7,
        rtx_ssrc=None,
    )


class ScriptedMedia:
    """The pulling node's media plane: records what is produced; closing ``pull:a`` waits
    for ``close_gate`` (a slow worker) and reports the piped producer it held."""

    def __init__(self) -> None:
        self.close_gate = asyncio.Event()
        self.produced: list[tuple[str, str]] = []  # (peer, producer id)
        self.closed: list[tuple[str, bool]] = []

    async def pipe_open(self, room: str, peer: str, *_: Any) -> PipeTransportParameters:
        await asyncio.sleep(0)
        return PipeTransportParameters("127.0.0.1", 40000)

    async def pipe_connect(self, room: str, peer: str, remote: PipeTransportParameters) -> None:
        await asyncio.sleep(0)

    async def pipe_produce(self, room: str, peer: str, params: PipeProducerParameters) -> None:
        await asyncio.sleep(0)
        self.produced.append((peer, params.producer_id))

    async def pipe_close(self, room: str, peer: str, keep_producers: bool = False) -> list[str]:
        self.closed.append((peer, keep_producers))
        await self.close_gate.wait()
        return ["TR_old_here"] if peer == "pull:a" else []


def _pipes() -> tuple[MediaPipes, ScriptedMedia, list[str]]:
    media = ScriptedMedia()
    calls: list[str] = []

    async def call(node: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        calls.append(node)
        await asyncio.sleep(0)  # b answers at once: faster than the local close of pull:a
        return {
            "transport": codec.encode(
                PipeTransportParameters("127.0.0.1", 40001), PipeTransportParameters
            ),
            "producers": [codec.encode(_params(t), PipeProducerParameters) for t in args["tracks"]],
        }

    background: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    # The host published on a (piped here as TR_old_here) and is back on b as TR_new.
    host_on_b = Summary(
        0,
        {"PA_host2": {"identity": "host", "role": "host"}},
        [],
        0,
        {"PA_host2": [{"sid": "TR_new", "kind": "audio", "source": "microphone"}]},
    )
    cluster = SimpleNamespace(
        app={app_keys.MEDIA: media, STAGES: SimpleNamespace(rooms={ROOM: object()})},
        info=SimpleNamespace(media_host="127.0.0.1"),
        remote={ROOM: {"b": host_on_b}},
        bus=SimpleNamespace(call=call),
        _spawn=spawn,
    )
    pipes = MediaPipes(cluster)  # type: ignore[arg-type]
    from_a = _Pull(connected=True)
    from_a.piped["TR_old"] = "TR_old_here"
    from_a.meta["TR_old_here"] = HOST_KEY
    pipes.pulls[(ROOM, "a")] = from_a
    return pipes, media, calls


async def test_a_moved_publisher_resumes_its_producer_while_another_pull_runs() -> None:
    """Two summaries of b in a row start two pulls: the first finds the host moved from a and
    closes pull:a (slowly); the second must not produce the host's track under a new id
    before pull:a's Producers are suspended, or c's subscribers keep a silent consumer."""
    pipes, media, calls = _pipes()
    first = asyncio.ensure_future(pipes.pull(ROOM, "b"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert media.closed == [("pull:a", True)]  # the first pull is closing a's pipe
    second = asyncio.ensure_future(pipes.pull(ROOM, "b"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert media.produced == []  # nothing produced before a's Producers are suspended
    media.close_gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert media.produced == [("pull:b", "TR_old_here")]  # resumed under its id, once
    assert pipes.pulls[(ROOM, "b")].piped == {"TR_new": "TR_old_here"}
    assert pipes.suspended.get(ROOM, {}) == {}
    assert calls == ["b"]
    assert pipes.stale[(ROOM, "a")] == {"TR_old"}


async def test_node_gone_twice_returns_after_the_first_close() -> None:
    """The dead-node sweep and a moved publisher can both close pull:a: the second call
    returns only once the first has suspended a's Producers."""
    pipes, media, _calls = _pipes()
    first = asyncio.ensure_future(pipes.node_gone(ROOM, "a", dead=True))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(pipes.node_gone(ROOM, "a", dead=True))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done()
    media.close_gate.set()
    await asyncio.wait_for(second, 5)
    assert pipes.suspended[ROOM][HOST_KEY][0] == "TR_old_here"  # already when it returned
    await first
    assert media.closed == [("pull:a", True)]
