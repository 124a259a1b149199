"""The control process's pool of media worker processes.

:class:`WorkerPool` starts N ``python -m sfu.worker`` processes, each with one end of a
``socketpair`` as its channel (:mod:`sfu.worker.channel`), builds the same target in each
(``factory`` + ``config``, see :mod:`sfu.worker.process`), routes calls to a worker by index,
forwards the workers' notifications, restarts a worker that dies (at once the first time,
then with a bounded exponential backoff while it keeps dying young), samples each worker's
CPU time, resident memory and ``stats()`` counters every ``stats_interval_s``, and on
:meth:`WorkerPool.close` SIGTERMs every worker and reaps it (SIGKILL after ``term_grace_s``).

No orphan: a worker exits when the control process dies (``PR_SET_PDEATHSIG``) or when its
channel reaches EOF (the control process's end closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sfu.plane.types import WorkerInfo
from sfu.worker.channel import DEFAULT_TIMEOUT_S, MAX_FRAME_BYTES, Channel, Codec
from sfu.worker.errors import ChannelError, WorkerCrashedError, WorkerStartError
from sfu.worker.process import SYS_INIT, SYS_STATS

logger = logging.getLogger(__name__)

NotificationCallback = Callable[[int, str, Any], None]
"""``(worker_index, event, data)``: one notification a worker's target emitted."""
WorkerCallback = Callable[[int], Awaitable[None] | None]
"""``(worker_index)``: a worker died / is back (sync or async)."""

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class WorkerStats:
    """One worker's latest sample.

    ``cpu_seconds`` is user + system CPU time (s) summed over every process that held this
    index (monotonic across restarts, a Prometheus counter); ``rss_bytes`` the current
    process's resident memory (bytes, 0 while down); ``counters`` what the target's
    ``stats()`` last returned (``{}`` before the first sample or while down);
    ``restarts`` how many times the worker was started again after its first start;
    ``sampled_at`` the ``time.monotonic()`` of the sample (0.0 before the first)."""

    index: int
    pid: int | None = None
    up: bool = False
    restarts: int = 0
    cpu_seconds: float = 0.0
    rss_bytes: int = 0
    counters: dict[str, Any] = field(default_factory=dict)
    sampled_at: float = 0.0


def read_proc_usage(pid: int) -> tuple[float, int] | None:
    """``(cpu_seconds, rss_bytes)`` of process ``pid`` from ``/proc/<pid>/stat`` (utime +
    stime, proc(5)) and ``/proc/<pid>/statm``; None when it is gone or not Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
        with open(f"/proc/{pid}/statm", "rb") as statm_file:
            statm = statm_file.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime: fields 14, 15
        rss = int(statm.split()[1]) * _PAGE_SIZE
    except (IndexError, ValueError):
        return None
    return cpu, rss


class _Slot:
    """One worker index: its current process and channel, and its history."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.up = False
        self.started_at = 0.0
        self.young_deaths = 0
        self.cpu_base = 0.0  # CPU seconds of the processes that held this index before
        self.cpu_now = 0.0  # CPU seconds of the current process (last sample)
        self.stats = WorkerStats(index)
        self.supervisor: asyncio.Task[None] | None = None


