"""Staying connected (issue 11): a signaling drop is resumed on a new socket.

The socket's TCP connection is torn down without ``leave`` or a close frame while media
flows. The server holds the session for ``resume_grace_s``: media keeps flowing, nobody else
sees a leave or a join, and a ``resume`` replays every message the client missed, in order
(a subscribe offer made meanwhile included). After the grace period the participant leaves and
a resume gets ``resume_failed``. docs/protocol.md "Resume".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.client import RoomClient, SignalingError
from signaling.settings import Settings
from tests.integration.conftest import MakeToken
from tests.support.media import ToneTrack

Factory = Callable[..., RoomClient]


def total_packets(client: RoomClient) -> int:
    return sum(client.counter.packets.values())


def chats(client: RoomClient) -> list[str]:
    return [e["message"]["text"] for e in client.events if e["type"] == "chat"]


def presence(client: RoomClient, sid: str) -> list[str]:
    """participant_joined/left events about ``sid`` that ``client`` saw."""
    return [
        e["type"]
        for e in client.events
        if (e["type"] == "participant_left" and e["participant"] == sid)
        or (e["type"] == "participant_joined" and e["participant"]["sid"] == sid)
    ]


async def test_signaling_drop_is_resumed_with_missed_events_and_media_untouched(
    room_client: Factory,
) -> None:
    alice = room_client("resume", "alice", subscribe=False)
    carol = room_client("resume", "carol", subscribe=False)
    bob = room_client("resume", "bob", count_only=True)
    try:
        await alice.connect()
        await alice.publish([ToneTrack(440.0)])
        await carol.connect()
        joined = await bob.connect()
        bob_sid = joined["participant"]["sid"]
        assert joined["resume_token"] and joined["resume_grace_s"] == 20.0
        await bob.wait_for(lambda: total_packets(bob) > 20)

        await alice.wait_for(lambda: presence(alice, bob_sid) == ["participant_joined"])
        await carol.wait_for(lambda: presence(carol, bob_sid) == ["participant_joined"])
        await bob.drop_socket()
        assert bob.ws is not None and bob.ws.closed
        dropped_at = total_packets(bob)
        seq_at_drop = bob.last_seq
        # While bob's socket is down: chat, and a new producer (a subscribe offer for bob).
        for text in ("one", "two", "three"):
            await alice.request({"type": "chat", "text": text})
        await carol.publish([ToneTrack(660.0)])
        await alice.wait_for(lambda: chats(alice) == ["one", "two", "three"])
        # Media of the held session kept flowing while no socket was open.
        await bob.wait_for(lambda: total_packets(bob) > dropped_at + 20, timeout=5)
        assert bob.ws.closed

        started = time.monotonic()
        resumed = await bob.resume()
        resume_ms = (time.monotonic() - started) * 1000
        assert resumed["type"] == "resumed"
        assert resumed["participant"]["sid"] == bob_sid  # the same session
        assert resumed["replayed"] >= 5  # 3 chats, track_published, offer
        assert seq_at_drop < resumed["last_seq"] <= bob.last_seq
        # Every numbered message arrived exactly once and in order: no gap, no repeat.
        assert bob.seqs == list(range(1, len(bob.seqs) + 1))
        assert chats(bob) == ["one", "two", "three"]
        assert bob.seqs[-1] == bob.last_seq
        # The subscribe offer made during the drop was replayed and answered: carol's track
        # arrives as well.
        await bob.wait_for(lambda: len(bob.counter.packets) == 2, timeout=10)
        before = total_packets(bob)
        await bob.wait_for(lambda: total_packets(bob) > before + 20, timeout=5)
        # Nobody saw bob leave or join.
        await asyncio.sleep(0.2)
        for other in (alice, carol):
            assert presence(other, bob_sid) == ["participant_joined"]  # only the first join
        # The resumed session takes requests as before.
        await bob.request({"type": "chat", "text": "back"})
        await alice.wait_for(lambda: chats(alice)[-1:] == ["back"])
        print(f"\nresume: resumed reply {resume_ms:.0f} ms after the new socket opened")
    finally:
        for client in (bob, carol, alice):
            await client.close()


async def test_podcast_host_and_listener_keep_their_stage_across_a_resume(
    room_client: Factory,
) -> None:
    host = room_client("stage-resume", "host", kind="podcast", role="host", admin=True)
    fan = room_client("stage-resume", "fan", kind="podcast", role="listener", publish=False)
    try:
        await host.connect()
        await fan.connect()
        page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
        assert page["total"] == 1
        for client in (fan, host):
            await client.drop_socket()
            await asyncio.sleep(0.3)  # the server has seen the socket close
            await client.resume()
        # Still a member of the stage: the host may moderate, the listener is counted.
        page = await host.request({"type": "list_audience", "offset": 0, "limit": 10})
        assert page["total"] == 1
        await fan.request({"type": "raise_hand", "raised": True})
        await host.wait_for(
            lambda: any(e["type"] == "hands" and e["total"] == 1 for e in host.events)
        )
        await host.request({"type": "set_stage_video", "enabled": True})
    finally:
        for client in (fan, host):
            await client.close()


async def test_resume_with_unknown_token_or_unheld_seq_fails_typed(
    room_client: Factory,
) -> None:
    alice = room_client("resume-bad", "alice", subscribe=False)
    try:
        await alice.connect()
        token = alice.resume_token
        alice.resume_token = "not-a-token"
        await alice.drop_socket()
        with pytest.raises(SignalingError) as excinfo:
            await alice.resume()
        assert excinfo.value.code == "resume_failed"
        # A last_seq beyond what the server sent cannot be resumed (and ends the session).
        alice.resume_token = token
        alice.last_seq += 100
        with pytest.raises(SignalingError) as excinfo:
            await alice.resume()
        assert excinfo.value.code == "resume_failed"
        alice.last_seq -= 100
        with pytest.raises(SignalingError) as excinfo:
            await alice.resume()
        assert excinfo.value.code == "resume_failed"
    finally:
        await alice.close()


@pytest.fixture
async def short_grace_url(sfu_settings: Settings) -> AsyncIterator[str]:
    settings = sfu_settings.model_copy(update={"resume_grace_s": 0.5})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_after_the_grace_period_the_participant_leaves_and_resume_fails(
    short_grace_url: str, make_token: MakeToken
) -> None:
    def client(identity: str, **kwargs: Any) -> RoomClient:
        return RoomClient(
            short_grace_url, "grace", identity, token=make_token("grace", identity), **kwargs
        )

    alice = client("alice", subscribe=False)
    bob = client("bob", subscribe=False)
    try:
        await alice.connect()
        joined = await bob.connect()
        bob_sid = joined["participant"]["sid"]
        assert joined["resume_grace_s"] == 0.5
        # Within the grace period the session is held: a resume keeps it.
        await bob.drop_socket()
        assert (await bob.resume())["participant"]["sid"] == bob_sid
        assert presence(alice, bob_sid) == ["participant_joined"]
        # Past it, the participant leaves (everyone sees it) and the session is gone.
        await bob.drop_socket()
        await alice.wait_for(
            lambda: presence(alice, bob_sid)[-1:] == ["participant_left"], timeout=5
        )
        with pytest.raises(SignalingError) as excinfo:
            await bob.resume()
        assert excinfo.value.code == "resume_failed"
        # The client then joins afresh with its token.
        outcome = await bob.reconnect(max_wait_s=10)
        assert outcome == "rejoined"
        assert bob.joined["participant"]["identity"] == "bob"
    finally:
        for c in (bob, alice):
            await c.close()


async def test_resume_disabled_leaves_at_once(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    settings = sfu_settings.model_copy(update={"resume_grace_s": 0.0})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    alice = RoomClient(url, "off", "alice", token=make_token("off", "alice"), subscribe=False)
    bob = RoomClient(url, "off", "bob", token=make_token("off", "bob"), subscribe=False)
    try:
        await alice.connect()
        joined = await bob.connect()
        assert joined.get("resume_token") is None and joined["resume_grace_s"] == 0
        await bob.drop_socket()
        sid = joined["participant"]["sid"]
        await alice.wait_for(lambda: presence(alice, sid)[-1:] == ["participant_left"], timeout=5)
    finally:
        for c in (bob, alice):
            await c.close()
        await server.close()


async def test_resume_takes_over_a_socket_the_server_still_holds_open(
    room_client: Factory,
) -> None:
    """A network change: the old socket still looks open to the server when the client
    resumes on a new one. The server moves the session and closes the old socket (4001)."""
    alice = room_client("takeover", "alice", subscribe=False)
    bob = room_client("takeover", "bob", subscribe=False)
    try:
        await alice.connect()
        joined = await bob.connect()
        old_ws = bob.ws
        assert old_ws is not None
        await alice.request({"type": "chat", "text": "before"})
        await bob.wait_for(lambda: chats(bob) == ["before"])
        resumed = await bob.resume()  # the old socket is still open
        assert resumed["participant"]["sid"] == joined["participant"]["sid"]
        assert resumed["last_seq"] <= bob.last_seq
        await bob.wait_for(lambda: old_ws.closed, timeout=5)
        assert old_ws.close_code == 4001
        await alice.request({"type": "chat", "text": "after"})
        await bob.request({"type": "chat", "text": "still here"})
        await alice.wait_for(lambda: chats(alice)[-1:] == ["still here"])
        await bob.wait_for(lambda: chats(bob)[-2:] == ["after", "still here"])
        assert bob.seqs == list(range(1, len(bob.seqs) + 1))
        assert presence(alice, joined["participant"]["sid"]) == ["participant_joined"]
    finally:
        for c in (bob, alice):
            await c.close()
