"""Staying connected through a server restart (issue 11).

``sfu serve`` is stopped (SIGTERM: every socket closed with 1001) and started again on the same
port with the same secret and database. Clients with ``auto_reconnect`` retry with backoff and
jitter; their ``resume`` gets ``resume_failed`` (the new process holds no session), so they
join again with the same room token and identity and publish again. Media is back, and the chat
history is still there (MongoDB).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from sfu import _aiortc_adapter as adapter
from signaling.auth.tokens import VideoGrant, create_access_token
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.support.media import ToneTrack

ROOM = "restart"


def token(secret: str, identity: str) -> str:
    grant = VideoGrant(
        room=ROOM, roomJoin=True, canPublish=True, canSubscribe=True, canPublishData=True
    )
    return create_access_token(secret, identity=identity, ttl_s=600, video=grant)[0]


def total_packets(client: RoomClient) -> int:
    return sum(client.counter.packets.values())


async def test_clients_rejoin_after_a_server_restart_with_chat_and_media(
    mongo_url: str, tmp_path: Path
) -> None:
    adapter.set_ice_host_addresses(["127.0.0.1"])  # these peers gather on loopback too
    secret = secrets.token_urlsafe(48)
    env = {
        "SFU_JWT_SECRET": secret,
        "MONGO_URL": mongo_url,
        "SFU_MONGO_DB": f"restart_{uuid.uuid4().hex[:12]}",
    }
    proc, url = start_server(tmp_path, env=env)
    port = urlsplit(url).port
    alice = RoomClient(url, ROOM, "alice", token=token(secret, "alice"), auto_reconnect=True)
    bob = RoomClient(
        url, ROOM, "bob", token=token(secret, "bob"), count_only=True, auto_reconnect=True
    )
    try:
        await asyncio.to_thread(wait_healthy, url, proc, 30)
        await alice.connect()
        await alice.publish([ToneTrack(440.0)])
        await bob.connect()
        await alice.request({"type": "chat", "text": "before the restart"})
        await bob.wait_for(lambda: total_packets(bob) > 20)
        ssrcs_before = set(bob.counter.packets)

        stopped = time.monotonic()
        await asyncio.to_thread(stop_server, proc)
        proc, _ = start_server(tmp_path, env=env, port=port)
        await asyncio.to_thread(wait_healthy, url, proc, 30)
        healthy = time.monotonic()

        assert alice.removed is None and bob.removed is None
        # Both rejoin by themselves (resume_failed, then join) with the same identity.
        for client in (alice, bob):
            await client.wait_for(lambda c=client: c.reconnects == ["rejoined"], timeout=20)
            assert client.joined["participant"]["identity"] == client.name
        # Media back: bob receives alice's tone on a new subscription.
        await bob.wait_for(
            lambda: any(
                n > 20 for ssrc, n in bob.counter.packets.items() if ssrc not in ssrcs_before
            ),
            timeout=20,
        )
        media_back = time.monotonic()
        # The chat history survived the restart.
        histories = [e for e in bob.events if e["type"] == "chat_history"]
        assert len(histories) == 2
        assert [m["text"] for m in histories[-1]["messages"]] == ["before the restart"]
        print(
            f"\nserver restart: media back {media_back - stopped:.1f} s after the stop "
            f"({media_back - healthy:.1f} s after the new server answered /healthz)"
        )
    finally:
        for client in (bob, alice):
            await client.close()
        await asyncio.to_thread(stop_server, proc)
        adapter.set_ice_host_addresses([])
