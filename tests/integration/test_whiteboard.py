"""The collaborative whiteboard: live strokes, late joiners, undo, clear, persistence, limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from signaling.app import create_app
from signaling.auth.ratelimit import SlidingWindowLimiter
from signaling.client import RoomClient, SignalingError
from signaling.settings import Settings
from signaling.whiteboard import BOARD, STROKE_LIMIT, STROKE_WINDOW_S
from tests.integration.conftest import MakeToken


class Board:
    """A running server whose app the test can reach; ``client()`` makes participants."""

    def __init__(self, server: TestServer, make_token: MakeToken) -> None:
        self.server = server
        self.make_token = make_token
        self.url = str(server.make_url("")).rstrip("/")
        self.clients: list[RoomClient] = []

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def client(
        self, room: str, identity: str, *, admin: bool = False, data: bool = True
    ) -> RoomClient:
        client = RoomClient(
            self.url,
            room,
            identity,
            token=self.make_token(room, identity, admin=admin, data=data),
            subscribe=False,
        )
        self.clients.append(client)
        await client.connect()
        await client.wait_for(lambda: "board_state" in client.message_types, timeout=10)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.server.close()


async def serve(settings: Settings, make_token: MakeToken) -> Board:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    return Board(server, make_token)


@pytest.fixture
async def board(sfu_settings: Settings, make_token: MakeToken) -> AsyncIterator[Board]:
    running = await serve(sfu_settings, make_token)
    try:
        yield running
    finally:
        await running.close()


def events(client: RoomClient, kind: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == kind]


def state(client: RoomClient) -> list[tuple[str, str, list[list[float]]]]:
    (board_state,) = events(client, "board_state")
    return [
        (s["identity"], s["stroke"]["id"], s["stroke"]["points"]) for s in board_state["strokes"]
    ]


def stroke(stroke_id: str, points: list[list[float]], **style: Any) -> dict[str, Any]:
    return {"type": "board_stroke", "stroke": {"id": stroke_id, "points": points, **style}}


async def test_strokes_reach_everyone_and_a_late_joiner_gets_the_board(board: Board) -> None:
    alice = await board.client("art", "alice")
    bob = await board.client("art", "bob")
    assert state(bob) == []
    alice_sid = alice.joined["participant"]["sid"]

    part = {"id": "a1", "color": "#FF0000", "width": 6, "points": [[10, 20], [30.04, 40.06]]}
    await alice.request({"type": "board_stroke_part", "stroke": part})
    await bob.wait_for(lambda: len(events(bob, "board_stroke_part")) == 1, timeout=5)
    (live,) = events(bob, "board_stroke_part")
    assert live["participant"] == alice_sid and live["identity"] == "alice"
    assert live["stroke"] == {
        "id": "a1",
        "tool": "pen",
        "color": "#ff0000",
        "width": 6.0,
        "points": [[10.0, 20.0], [30.0, 40.1]],
    }

    a1 = [[10, 20], [30.04, 40.06], [1600, 900], [0, 0]]
    await alice.request(stroke("a1", a1, color="#FF0000", width=6))
    await bob.request(stroke("b1", [[5.5, 6.5]], tool="eraser", width=64))
    await alice.request(stroke("a2", [[100, 100], [200, 200]]))
    expected = [
        ("alice", "a1", [[10.0, 20.0], [30.0, 40.1], [1600.0, 900.0], [0.0, 0.0]]),
        ("bob", "b1", [[5.5, 6.5]]),
        ("alice", "a2", [[100.0, 100.0], [200.0, 200.0]]),
    ]
    for client in (alice, bob):  # the author gets its own strokes back, in board order
        await client.wait_for(lambda c=client: len(events(c, "board_stroke")) == 3, timeout=5)
        got = [
            (e["identity"], e["stroke"]["id"], e["stroke"]["points"])
            for e in events(client, "board_stroke")
        ]
        assert got == expected
    assert events(alice, "board_stroke_part") == []  # parts never echo to their author
    assert events(bob, "board_stroke")[1]["stroke"]["tool"] == "eraser"

    carol = await board.client("art", "carol")
    assert state(carol) == expected
    (carol_state,) = events(carol, "board_state")
    assert carol_state["strokes"][0]["stroke"]["color"] == "#ff0000"
    assert carol_state["strokes"][0]["participant"] == alice_sid
    assert (carol_state["can_draw"], carol_state["can_clear"]) == (True, False)
    assert carol.message_types.index("joined") < carol.message_types.index("board_state")
    other = await board.client("elsewhere", "dave")  # boards are per room
    assert state(other) == []


async def test_undo_removes_only_ones_own_last_stroke(board: Board) -> None:
    alice = await board.client("undo", "alice")
    bob = await board.client("undo", "bob")
    for request in (
        stroke("a1", [[1, 1]]),
        stroke("a2", [[2, 2]]),
    ):
        await alice.request(request)
    await bob.request(stroke("b1", [[3, 3]]))
    await alice.request(stroke("a3", [[4, 4]]))

    await bob.request({"type": "board_undo"})  # bob's last stroke, although a3 is newer
    for client in (alice, bob):
        await client.wait_for(lambda c=client: len(events(c, "board_undo")) == 1, timeout=5)
        (undo,) = events(client, "board_undo")
        assert (undo["identity"], undo["stroke_id"]) == ("bob", "b1")
        assert undo["participant"] == bob.joined["participant"]["sid"]
    with pytest.raises(SignalingError) as excinfo:  # nothing of bob's is left: alice's stay
        await bob.request({"type": "board_undo"})
    assert excinfo.value.code == "not_found"
    with pytest.raises(SignalingError) as excinfo:  # no way to name someone else's stroke
        await bob.request({"type": "board_undo", "stroke_id": "a3"})
    assert excinfo.value.code == "bad_request"
    await alice.request({"type": "board_undo"})

    viewer = await board.client("undo", "viewer", data=False)
    assert [(i, s) for i, s, _ in state(viewer)] == [("alice", "a1"), ("alice", "a2")]
    (viewer_state,) = events(viewer, "board_state")
    assert viewer_state["can_draw"] is False
    for request in (stroke("v1", [[1, 1]]), {"type": "board_undo"}):
        with pytest.raises(SignalingError) as excinfo:  # drawing needs canPublishData
            await viewer.request(request)
        assert excinfo.value.code == "forbidden"


async def test_clear_needs_room_admin(board: Board) -> None:
    alice = await board.client("wipe", "alice")
    host = await board.client("wipe", "host", admin=True)
    (host_state,) = events(host, "board_state")
    assert host_state["can_clear"] is True
    await alice.request(stroke("a1", [[1, 1]]))
    with pytest.raises(SignalingError) as excinfo:
        await alice.request({"type": "board_clear"})
    assert excinfo.value.code == "forbidden"
    await host.wait_for(lambda: len(events(host, "board_stroke")) == 1, timeout=5)
    assert events(host, "board_cleared") == []

    await host.request({"type": "board_clear"})
    for client in (alice, host):
        await client.wait_for(lambda c=client: len(events(c, "board_cleared")) == 1, timeout=5)
        assert events(client, "board_cleared") == [
            {"type": "board_cleared", "by": host.joined["participant"]["sid"]}
        ]
    late = await board.client("wipe", "late")
    assert state(late) == []
    await alice.request(stroke("a1", [[1, 1]]))  # the id is free again once cleared


async def test_the_board_is_stored_and_survives_a_restart(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    first = await serve(sfu_settings, make_token)
    try:
        writer = await first.client("kept", "writer")
        await writer.request(stroke("w1", [[1.25, 2.5], [3, 4]], color="#00AA00", width=2.5))
        await writer.request(stroke("w2", [[5, 6]], tool="eraser"))
        await writer.request(stroke("w3", [[7, 8]]))
        await writer.request({"type": "board_undo"})  # w3 is deleted from the store too
    finally:
        await first.close()
    second = await serve(sfu_settings, make_token)  # a new app (empty caches), the same MongoDB
    try:
        reader = await second.client("kept", "reader")
        (board_state,) = events(reader, "board_state")
        assert board_state["strokes"] == [
            {
                "stroke": {
                    "id": "w1",
                    "tool": "pen",
                    "color": "#00aa00",
                    "width": 2.5,
                    "points": [[1.2, 2.5], [3.0, 4.0]],
                },
                "participant": writer.joined["participant"]["sid"],
                "identity": "writer",
            },
            {
                "stroke": {
                    "id": "w2",
                    "tool": "eraser",
                    "color": "#000000",
                    "width": 4.0,
                    "points": [[5.0, 6.0]],
                },
                "participant": writer.joined["participant"]["sid"],
                "identity": "writer",
            },
        ]
        # Written after the restart: appended after the stored ones (order continues).
        await reader.request(stroke("r1", [[9, 9]]))
        store = second.app[BOARD].store
        assert store is not None
        stored = await store.load("kept")
        assert [(r.identity, r.stroke_id) for r in stored] == [
            ("writer", "w1"),
            ("writer", "w2"),
            ("reader", "r1"),
        ]
        assert [r.order for r in stored] == sorted({r.order for r in stored})
    finally:
        await second.close()


async def test_invalid_strokes_get_typed_errors_and_reach_nobody(board: Board) -> None:
    alice = await board.client("strict", "alice")
    bob = await board.client("strict", "bob")
    bad_strokes: list[dict[str, Any]] = [
        {"id": "c", "color": "red", "points": [[1, 1]]},
        {"id": "c", "color": "#12345g", "points": [[1, 1]]},
        {"id": "p", "points": [[1, 1]] * 2001},
        {"id": "w", "width": 0, "points": [[1, 1]]},
        {"id": "w", "width": 65, "points": [[1, 1]]},
        {"id": "r", "points": [[1601, 1]]},
        {"id": "r", "points": [[1, -1]]},
        {"id": "t", "tool": "bucket", "points": [[1, 1]]},
        {"id": "<img src=x onerror=alert(1)>", "points": [[1, 1]]},
    ]
    for kind in ("board_stroke", "board_stroke_part"):
        for bad in bad_strokes:
            with pytest.raises(SignalingError) as excinfo:
                await alice.request({"type": kind, "stroke": bad})
            assert excinfo.value.code == "bad_request", bad
            assert excinfo.value.message.startswith("stroke."), excinfo.value.message
    for literal in ("NaN", "Infinity", "-Infinity"):  # what a hostile client can still send
        raw = json.dumps({"type": "board_stroke", "id": literal, "stroke": {"id": "n"}})
        await alice.send_raw(raw.replace("}}", f', "points": [[{literal}, 1]]}}}}'))
    await alice.wait_for(lambda: len(alice.errors) == 3, timeout=5)
    assert [(e["ref"], e["code"]) for e in alice.errors] == [
        ("NaN", "bad_request"),
        ("Infinity", "bad_request"),
        ("-Infinity", "bad_request"),
    ]

    await alice.request(stroke("ok", [[1, 1]]))  # the session and the room go on
    await bob.wait_for(lambda: len(events(bob, "board_stroke")) == 1, timeout=5)
    board_events = [e for e in bob.events if e["type"].startswith("board_")]
    assert [e["type"] for e in board_events] == ["board_state", "board_stroke"]
    assert board_events[1]["stroke"]["id"] == "ok"


async def test_strokes_are_rate_limited_per_participant(board: Board) -> None:
    hub = board.app[BOARD]
    frozen = 1000.0  # a clock that does not move: the window never slides during the test
    hub.stroke_limiter = SlidingWindowLimiter(STROKE_LIMIT, STROKE_WINDOW_S, clock=lambda: frozen)
    fast = await board.client("busy", "fast")
    calm = await board.client("busy", "calm")
    for i in range(STROKE_LIMIT):
        await fast.request(stroke(f"s{i}", [[i, i]]))
    with pytest.raises(SignalingError) as excinfo:
        await fast.request(stroke("over", [[1, 1]]))
    assert excinfo.value.code == "rate_limited"
    await calm.request(stroke("calm", [[2, 2]]))  # the limit is per participant
    await calm.wait_for(lambda: len(events(calm, "board_stroke")) == STROKE_LIMIT + 1, timeout=10)
    ids = [e["stroke"]["id"] for e in events(calm, "board_stroke")]
    assert ids == [f"s{i}" for i in range(STROKE_LIMIT)] + ["calm"]


async def test_board_points_quota_per_identity_and_per_room(
    sfu_settings: Settings, make_token: MakeToken
) -> None:
    settings = sfu_settings.model_copy(
        update={"board_points_per_identity": 6, "board_max_points": 10}
    )
    running = await serve(settings, make_token)
    try:
        alice = await running.client("quota", "alice")
        bob = await running.client("quota", "bob")
        carol = await running.client("quota", "carol")
        four = [[1, 1], [2, 2], [3, 3], [4, 4]]
        await alice.request(stroke("a1", four))
        with pytest.raises(SignalingError) as excinfo:  # 4 + 4 > alice's 6 points
            await alice.request(stroke("a2", four))
        assert excinfo.value.code == "too_large" and "your share" in excinfo.value.message
        await alice.request(stroke("a2", [[5, 5], [6, 6]]))  # exactly her 6
        await bob.request(stroke("b1", four))  # others draw on: the room has 10 points
        with pytest.raises(SignalingError) as excinfo:  # the room is full for everyone
            await carol.request(stroke("c1", [[7, 7]]))
        assert excinfo.value.code == "too_large" and "board is full" in excinfo.value.message
        await alice.request({"type": "board_undo"})  # undo frees her share and the room's
        await carol.request(stroke("c1", [[7, 7]]))
        await carol.wait_for(lambda: len(events(carol, "board_stroke")) == 4, timeout=5)
        assert [e["stroke"]["id"] for e in events(carol, "board_stroke")] == [
            "a1",
            "a2",
            "b1",
            "c1",
        ]
    finally:
        await running.close()
