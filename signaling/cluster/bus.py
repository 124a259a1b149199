"""Redis pub/sub for one node: its request channel and the channels of its rooms, plus
request/reply calls to other nodes over them (docs/cluster.md "Messages").

Every message is a JSON object with ``k`` (its kind) and ``from`` (the sending node id). A
call is ``{"k": "call", "id", "from", "method", "args"}`` on the callee's channel; the
callee answers ``{"k": "reply", "id", "ok", "result" | "error": {"code", "message",
"reason"}}`` on the caller's channel. The listener reconnects by itself after Redis is lost
and subscribes again to every channel it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from signaling import protocol as p
from signaling.cluster import keys

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 3.0
"""How long a call to another node waits for its reply (seconds)."""

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
"""``handler(channel, message)`` for every message received."""


def unavailable(message: str, reason: str = "cluster_unreachable") -> p.ProtocolError:
    """The typed error of a cross-node operation that cannot be done now."""
    return p.ProtocolError(p.ErrorCode.UNAVAILABLE, message, reason=reason)


class Bus:
    """Subscriptions and calls of one node.

    Args:
        redis: the node's client; node_id: this node; on_message: called for every message
            that is not a reply (room events and calls); on_link: called with True once
            subscribed after a (re)connection and with False when the link is lost.
    """

    def __init__(
        self,
        redis: Redis,
        node_id: str,
        on_message: Handler,
        on_link: Callable[[bool], None],
    ) -> None:
        self.redis = redis
        self.node_id = node_id
        self.channel = keys.node_channel(node_id)
        self.rooms: set[str] = set()  # rooms whose channel we want
        self._on_message = on_message
        self._on_link = on_link
        self._pubsub: PubSub | None = None
        self._calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start listening (reconnecting until :meth:`close`)."""
        self._task = asyncio.ensure_future(self._listen())

    async def close(self) -> None:
        """Stop listening; pending calls fail."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for future in self._calls.values():
            if not future.done():
                future.set_exception(unavailable("node shutting down"))

    async def _listen(self) -> None:
        while not self._closing:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel, *(keys.room_channel(r) for r in self.rooms))
                self._pubsub = pubsub
                self._on_link(True)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        await self._dispatch(str(message["channel"]), message["data"])
            except (RedisError, OSError) as exc:
                logger.warning("cluster: Redis pub/sub lost (%s); retrying", exc)
            finally:
                self._pubsub = None
                if not self._closing:
                    self._on_link(False)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(0.5)

    async def _dispatch(self, channel: str, data: str | bytes) -> None:
        try:
            message = json.loads(data)
            if not isinstance(message, dict):
                return
        except ValueError:
            logger.warning("cluster: unreadable message on %s", channel)
            return
        if message.get("k") == "reply":
            future = self._calls.pop(str(message.get("id")), None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        try:
            await self._on_message(channel, message)
        except Exception:
            logger.exception("cluster: handling %s on %s failed", message.get("k"), channel)

    async def follow(self, room: str) -> None:
        """Subscribe to ``room``'s channel (now when connected, else at the reconnection)."""
        if room in self.rooms:
            return
        self.rooms.add(room)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.subscribe(keys.room_channel(room))

    async def unfollow(self, room: str) -> None:
        """Unsubscribe from ``room``'s channel."""
        self.rooms.discard(room)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(keys.room_channel(room))

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Publish ``message`` (``from`` is added); returns how many nodes received it.

        Raises: ``redis.exceptions.RedisError`` when Redis is unreachable.
        """
        received: int = await self.redis.publish(
            channel, json.dumps({**message, "from": self.node_id})
        )
        return received

    async def call(
        self, node_id: str, method: str, args: dict[str, Any], timeout: float = CALL_TIMEOUT_S
    ) -> dict[str, Any]:
        """Call ``method`` on ``node_id``; returns its result.

        Raises:
            ProtocolError: the callee's typed error, or ``unavailable`` (reason
                ``cluster_unreachable``) when Redis is unreachable, the node is not listening
                or does not answer within ``timeout`` seconds.
        """
        call_id = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            message = {"k": "call", "id": call_id, "method": method, "args": args}
            try:
                received = await self.publish(keys.node_channel(node_id), message)
            except (RedisError, OSError):
                raise unavailable("the cluster is unreachable (Redis)") from None
            if received == 0:
                raise unavailable(f"node {node_id} is not reachable")
            try:
                reply = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise unavailable(f"node {node_id} did not answer") from None
        finally:
            self._calls.pop(call_id, None)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            try:
                code = p.ErrorCode(str(error.get("code")))
            except ValueError:
                code = p.ErrorCode.INTERNAL
            raise p.ProtocolError(code, str(error.get("message", "")), reason=error.get("reason"))
        result: dict[str, Any] = reply.get("result") or {}
        return result

    async def reply(
        self,
        to: str,
        call_id: str,
        result: dict[str, Any] | None = None,
        error: p.ProtocolError | None = None,
    ) -> None:
        """Answer a call from node ``to`` (errors are logged: the caller times out)."""
        message: dict[str, Any] = {"k": "reply", "id": call_id, "ok": error is None}
        if error is not None:
            message["error"] = {
                "code": error.code,
                "message": error.message,
                "reason": error.reason,
            }
        else:
            message["result"] = result or {}
        try:
            await self.publish(keys.node_channel(to), message)
        except (RedisError, OSError):
            logger.warning("cluster: could not reply to %s", to)
