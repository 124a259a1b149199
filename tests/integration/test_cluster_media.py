"""Media across the nodes of a cluster (issue 13, docs/cluster.md "Media across nodes").

Three ``sfu serve`` nodes on 127.0.0.1 sharing one MongoDB and one Redis. One podcast room:
the host publishes a 440 Hz tone on node a, a speaker a 660 Hz tone on node b; listeners on
a, b and c decode both (FFT-checked), each Producer piped once per node over SRTP AES-GCM.
A listener on c promoted to speaker publishes 880 Hz and is heard on a and b. Redis
stopped past the 6 s death timeout: the pipes that are up keep flowing. ``kill -9`` of
the origin a: the host reconnects to b and publishes there; the listener on c keeps its
consumer of the host's track (the same track, no new subscription) and hears it again within
10 s; the stage is intact (the host seat, the promotion). ``kill -9`` of c: its listener
reconnects to b and hears the room again within 10 s.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sfu import _aiortc_adapter as adapter
from signaling.client import RoomClient
from signaling.serverproc import start_server, stop_server, wait_healthy
from tests.integration.conftest import TEST_SECRET, MakeToken
from tests.support.media import ToneTrack, collect_audio, dominant_frequency
from tests.support.redis import RedisServer, find_redis_server, start_redis

pytestmark = pytest.mark.skipif(
    find_redis_server() is None, reason="redis-server missing (scripts/test.sh installs it)"
)

ROOM = "cluster-media"
SETTINGS = ("video", "listener_sharing", "locked", "waiting_room")
WORKERS = "1"


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    """The test's aiortc peers gather host candidates on 127.0.0.1 (aioice skips it)."""
    adapter.set_ice_host_addresses(["127.0.0.1"])
    yield
    adapter.set_ice_host_addresses([])


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    url: str


REDIS: dict[str, RedisServer] = {}


@pytest.fixture
def nodes(mongo_url: str, tmp_path: Path) -> Iterator[dict[str, Node]]:
    redis = start_redis(tmp_path)
    REDIS["server"] = redis
    db = f"cmedia_{uuid.uuid4().hex[:12]}"
    started: dict[str, Node] = {}
    try:
        for name in ("a", "b", "c"):
            env = {
                "SFU_JWT_SECRET": TEST_SECRET,
                "MONGO_URL": mongo_url,
                "SFU_MONGO_DB": db,
                "SFU_REDIS_URL": redis.url,
                "SFU_NODE_ID": name,
                "SFU_NODE_MEDIA_HOST": "127.0.0.1",
                "SFU_WORKERS": WORKERS,
            }
            log = (tmp_path / f"node-{name}.log").open("wb")
            process, url = start_server(tmp_path / name, env=env, output=log, log_level="info")
            started[name] = Node(process, url)
        for node in started.values():
            wait_healthy(node.url, node.process, timeout_s=30)
        yield started
    finally:
        for node in started.values():
            stop_server(node.process)
        redis.stop()


async def _frequency(track: Any) -> float | None:
    try:
        samples = await collect_audio(track, 0.6, timeout=2)
    except TimeoutError:
        return None
    tail = samples[len(samples) // 2 :]
    if float(abs(tail).max()) < 200:  # silence (a gap)
        return None
    return dominant_frequency(tail)


async def hears(client: RoomClient, expected: set[float], timeout_s: float) -> float:
    """Wait (bounded) until every tone of ``expected`` (Hz) decodes on one of ``client``'s
    audio tracks; returns the seconds it took."""
    start = time.monotonic()
    heard: list[float | None] = []
    while time.monotonic() - start < timeout_s:
        tracks = [
            r.track for r in client.received.values() if r.kind == "audio" and r.track is not None
        ]
        heard = list(await asyncio.gather(*(_frequency(t) for t in tracks)))
        if all(any(f is not None and abs(f - e) < 20 for f in heard) for e in expected):
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"{client.name} heard {heard}, expected {sorted(expected)}")


def roster(client: RoomClient) -> dict[str, dict[str, Any]]:
    """Who ``client`` sees in the room: ``joined``'s participants, then the
    participant_joined / participant_updated / participant_left events (sid -> info)."""
    seen = {info["sid"]: info for info in client.joined.get("participants", [])}
    for event in client.events:
        if event.get("type") in ("participant_joined", "participant_updated"):
            seen[event["participant"]["sid"]] = event["participant"]
        elif event.get("type") == "participant_left":
            seen.pop(event["participant"], None)
    return seen