class WorkerPool:
    """N media worker processes, driven from the control process's event loop.

    Arguments:
        factory: ``"package.module:attribute"`` of the target factory each worker calls as
            ``factory(config, context)`` (:mod:`sfu.worker.process`).
        config: a plain dict (msgpack values) handed to every worker's factory.
        workers: how many worker processes (>= 1).
        codec: ``"module:attribute"`` of a :class:`Codec` (an instance, or a class built
            with no arguments) used by both ends; None: plain msgpack values only.
        on_notification: ``(index, event, data)`` for each notification a worker emits.
        on_worker_died: ``(index)`` as soon as a worker is seen dead (its pending calls have
            failed with :class:`WorkerCrashedError`); sync or async.
        on_worker_restarted: ``(index)`` once a replacement process has built its target and
            answers calls (its state is new: the caller tells that worker's participants to
            reconnect); sync or async.
        call_timeout_s: default per-call timeout (s).
        start_timeout_s: longest a worker may take from spawn to a built target (s).
        stats_interval_s: period of the CPU / memory / ``stats()`` samples (s).
        term_grace_s: on :meth:`close`, how long after SIGTERM before SIGKILL (s).
        restart_max_delay_s: cap of the restart backoff (s). A worker that dies within
            ``stable_after_s`` of its start is restarted after 0, 0.25, 0.5, 1 ... s (doubling
            per consecutive young death, at most this cap); one that lived longer at once.
        max_frame_bytes: the channel's frame limit (bytes), both ends.
        log_level: the workers' log level (``debug``, ``info``, ``warning``).
        python: the interpreter that runs the workers.
        env: environment of the workers (default: this process's).
    """

    def __init__(
        self,
        factory: str,
        config: Mapping[str, Any] | None = None,
        *,
        workers: int,
        codec: str | None = None,
        on_notification: NotificationCallback | None = None,
        on_worker_died: WorkerCallback | None = None,
        on_worker_restarted: WorkerCallback | None = None,
        call_timeout_s: float = DEFAULT_TIMEOUT_S,
        start_timeout_s: float = 15.0,
        stats_interval_s: float = 1.0,
        term_grace_s: float = 3.0,
        restart_max_delay_s: float = 5.0,
        stable_after_s: float = 10.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        log_level: str = "warning",
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a WorkerPool needs at least one worker")
        self.factory = factory
        self.config = dict(config or {})
        self.codec_path = codec
        self.codec: Codec | None = None
        if codec is not None:
            from sfu.worker.process import import_object

            codec_obj = import_object(codec)
            self.codec = codec_obj() if isinstance(codec_obj, type) else codec_obj
        self.on_notification = on_notification
        self.on_worker_died = on_worker_died
        self.on_worker_restarted = on_worker_restarted
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self.stats_interval_s = stats_interval_s
        self.term_grace_s = term_grace_s
        self.restart_max_delay_s = restart_max_delay_s
        self.stable_after_s = stable_after_s
        self.max_frame_bytes = max_frame_bytes
        self.log_level = log_level
        self.python = python
        self.env = dict(env) if env is not None else None
        self._slots = [_Slot(index) for index in range(workers)]
        self._closing = False
        self._started = False
        self._stats_task: asyncio.Task[None] | None = None

    # --- public API ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every worker and wait until each has built its target.

        Raises :class:`WorkerStartError` (after stopping every worker it started) when one
        exits or does not answer within ``start_timeout_s``."""
        if self._started:
            raise RuntimeError("WorkerPool.start() called twice")
        self._started = True
        results = await asyncio.gather(
            *(self._spawn(slot) for slot in self._slots), return_exceptions=True
        )
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            await self.close()
            error = failed[0]
            if isinstance(error, WorkerStartError):
                raise error
            raise WorkerStartError(f"a worker did not start: {error!r}") from error
        for slot in self._slots:
            slot.supervisor = asyncio.ensure_future(self._supervise(slot))
        self._stats_task = asyncio.ensure_future(self._sample_loop())

    async def call(
        self, index: int, method: str, *args: Any, timeout_s: float | None = None
    ) -> Any:
        """Call ``method(*args)`` on worker ``index``'s target and return the result.

        Raises ``IndexError`` for an index outside ``0..len(pool)-1``,
        :class:`WorkerCrashedError` when that worker is down or dies before it answers,
        :class:`CallTimeoutError` after ``timeout_s`` (default ``call_timeout_s``), and the
        :mod:`sfu.errors` class the method raised (see :mod:`sfu.worker.errors`)."""
        slot = self._slots[index]
        channel = slot.channel
        if not slot.up or channel is None or channel.closed:
            raise WorkerCrashedError(f"worker {index} is down")
        return await channel.call(
            method, *args, timeout_s=self.call_timeout_s if timeout_s is None else timeout_s
        )

    def notify(self, index: int, event: str, data: Any = None) -> None:
        """Send notification ``event`` to worker ``index``'s target (its
        ``on_notification``). Raises :class:`WorkerCrashedError` when that worker is down."""
        slot = self._slots[index]
        if not slot.up or slot.channel is None or slot.channel.closed:
            raise WorkerCrashedError(f"worker {index} is down")
        slot.channel.notify(event, data)

    def is_up(self, index: int) -> bool:
        """True while worker ``index`` has a live process that has built its target."""
        return self._slots[index].up

    def pid(self, index: int) -> int | None:
        """Process id of worker ``index``'s current process (None while none)."""
        process = self._slots[index].process
        return process.pid if process is not None and process.returncode is None else None

    def worker_infos(self) -> tuple[WorkerInfo, ...]:
        """The latest sample of every worker as the media plane's
        :class:`~sfu.plane.types.WorkerInfo` (what ``PlaneStats.workers`` carries to
        ``/metrics``); integer counters only."""
        return tuple(
            WorkerInfo(
                index=s.index,
                pid=s.pid,
                up=s.up,
                restarts=s.restarts,
                cpu_seconds=s.cpu_seconds,
                rss_bytes=s.rss_bytes,
                counters={k: v for k, v in s.counters.items() if isinstance(v, int)},
            )
            for s in self.stats()
        )

    def stats(self) -> list[WorkerStats]:
        """The latest :class:`WorkerStats` of every worker, by index (copies)."""
        result = []
        for slot in self._slots:
            stats = slot.stats
            stats.up = slot.up
            stats.pid = self.pid(slot.index)
            stats.cpu_seconds = slot.cpu_base + slot.cpu_now
            result.append(
                WorkerStats(
                    index=stats.index,
                    pid=stats.pid,
                    up=stats.up,
                    restarts=stats.restarts,
                    cpu_seconds=stats.cpu_seconds,
                    rss_bytes=stats.rss_bytes if slot.up else 0,
                    counters=dict(stats.counters),
                    sampled_at=stats.sampled_at,
                )
            )
        return result

    async def close(self) -> None:
        """Stop every worker: SIGTERM (the worker closes its target and exits 0), SIGKILL
        after ``term_grace_s`` for any still running, reap each. Idempotent; no worker
        process is left when it returns."""
        self._closing = True
        if self._stats_task is not None:
            self._stats_task.cancel()
        supervisors = [slot.supervisor for slot in self._slots if slot.supervisor is not None]
        for task in supervisors:
            task.cancel()
        if supervisors:
            await asyncio.gather(*supervisors, return_exceptions=True)
        for slot in self._slots:
            slot.up = False
            _signal(slot.process, signal.SIGTERM)
        waits = [
            asyncio.ensure_future(slot.process.wait())
            for slot in self._slots
            if slot.process is not None
        ]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=self.term_grace_s)
            if pending:
                for slot in self._slots:
                    if slot.process is not None and slot.process.returncode is None:
                        logger.warning(
                            "worker %d (pid %d) ignored SIGTERM: SIGKILL",
                            slot.index,
                            slot.process.pid,
                        )
                        _signal(slot.process, signal.SIGKILL)
                await asyncio.wait(pending)
        for slot in self._slots:
            if slot.channel is not None:
                await slot.channel.close(WorkerCrashedError(f"worker {slot.index} stopped"))

    # --- workers ------------------------------------------------------------------------

    async def _spawn(self, slot: _Slot) -> None:
        """Start a process for ``slot`` and build its target; raises WorkerStartError."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child_fd = child_sock.fileno()
            slot.process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "sfu.worker",
                "--fd",
                str(child_fd),
                "--parent-pid",
                str(os.getpid()),
                "--max-frame-bytes",
                str(self.max_frame_bytes),
                "--log-level",
                self.log_level,
                *(["--codec", self.codec_path] if self.codec_path else []),
                pass_fds=(child_fd,),
                stdin=asyncio.subprocess.DEVNULL,
                env=self.env,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        slot.started_at = time.monotonic()
        process = slot.process
        try:
            slot.channel = await Channel.open(
                parent_sock,
                on_notification=lambda event, data: self._notified(slot.index, event, data),
                codec=self.codec,
                max_frame_bytes=self.max_frame_bytes,
                timeout_s=self.call_timeout_s,
                eof_error=WorkerCrashedError,
                name=f"worker {slot.index}",
            )
            await slot.channel.call(
                SYS_INIT,
                self.factory,
                self.config,
                slot.index,
                timeout_s=self.start_timeout_s,
            )
        except BaseException as exc:
            _signal(process, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            if slot.channel is not None:
                await slot.channel.close()
            if isinstance(exc, ChannelError | OSError):
                raise WorkerStartError(f"worker {slot.index} did not start: {exc}") from exc
            raise
        slot.up = True
        slot.cpu_now = 0.0
        slot.stats.counters = {}
        logger.info("worker %d started (pid %d)", slot.index, process.pid)

    def _notified(self, index: int, event: str, data: Any) -> None:
        if self.on_notification is not None:
            self.on_notification(index, event, data)

    async def _supervise(self, slot: _Slot) -> None:
        """Wait for the worker to die, then start it again (bounded backoff) until close.
        ``on_worker_died`` runs once per death of a worker that was up; a replacement that
        fails to start is retried, later each time, without calling it again."""
        while not self._closing:
            process = slot.process
            if process is not None:
                await process.wait()
            if self._closing:
                return
            was_up = slot.up
            slot.up = False
            slot.cpu_base += slot.cpu_now
            slot.cpu_now = 0.0
            if slot.channel is not None:
                await slot.channel.close(WorkerCrashedError(f"worker {slot.index} died"))
            slot.process = None
            if was_up and process is not None:
                logger.warning(
                    "worker %d (pid %d) died (exit status %s)",
                    slot.index,
                    process.pid,
                    process.returncode,
                )
                await _run_callback(self.on_worker_died, slot.index, "on_worker_died")
            lived = time.monotonic() - slot.started_at
            slot.young_deaths = slot.young_deaths + 1 if lived < self.stable_after_s else 1
            delay = restart_delay(slot.young_deaths, self.restart_max_delay_s)
            if delay:
                logger.warning("worker %d: restarting in %.2f s", slot.index, delay)
                await asyncio.sleep(delay)
            if self._closing:
                return
            slot.stats.restarts += 1
            try:
                await self._spawn(slot)
            except WorkerStartError as exc:
                logger.error("%s", exc)
                slot.process = None
                slot.started_at = time.monotonic()
                continue
            await _run_callback(self.on_worker_restarted, slot.index, "on_worker_restarted")

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            await asyncio.gather(*(self._sample(slot) for slot in self._slots if slot.up))

    async def _sample(self, slot: _Slot) -> None:
        process, channel = slot.process, slot.channel
        if process is None or channel is None:
            return
        usage = read_proc_usage(process.pid)
        if usage is not None:
            slot.cpu_now, slot.stats.rss_bytes = usage
        try:
            counters = await channel.call(SYS_STATS, timeout_s=self.stats_interval_s)
        except ChannelError as exc:
            logger.debug("worker %d: no stats: %s", slot.index, exc)
        except Exception:
            logger.exception("worker %d: stats() failed", slot.index)
        else:
            if isinstance(counters, dict) and slot.process is process:
                slot.stats.counters = counters
        slot.stats.sampled_at = time.monotonic()


def restart_delay(young_deaths: int, max_delay_s: float) -> float:
    """Seconds to wait before restarting a worker that died ``young_deaths`` times in a row
    soon after its start: 0 for the first, then 0.25, 0.5, 1, 2 ... capped at
    ``max_delay_s``."""
    if young_deaths <= 1:
        return 0.0
    return float(min(max_delay_s, 0.25 * 2 ** min(young_deaths - 2, 30)))


def _signal(process: asyncio.subprocess.Process | None, signum: int) -> None:
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


async def _run_callback(callback: WorkerCallback | None, index: int, what: str) -> None:
    if callback is None:
        return
    try:
        result = callback(index)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("%s(%d) failed", what, index)
