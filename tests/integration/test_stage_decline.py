"""A declined invitation to the stage tells the host and the moderators (issue 16).

``respond_invite`` with ``accept: false`` sends ``invite_declined`` (the listener's sid and
name, and who invited them) to the host and every moderator, and to nobody else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from signaling.client import RoomClient


def _events(client: RoomClient, kind: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == kind]


def _sid(client: RoomClient) -> str:
    return str(client.joined["participant"]["sid"])


async def test_a_declined_invitation_tells_the_host_and_moderators(
    room_client: Callable[..., RoomClient],
) -> None:
    def make(identity: str, role: str, **kwargs: Any) -> RoomClient:
        return room_client(
            "decline",
            identity,
            kind="podcast",
            role=role,
            admin=role == "host",
            publish=role != "listener",
            **kwargs,
        )

    host, mod, speaker = make("host", "host"), make("mod", "moderator"), make("sam", "speaker")
    shy, other = make("shy", "listener"), make("other", "listener")
    clients = (host, mod, speaker, shy, other)
    try:
        for each in clients:
            await each.connect()
        await mod.request({"type": "invite_to_stage", "participant": _sid(shy)})
        await shy.wait_for(lambda: bool(_events(shy, "stage_invite")))
        await shy.request({"type": "respond_invite", "accept": False})
        for admin in (host, mod):
            await admin.wait_for(lambda a=admin: bool(_events(a, "invite_declined")))  # type: ignore[misc]
            [event] = _events(admin, "invite_declined")
            assert event == {
                "type": "invite_declined",
                "participant": _sid(shy),
                "name": "shy",
                "by": _sid(mod),
            }
        # Still a listener; the speaker and the other listeners hear nothing of it.
        await shy.request({"type": "ping"})
        assert not _events(shy, "role_changed")
        await asyncio.sleep(0.2)  # let any stray broadcast arrive before looking
        for each in (speaker, shy, other):
            assert not _events(each, "invite_declined")
    finally:
        for each in reversed(clients):
            await each.close()
