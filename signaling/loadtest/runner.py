"""The load test's parent process: starts the workers, samples the server, builds the report.

Phases: *joining* (until every worker has joined or failed all of its peers, bounded),
*steady* (``duration_s``), *draining* (publishers stop, one second later every worker sends
its final statistics and leaves). Ctrl-C (or ``interrupt`` being set) jumps to draining, so
a partial report is still produced. The server's ``/metrics`` is read every second; anything
missing there is reported as n/a.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue as queue_module
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from signaling.loadtest.config import LoadTestConfig, place
from signaling.loadtest.report import build_report

_RATE_KEYS = ("sent_bytes", "recv_bytes", "recv_packets", "expected", "cpu_s")
DRAIN_S = 1.0
FINAL_TIMEOUT_S = 30.0
SERVER_METRICS = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "sfu_packets_forwarded_total",
    "sfu_packets_received_total",
    "sfu_participants",
    "sfu_consumers",
    "sfu_send_dropped_total",
    "sfu_event_loop_lag_max_seconds",
)


class LoadTestError(Exception):
    """The load test could not run (e.g. the server is unreachable): one line for the user."""


def parse_metrics(text: str) -> dict[str, float]:
    """The unlabelled samples of :data:`SERVER_METRICS` in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in SERVER_METRICS and not sample.labels:
                    out[sample.name] = float(sample.value)
    except Exception:  # not Prometheus text: treat as missing
        return {}
    return out


async def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Raise :class:`LoadTestError` unless the server answers HTTP at ``url``."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(url.rstrip("/") + "/healthz") as resp:
                await resp.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LoadTestError(f"cannot reach the server at {url}: {reason}") from None


@dataclass
class Collected:
    """Everything the parent gathers while the test runs."""

    started: float = field(default_factory=time.monotonic)
    steady_start: float | None = None
    steady_end: float | None = None
    ticks: dict[int, dict[str, Any]] = field(default_factory=dict)  # latest per worker
    finals: dict[int, dict[str, Any]] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)
    join_times: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    new_latencies: list[float] = field(default_factory=list)
    steady_latencies: list[float] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    server: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    parent_cpu0: float = 0.0

    def total(self, key: str) -> float:
        """Sum of ``key`` over the latest tick of every worker."""
        return sum(float(t.get(key, 0)) for t in self.ticks.values())


