"""Room access tokens for tests (the LiveKit-style JWT of ``signaling.auth.tokens``)."""

from __future__ import annotations

from signaling.auth.tokens import VideoGrant, create_access_token


def room_token(
    secret: str,
    room: str,
    identity: str,
    *,
    publish: bool = True,
    subscribe: bool = True,
    data: bool = True,
    ttl_s: int = 600,
    name: str | None = None,
    admin: bool = False,
    kind: str | None = None,
    role: str | None = None,
) -> str:
    """A token signed with ``secret`` that lets ``identity`` join ``room`` with these grants
    (``ttl_s``: seconds; ``name`` defaults to the identity; ``kind``/``role``: the podcast
    room's kind and the member's role, unchecked here so tests can send bad ones)."""
    token, _claims = create_access_token(
        secret,
        identity=identity,
        name=name or identity,
        ttl_s=ttl_s,
        video=VideoGrant(
            room=room,
            roomJoin=True,
            canPublish=publish,
            canSubscribe=subscribe,
            canPublishData=data,
            roomAdmin=admin,
            roomKind=kind,  # type: ignore[arg-type]
            role=role,  # type: ignore[arg-type]
        ),
    )
    return token