def announced(client: RoomClient, sid: str, identity: str, name: str, role: str) -> bool:
    """``client`` sees ``sid`` with that identity, name and role, publishing audio."""
    info = roster(client).get(sid)
    return (
        info is not None
        and (info["identity"], info["name"], info["role"]) == (identity, name, role)
        and any(t["kind"] == "audio" for t in info.get("tracks", []))
    )


def settings(client: RoomClient) -> dict[str, bool]:
    """The room settings of ``client``'s latest ``stage_settings``."""
    events = [e for e in client.events if e.get("type") == "stage_settings"]
    return {k: events[-1][k] for k in SETTINGS} if events else {}


def has(client: RoomClient, kind: str, **fields: Any) -> bool:
    return any(
        e.get("type") == kind and all(e.get(k) == v for k, v in fields.items())
        for e in client.events
    )


async def test_voices_cross_nodes_and_survive_node_deaths(
    nodes: dict[str, Node], make_token: MakeToken
) -> None:
    a, b, c = (nodes[n].url for n in "abc")
    clients: list[RoomClient] = []

    def client(url: str, identity: str, **grants: Any) -> RoomClient:
        token = make_token(ROOM, identity, kind="podcast", **grants)
        made = RoomClient(url, ROOM, grants.get("name") or identity, token=token)
        clients.append(made)
        return made

    try:
        host = client(a, "host", admin=True, name="Ada Host")
        await host.connect()
        await host.publish([ToneTrack(440.0)])
        speaker = client(b, "speaker", role="speaker")
        await speaker.connect()
        await speaker.publish([ToneTrack(660.0)])
        urls = {"a": a, "b": b, "c": c}
        listeners = {n: client(url, f"l{n}", publish=False) for n, url in urls.items()}
        for listener in listeners.values():
            await listener.connect()
            assert listener.joined["role"] == "listener"

        # every listener, on every node, decodes both voices; host and speaker hear each other
        for listener in listeners.values():
            await hears(listener, {440.0, 660.0}, 15)
        await hears(host, {660.0}, 10)
        await hears(speaker, {440.0}, 10)

        # the stage members of other nodes are announced by name, role and tracks (the
        # audience never is): c's listener sees the host (a) and the speaker (b); the host
        # got participant_joined for the speaker on b
        host_sid = host.joined["participant"]["sid"]
        speaker_sid = speaker.joined["participant"]["sid"]
        lc1 = listeners["c"]
        await lc1.wait_for(lambda: announced(lc1, host_sid, "host", "Ada Host", "host"), 5)
        seat = ("speaker", "speaker", "speaker")
        await lc1.wait_for(lambda: announced(lc1, speaker_sid, *seat), 5)
        await host.wait_for(lambda: announced(host, speaker_sid, *seat), 5)
        assert any(
            e.get("type") == "participant_joined" and e["participant"]["sid"] == speaker_sid
            for e in host.events
        )
        audience_sids = {lst.joined["participant"]["sid"] for lst in listeners.values()}
        for watcher in (lc1, host, speaker):
            assert not audience_sids & set(roster(watcher)), "a listener was announced"
        # a guest speaker joining b and leaving: c's listener gets joined, then left
        guest = client(b, "guest", role="speaker", name="Guest")
        await guest.connect()
        guest_sid = guest.joined["participant"]["sid"]
        await lc1.wait_for(
            lambda: any(
                e.get("type") == "participant_joined" and e["participant"]["sid"] == guest_sid
                for e in lc1.events
            ),
            5,
        )
        assert roster(lc1)[guest_sid]["name"] == "Guest"
        await guest.close()
        await lc1.wait_for(lambda: has(lc1, "participant_left", participant=guest_sid), 5)

        # stage settings and knocks cross nodes: the host on a shows video to listeners and
        # c's listener is told; with the waiting room on, a newcomer on c knocks, the host on
        # a gets the knock and lets it in from a
        await host.request({"type": "set_stage_video", "enabled": True})
        await lc1.wait_for(lambda: has(lc1, "stage_settings", video=True), 5)
        await host.request({"type": "set_stage_video", "enabled": False})
        await host.request({"type": "set_waiting_room", "enabled": True})
        await lc1.wait_for(lambda: has(lc1, "stage_settings", waiting_room=True), 5)
        knocker = client(c, "knocker", publish=False)
        knocking = asyncio.ensure_future(knocker.connect())
        await host.wait_for(lambda: has(host, "knock", identity="knocker"), 5)
        knock = next(e["knock"] for e in host.events if e.get("type") == "knock")
        assert not knocking.done()
        await host.request({"type": "respond_knock", "knock": knock, "admit": True})
        await asyncio.wait_for(knocking, 10)
        assert knocker.joined["participant"]["identity"] == "knocker"
        await host.wait_for(lambda: has(host, "knock_resolved", knock=knock, outcome="admitted"), 5)
        await host.request({"type": "set_waiting_room", "enabled": False})
        await lc1.wait_for(lambda: settings(lc1) == dict.fromkeys(SETTINGS, False), 5)
        await knocker.close()

        # a listener on c promoted to speaker (relayed through the origin) is heard everywhere
        promoted = listeners["c"]
        promoted_sid = promoted.joined["participant"]["sid"]
        await promoted.request({"type": "raise_hand", "raised": True})  # addressable from a
        await host.wait_for(
            lambda: any(
                e.get("type") == "hands" and promoted_sid in {m["sid"] for m in e["queue"]}
                for e in host.events
            ),
            10,
        )
        await host.request(
            {
                "type": "set_role",
                "participant": promoted.joined["participant"]["sid"],
                "role": "speaker",
            }
        )
        await promoted.wait_for(lambda: has(promoted, "role_changed", role="speaker"), 10)
        await promoted.publish([ToneTrack(880.0)])
        for listener in (listeners["a"], listeners["b"]):
            await hears(listener, {440.0, 660.0, 880.0}, 15)
        await hears(host, {660.0, 880.0}, 10)

        # Redis lost for longer than a node's death takes to be noticed: the pipes that are
        # up keep flowing (the same tracks go on decoding); then Redis is back
        lb = listeners["b"]
        before = dict(lb.received)
        REDIS["server"].stop()
        await asyncio.sleep(7)  # > DEAD_AFTER_S (6 s)
        await hears(lb, {440.0, 660.0, 880.0}, 5)
        REDIS["server"].restart()
        await asyncio.sleep(3)  # the nodes register again, summaries come back
        await hears(lb, {440.0, 660.0, 880.0}, 5)
        assert lb.received == before  # no subscription was replaced

        # a second listener on c, to outlive the origin's death with its consumers
        lc = client(c, "lc2", publish=False)
        await lc.connect()
        await hears(lc, {440.0, 660.0}, 15)
        host_track = next(
            t
            for t in lc.received.values()
            if t.participant != speaker.joined["participant"]["sid"]
            and t.kind == "audio"
            and t.participant != promoted.joined["participant"]["sid"]
        )

        # kill -9 of the origin a: the host reconnects to b and publishes there; lc2 on c
        # keeps its consumer of the host's track and hears the host again within 10 s
        host.alternates = [b]
        host.auto_reconnect = True
        killed = time.monotonic()
        nodes["a"].process.send_signal(signal.SIGKILL)
        nodes["a"].process.wait(5)
        await host.wait_for(lambda: host.reconnects == ["rejoined"], 10)
        assert host.url == b and host.joined["role"] == "host"  # the host seat is intact
        assert host_track.track is not None
        samples_at = time.monotonic()
        for _ in range(50):  # bounded: until the same track decodes the host again
            if await _frequency(host_track.track) is not None:
                break
            assert time.monotonic() - killed < 10, "the host's voice did not come back"
        assert abs((await _frequency(host_track.track) or 0) - 440.0) < 20
        back = time.monotonic() - killed
        # the same subscription: the track (and its m-line) was never replaced on c
        assert lc.received.get(host_track.track_sid) is host_track
        print(
            f"origin kill -9 -> host heard again on c (same consumer): {back:.1f} s "
            f"({samples_at - killed:.1f} s to rejoin)"
        )
        assert back < 10
        # the stage is intact: the promotion is remembered (a rejoin of c's speaker is one)
        await hears(lc, {440.0, 660.0, 880.0}, 10)
        # c's listener saw the host leave with node a and come back, by name, on b
        new_host_sid = host.joined["participant"]["sid"]
        await lc.wait_for(lambda: has(lc, "participant_left", participant=host_sid), 10)
        await lc.wait_for(lambda: announced(lc, new_host_sid, "host", "Ada Host", "host"), 5)

        # kill -9 of c: its listener reconnects to b and hears the room again within 10 s
        lc.alternates = [b]
        lc.auto_reconnect = True
        killed = time.monotonic()
        nodes["c"].process.send_signal(signal.SIGKILL)
        nodes["c"].process.wait(5)
        await lc.wait_for(lambda: lc.reconnects == ["rejoined"], 10)
        await hears(lc, {440.0, 660.0}, 10)
        back = time.monotonic() - killed
        print(f"node kill -9 -> its listener hears the room on b: {back:.1f} s")
        assert back < 10 and lc.url == b
    finally:
        for made in clients:
            try:
                await asyncio.wait_for(made.close(), 5)
            except Exception:
                pass