class Runner:
    """Runs one load test (see the module docstring)."""

    def __init__(
        self,
        config: LoadTestConfig,
        *,
        progress: bool = True,
        interrupt: asyncio.Event | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.interrupt = interrupt or asyncio.Event()
        self.data = Collected()
        self.placements = place(config)
        self._rates: dict[int, dict[str, float]] = {}
        self.phase = "starting"

    # -- messages ----------------------------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        worker = int(message.get("worker", -1))
        kind = message.get("type")
        if kind == "tick":
            previous = self.data.ticks.get(worker)
            if previous is not None and message["t"] > previous["t"]:
                dt = message["t"] - previous["t"]
                self._rates[worker] = {
                    key: (message[key] - previous[key]) / dt for key in _RATE_KEYS
                }
                self._rates[worker]["at"] = message["t"]
            self.data.ticks[worker] = message
            self.data.join_times.extend(message["joins"])
            for reason in message["failures"]:
                self.data.failures[reason] = self.data.failures.get(reason, 0) + 1
            self.data.latencies.extend(message["latencies"])
            self.data.new_latencies.extend(message["latencies"])
            if self.phase == "steady":
                self.data.steady_latencies.extend(message["latencies"])
        elif kind == "final":
            self.data.finals[worker] = message
        elif kind == "closed":
            self.data.closed.add(worker)
        elif kind == "error":
            self.data.errors[worker] = str(message.get("message"))

    def _drain(self, q: Any) -> None:
        while True:
            try:
                message = q.get_nowait()
            except queue_module.Empty:
                return
            self._handle(message)

    # -- timeline ----------------------------------------------------------------------------

    def _sample(self) -> dict[str, Any]:
        """One timeline point (rates over the last second)."""
        now = time.monotonic()
        d = self.data
        point: dict[str, Any] = {
            "t_s": round(now - d.started, 2),
            "phase": self.phase,
            "joined": int(d.total("joined_listeners") + d.total("joined_publishers")),
            "failed": int(d.total("failed")),
            "sent_kbps": None,
            "received_kbps": None,
            "received_per_listener_kbps": None,
            "loss_pct": None,
            "latency_p50_ms": None,
            "latency_p99_ms": None,
            "tester_cpu_cores": None,
            "server_cpu_cores": None,
            "server_rss_mb": None,
        }
        # rates from each worker's own consecutive ticks (not this loop's clock)
        fresh = [r for r in self._rates.values() if now - r["at"] < 2.5]
        if fresh:
            total = {key: sum(r[key] for r in fresh) for key in _RATE_KEYS}
            point["sent_kbps"] = round(total["sent_bytes"] * 8 / 1e3, 1)
            point["received_kbps"] = round(total["recv_bytes"] * 8 / 1e3, 1)
            listeners = d.total("joined_listeners")
            if listeners:
                point["received_per_listener_kbps"] = round(
                    total["recv_bytes"] * 8 / 1e3 / listeners, 1
                )
            if total["expected"] > 0:
                ratio = total["recv_packets"] / total["expected"]
                point["loss_pct"] = round(max(0.0, 100 * (1 - ratio)), 3)
            point["tester_cpu_cores"] = round(total["cpu_s"], 3)
        lat = sorted(d.new_latencies)
        d.new_latencies = []
        if lat:
            point["latency_p50_ms"] = round(lat[len(lat) // 2], 2)
            point["latency_p99_ms"] = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2)
        if len(d.server) >= 2:
            (t0, m0), (t1, m1) = d.server[-2], d.server[-1]
            cpu = "process_cpu_seconds_total"
            if cpu in m0 and cpu in m1 and t1 > t0:
                point["server_cpu_cores"] = round((m1[cpu] - m0[cpu]) / (t1 - t0), 3)
        if d.server and "process_resident_memory_bytes" in d.server[-1][1]:
            point["server_rss_mb"] = round(
                d.server[-1][1]["process_resident_memory_bytes"] / 1e6, 1
            )
        d.timeline.append(point)
        return point

    async def _scrape(self, http: aiohttp.ClientSession) -> None:
        try:
            async with http.get(self.config.url.rstrip("/") + "/metrics") as resp:
                if resp.status != 200:
                    return
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return
        values = parse_metrics(text)
        if values:
            self.data.server.append((time.monotonic(), values))

    # -- phases ------------------------------------------------------------------------------

    def _joins_done(self) -> bool:
        return len(self.data.ticks) == len(self.placements) and all(
            t.get("join_done") for t in self.data.ticks.values()
        )

    def _alive(self, processes: list[Any]) -> bool:
        return any(p.is_alive() for p in processes)

    async def run(self) -> dict[str, Any]:
        """Run the test and return the report (a JSON-ready dict)."""
        for url in self.config.urls or [self.config.url]:
            await check_reachable(url)
        ctx = multiprocessing.get_context("spawn")
        q: Any = ctx.Queue()
        stop_publish = ctx.Event()
        stop = ctx.Event()
        self.data.parent_cpu0 = sum(os.times()[:2])
        processes = [
            ctx.Process(
                target=_worker_entry,
                args=(self.config, placement, q, stop_publish, stop),
                name=f"loadtest-worker-{placement.worker}",
                daemon=True,
            )
            for placement in self.placements
        ]
        for p in processes:
            p.start()
        display = _Display(self) if self.progress else None
        expected_peers = self.config.peers
        join_deadline = (
            time.monotonic()
            + expected_peers / self.config.join_rate
            + self.config.join_timeout_s
            + 30
        )
        self.phase = "joining"
        timeout = aiohttp.ClientTimeout(total=2.0)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                next_second = time.monotonic() + 1.0
                scrape: asyncio.Task[None] | None = None
                while True:
                    self._drain(q)
                    now = time.monotonic()
                    if self.interrupt.is_set():
                        self.data.interrupted = True
                        self.data.notes.append(
                            f"interrupted during the {self.phase} phase: partial report"
                        )
                        break
                    if not self._alive(processes):
                        self.data.notes.append("every worker exited early")
                        break
                    if self.phase == "joining" and (self._joins_done() or now > join_deadline):
                        if not self._joins_done():
                            self.data.notes.append("join phase timed out; measuring anyway")
                        self.phase = "steady"
                        self.data.steady_start = now
                    if self.phase == "steady" and self.data.steady_start is not None:
                        if now - self.data.steady_start >= self.config.duration_s:
                            break
                    if now >= next_second:
                        next_second += 1.0
                        if scrape is None or scrape.done():
                            scrape = asyncio.ensure_future(self._scrape(http))
                        point = self._sample()
                        if display is not None:
                            display.update(point)
                    await asyncio.sleep(0.1)
                self.data.steady_end = time.monotonic()
                if self.data.steady_start is None:
                    self.data.steady_start = self.data.steady_end
                self.phase = "draining"
                await self._scrape(http)
                stop_publish.set()
                await asyncio.sleep(DRAIN_S)
                stop.set()
                deadline = time.monotonic() + FINAL_TIMEOUT_S
                while time.monotonic() < deadline:
                    self._drain(q)
                    done = set(self.data.finals) | set(self.data.errors)
                    if len(done) == len(processes) or not self._alive(processes):
                        break
                    if display is not None:
                        display.status(f"collecting results ({len(done)}/{len(processes)})")
                    await asyncio.sleep(0.1)
                if display is not None:
                    display.status("leaving the room")
                deadline = time.monotonic() + FINAL_TIMEOUT_S
                while time.monotonic() < deadline and self._alive(processes):
                    self._drain(q)
                    await asyncio.sleep(0.1)
                self._drain(q)
        finally:
            stop_publish.set()
            stop.set()
            if display is not None:
                display.close()
            for p in processes:
                p.join(timeout=2)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=2)
            q.close()
            q.cancel_join_thread()
        for worker, message in sorted(self.data.errors.items()):
            self.data.notes.append(f"worker {worker} failed: {message}")
        missing = [w for w in range(len(processes)) if w not in self.data.finals]
        if missing:
            self.data.notes.append(f"no final statistics from worker(s) {missing}")
        parent_cpu = sum(os.times()[:2]) - self.data.parent_cpu0
        return build_report(self.config, self.data, parent_cpu)


def _worker_entry(
    config: LoadTestConfig, placement: Any, q: Any, stop_publish: Any, stop: Any
) -> None:
    from signaling.loadtest.worker import worker_main

    worker_main(config, placement, q, stop_publish, stop)


class _Display:
    """Live progress on stderr: a rich Live table on a terminal, else a line every 5 s."""

    def __init__(self, runner: Runner) -> None:
        from rich.console import Console

        self.runner = runner
        self.console = Console(stderr=True)
        self.live: Any = None
        self.count = 0
        self.note = ""
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _render(self, point: dict[str, Any]) -> Any:
        from rich.table import Table

        cfg = self.runner.config
        table = Table(title=f"sfu loadtest {cfg.url} room {cfg.room}", title_justify="left")
        for column in (
            "phase",
            "elapsed",
            "joined",
            "failed",
            "sent",
            "received",
            "loss",
            "latency p50/p99",
            "server CPU",
            "tester CPU",
        ):
            table.add_column(column, justify="right")
        lat = (
            "n/a"
            if point["latency_p50_ms"] is None
            else f"{point['latency_p50_ms']:.1f}/{point['latency_p99_ms']:.1f} ms"
        )
        steady = ""
        d = self.runner.data
        if point["phase"] == "steady" and d.steady_start is not None:
            left = cfg.duration_s - (time.monotonic() - d.steady_start)
            steady = f" ({max(0, left):.0f}s left)"
        table.add_row(
            point["phase"] + steady,
            f"{point['t_s']:.0f}s",
            f"{point['joined']}/{cfg.peers}",
            str(point["failed"]),
            _rate(point["sent_kbps"]),
            _rate(point["received_kbps"]),
            "n/a" if point["loss_pct"] is None else f"{point['loss_pct']:.2f}%",
            lat,
            _cores(point["server_cpu_cores"]),
            _cores(point["tester_cpu_cores"]),
        )
        return table

    def update(self, point: dict[str, Any]) -> None:
        """Show one timeline point."""
        self.count += 1
        if self.live is not None:
            self.live.update(self._render(point))
        elif self.count % 5 == 0:
            lat = point["latency_p99_ms"]
            loss = "n/a" if point["loss_pct"] is None else f"{point['loss_pct']:.2f}%"
            p99 = "n/a" if lat is None else f"{lat:.1f} ms"
            self.console.print(
                f"[{point['t_s']:.0f}s] {point['phase']}: joined {point['joined']}/"
                f"{self.runner.config.peers}, failed {point['failed']}, sent "
                f"{_rate(point['sent_kbps'])}, received {_rate(point['received_kbps'])}, "
                f"loss {loss}, p99 {p99}",
                highlight=False,
            )

    def status(self, text: str) -> None:
        """A one-off status line (draining)."""
        if text != self.note:
            self.note = text
            if self.live is None:
                self.console.print(text, highlight=False)

    def close(self) -> None:
        """Stop the live display."""
        if self.live is not None:
            self.live.stop()


def _rate(kbps: float | None) -> str:
    if kbps is None:
        return "n/a"
    return f"{kbps / 1000:.2f} Mb/s" if kbps >= 1000 else f"{kbps:.0f} kb/s"


def _cores(cores: float | None) -> str:
    return "n/a" if cores is None else f"{cores * 100:.0f}%"


async def run_loadtest(
    config: LoadTestConfig, *, progress: bool = False, handle_sigint: bool = False
) -> dict[str, Any]:
    """Run a load test from a coroutine (tests, benchmarks); returns the report dict.

    With ``handle_sigint`` the first Ctrl-C ends the test early (partial report).
    """
    interrupt = asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_sigint:
        loop.add_signal_handler(signal.SIGINT, interrupt.set)
    try:
        return await Runner(config, progress=progress, interrupt=interrupt).run()
    finally:
        if handle_sigint:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGINT)
