"""Whiteboard: stroke validation (protocol) and the board hub without a store or network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from signaling import protocol as p
from signaling.auth.tokens import VideoGrant
from signaling.whiteboard import MAX_BOARD_POINTS, MAX_BOARD_STROKES, BoardHub

DRAW = VideoGrant(canPublishData=True)


def stroke_msg(**stroke: Any) -> dict[str, Any]:
    body = {"id": "s1", "tool": "pen", "color": "#112233", "width": 3, "points": [[1, 2]]}
    body.update(stroke)
    return {"type": "board_stroke", "id": "r1", "stroke": body}


def parse(message: dict[str, Any] | str) -> p.Request:
    return p.parse_request(message if isinstance(message, str) else json.dumps(message))


def test_a_valid_stroke_is_normalised() -> None:
    request = parse(
        stroke_msg(color="#AbCdEf", width=2.345, points=[[0, 0], [1599.96, 899.94], [10.04, 3]])
    )
    assert isinstance(request, p.BoardStrokeRequest)
    stroke = request.stroke
    assert stroke.color == "#abcdef"
    assert stroke.width == 2.3
    assert stroke.points == [(0.0, 0.0), (1600.0, 899.9), (10.0, 3.0)]
    assert all(isinstance(v, float) for point in stroke.points for v in point)
    part = parse({"type": "board_stroke_part", "stroke": {"id": "a-b_9", "points": [[5, 5]]}})
    assert isinstance(part, p.BoardStrokePartRequest)
    assert (part.stroke.tool, part.stroke.color, part.stroke.width) == ("pen", "#000000", 4.0)
    with pytest.raises(p.ProtocolError) as excinfo:  # live batches are small
        parse({"type": "board_stroke_part", "stroke": {"id": "a", "points": [[1, 1]] * 201}})
    assert excinfo.value.message.startswith("stroke:")
    assert isinstance(parse({"type": "board_undo"}), p.BoardUndoRequest)
    assert isinstance(parse({"type": "board_clear", "id": "x"}), p.BoardClearRequest)


@pytest.mark.parametrize(
    ("stroke", "where"),
    [
        ({"color": "red"}, "stroke.color"),
        ({"color": "#12345"}, "stroke.color"),
        ({"color": "#1234567"}, "stroke.color"),
        ({"tool": "laser"}, "stroke.tool"),
        ({"width": 0.5}, "stroke.width"),
        ({"width": 65}, "stroke.width"),
        ({"width": "3"}, "stroke.width"),
        ({"width": True}, "stroke.width"),
        ({"points": []}, "stroke.points"),
        ({"points": [[0, 0]] * (p.MAX_STROKE_POINTS + 1)}, "stroke.points"),
        ({"points": [[1600.1, 0]]}, "stroke.points.0.0"),
        ({"points": [[0, -0.1]]}, "stroke.points.0.1"),
        ({"points": [[0, 900.5]]}, "stroke.points.0.1"),
        ({"points": [[1, 2, 3]]}, "stroke.points.0"),
        ({"points": [[1]]}, "stroke.points.0.1"),
        ({"points": [["1", 2]]}, "stroke.points.0.0"),
        ({"points": [[False, 2]]}, "stroke.points.0.0"),
        ({"points": [{"x": 1, "y": 2}]}, "stroke.points.0"),
        ({"id": ""}, "stroke.id"),
        ({"id": "x" * 33}, "stroke.id"),
        ({"id": "<b>hi</b>"}, "stroke.id"),
        ({"html": "<script>"}, "stroke.html"),
    ],
)
def test_invalid_strokes_are_bad_requests(stroke: dict[str, Any], where: str) -> None:
    with pytest.raises(p.ProtocolError) as excinfo:
        parse(stroke_msg(**stroke))
    assert excinfo.value.code == p.ErrorCode.BAD_REQUEST
    assert excinfo.value.ref == "r1"
    assert excinfo.value.message.startswith(where + ":"), excinfo.value.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_coordinates_are_refused(literal: str) -> None:
    # Python's json module reads NaN and Infinity (browsers never send them; a hostile
    # client can), and 1e400 overflows to infinity.
    raw = json.dumps(stroke_msg()).replace("[[1, 2]]", f"[[{literal}, 2]]")
    assert literal in raw
    with pytest.raises(p.ProtocolError) as excinfo:
        parse(raw)
    assert excinfo.value.code == p.ErrorCode.BAD_REQUEST
    assert excinfo.value.message.startswith("stroke.points.0.0:")
    with pytest.raises(p.ProtocolError):
        parse(json.dumps(stroke_msg()).replace('"width": 3', f'"width": {literal}'))


def test_board_events_round_trip() -> None:
    stroke = p.Stroke(id="s1", points=[(1.0, 2.0)])
    for event in (
        p.BoardStrokeEvent(stroke=stroke, participant="PA_a", identity="alice"),
        p.BoardStrokePartEvent(stroke=stroke, participant="PA_a", identity="alice"),
        p.BoardUndoEvent(stroke_id="s1", identity="alice", participant="PA_a"),
        p.BoardClearedEvent(by="PA_a"),
        p.BoardStateEvent(
            strokes=[p.BoardItem(stroke=stroke, participant="PA_a", identity="alice")],
            can_draw=True,
            can_clear=False,
        ),
    ):
        assert p.parse_response(p.dump(event)) == event


def test_the_fullest_board_state_fits_in_a_4_mib_frame() -> None:
    # Worst case: every stroke as long, wide and precise as allowed, long ids and identities.
    per_stroke = MAX_BOARD_POINTS // MAX_BOARD_STROKES
    point = (1599.9, 899.9)
    strokes = [
        p.BoardItem.model_construct(
            stroke=p.Stroke.model_construct(
                id=f"{i:032d}",
                tool="eraser",
                color="#abcdef",
                width=63.9,
                points=[point] * per_stroke,
            ),
            participant="PA_" + "x" * 20,
            identity="i" * 256,  # the longest token subject
        )
        for i in range(MAX_BOARD_STROKES)
    ]
    event = p.BoardStateEvent.model_construct(
        type="board_state", strokes=strokes, can_draw=True, can_clear=True
    )
    assert len(p.dump(event).encode()) < 4 * 1024 * 1024


class FakeMember:
    def __init__(self) -> None:
        self.sent: list[BaseModel] = []

    def send(self, message: BaseModel) -> None:
        self.sent.append(message)

    def of(self, kind: type[BaseModel]) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


def stroke(stroke_id: str, n: int = 1) -> p.Stroke:
    return p.Stroke(id=stroke_id, points=[(float(i), 1.0) for i in range(n)])


async def test_hub_orders_undoes_by_identity_and_caps_the_board() -> None:
    hub = BoardHub(None, max_strokes=3, max_points=100)
    alice, bob = FakeMember(), FakeMember()
    await hub.join("r", alice, can_draw=True, can_clear=False)
    await hub.stroke("r", participant="PA_a", identity="alice", stroke=stroke("a1"))
    await hub.join("r", bob, can_draw=True, can_clear=True)
    (state,) = bob.of(p.BoardStateEvent)
    assert [i.stroke.id for i in state.strokes] == ["a1"]
    assert (state.can_draw, state.can_clear) == (True, True)
    await hub.stroke("r", participant="PA_b", identity="bob", stroke=stroke("b1"))
    with pytest.raises(p.ProtocolError) as excinfo:  # ids are unique per author and board
        await hub.stroke("r", participant="PA_b", identity="bob", stroke=stroke("b1"))
    assert excinfo.value.code == p.ErrorCode.BAD_REQUEST
    await hub.stroke("r", participant="PA_a", identity="alice", stroke=stroke("b1"))
    assert [e.stroke.id for e in alice.of(p.BoardStrokeEvent)] == ["a1", "b1", "b1"]
    with pytest.raises(p.ProtocolError) as excinfo:  # 3 strokes: full
        await hub.stroke("r", participant="PA_a", identity="alice", stroke=stroke("a3"))
    assert excinfo.value.code == p.ErrorCode.TOO_LARGE

    assert await hub.undo("r", participant="PA_b", identity="bob") == "b1"
    assert [(i.identity, i.stroke.id) for i in hub.strokes("r")] == [
        ("alice", "a1"),
        ("alice", "b1"),
    ]
    with pytest.raises(p.ProtocolError) as excinfo:
        await hub.undo("r", participant="PA_b", identity="bob")
    assert excinfo.value.code == p.ErrorCode.NOT_FOUND
    with pytest.raises(p.ProtocolError) as excinfo:  # 2 + 99 points > 100
        await hub.stroke("r", participant="PA_b", identity="bob", stroke=stroke("big", 99))
    assert excinfo.value.code == p.ErrorCode.TOO_LARGE
    await hub.stroke("r", participant="PA_b", identity="bob", stroke=stroke("big", 98))

    hub.stroke_part("r", alice, participant="PA_a", identity="alice", stroke=stroke("a9"))
    assert not alice.of(p.BoardStrokePartEvent)  # never echoed to the author
    assert [e.stroke.id for e in bob.of(p.BoardStrokePartEvent)] == ["a9"]

    assert await hub.clear("r", participant="PA_b", identity="bob") == 3
    assert hub.strokes("r") == []
    assert alice.of(p.BoardClearedEvent) == [p.BoardClearedEvent(by="PA_b")]
    hub.leave("r", alice)
    hub.leave("r", bob)
    hub.leave("r", bob)  # idempotent


async def test_hub_checks_grants() -> None:
    hub = BoardHub(None)
    member = FakeMember()
    await hub.join("r", member, can_draw=False, can_clear=False)
    requests: list[p.Request] = [
        p.BoardStrokeRequest(type="board_stroke", id="1", stroke=stroke("s")),
        p.BoardStrokePartRequest(type="board_stroke_part", id="2", stroke=stroke("s")),
        p.BoardUndoRequest(type="board_undo", id="3"),
        p.BoardClearRequest(type="board_clear", id="4"),
    ]
    for request in requests:
        with pytest.raises(p.ProtocolError) as excinfo:
            await hub.handle(
                member,
                room="r",
                participant="PA",
                identity="i",
                grants=VideoGrant(),
                request=request,
            )
        assert (excinfo.value.code, excinfo.value.ref) == (p.ErrorCode.FORBIDDEN, request.id)
    # roomAdmin alone may clear, but not draw
    admin = VideoGrant(roomAdmin=True)
    await hub.handle(
        member, room="r", participant="PA", identity="i", grants=admin, request=requests[3]
    )
    assert member.of(p.BoardClearedEvent) == [p.BoardClearedEvent(by="PA")]
