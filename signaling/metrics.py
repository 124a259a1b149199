"""Monitoring endpoints: ``/metrics`` (Prometheus text format), ``/healthz`` and ``/readyz``.

Metrics (all from prometheus-client, one registry per app so tests can build many apps):

* gauges ``sfu_rooms``, ``sfu_participants``, ``sfu_producers``, ``sfu_consumers``;
* counters ``sfu_<name>_total`` for every name in :data:`sfu.stats.COUNTER_NAMES` (packets
  and bytes in and out, forwarded packets, NACKs, PLIs, retransmissions ...), read from the
  media plane at scrape time;
* histogram ``sfu_join_seconds`` (a WebSocket ``join`` until its ``joined`` reply) and
  ``sfu_event_loop_lag_seconds`` (how late a 100 ms timer fires), gauge
  ``sfu_event_loop_lag_max_seconds`` (the worst lag since the last scrape);
* gauge ``sfu_asyncio_tasks``: the server event loop's unfinished asyncio tasks, counted at
  scrape time (a leak of per-connection tasks shows as growth; ``bench/soak.py`` reads it);
* ``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds`` and
  the other standard process metrics (Linux).

``/metrics`` requires ``Authorization: Bearer <SFU_METRICS_TOKEN>`` when that setting is set
(401 problem details, RFC 9457, with ``WWW-Authenticate: Bearer``, RFC 6750 §3, otherwise).
``/healthz`` answers while the process serves HTTP; ``/readyz`` answers 200 once the media
plane and the store are up (the store must answer ``ping``), else 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.plane.types import PlaneStats
from sfu.stats import COUNTER_NAMES
from signaling import keys
from signaling.problems import problem
from signaling.worker_metrics import WorkerCollector

LAG_INTERVAL_S = 0.1


class Metrics:
    """The app's registry and the instruments the handlers update."""

    def __init__(self, app: web.Application) -> None:
        self.lag_max = 0.0
        self.media_stats: PlaneStats | None = None  # the media plane's, read at each scrape
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(_MediaCollector(app, self))
        self.registry.register(WorkerCollector(lambda: self.media_stats))
        self.join_seconds = Histogram(
            "sfu_join_seconds",
            "WebSocket join: request received until the joined reply (s)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "sfu_event_loop_lag_seconds",
            "How late a periodic 100 ms timer fires on the event loop (s)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=self.registry,
        )


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


class _MediaCollector(Collector):
    """Reports the media plane's gauges and monotonic counters, read (``MediaPlane.stats``)
    by :func:`handle_metrics` at scrape time."""

    def __init__(self, app: web.Application, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        stats = self.metrics.media_stats  # read by handle_metrics just before this scrape
        gauges = {
            "rooms": stats.rooms if stats is not None else 0,
            "participants": stats.participants if stats is not None else 0,
            "producers": stats.producers if stats is not None else 0,
            "consumers": stats.consumers if stats is not None else 0,
        }
        for name, value in gauges.items():
            yield GaugeMetricFamily(f"sfu_{name}", f"Current number of {name}", value)
        counters = stats.counters if stats is not None else {}
        for name in COUNTER_NAMES:
            family = CounterMetricFamily(f"sfu_{name}", f"Media plane: {name.replace('_', ' ')}")
            family.add_metric([], counters.get(name, 0))
            yield family
        lag = GaugeMetricFamily(
            "sfu_event_loop_lag_max_seconds", "Worst event-loop lag since the last scrape (s)"
        )
        lag.add_metric([], self.metrics.lag_max)
        self.metrics.lag_max = 0.0
        yield lag
        yield GaugeMetricFamily(
            "sfu_asyncio_tasks",
            "Unfinished asyncio tasks on the server's event loop",
            asyncio_task_count(),
        )


def asyncio_task_count() -> int:
    """Unfinished tasks of the running event loop (``asyncio.all_tasks``); 0 when called
    outside a running loop. ``/metrics`` is served on the loop, so a scrape sees its tasks."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


async def _watch_loop(metrics: Metrics) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_INTERVAL_S)
        lag = max(0.0, loop.time() - start - LAG_INTERVAL_S)
        metrics.loop_lag.observe(lag)
        metrics.lag_max = max(metrics.lag_max, lag)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: create the registry and run the event-loop lag watcher."""
    metrics = Metrics(app)
    app[METRICS] = metrics
    task = asyncio.ensure_future(_watch_loop(metrics))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def observe_join(app: web.Application, started: float) -> None:
    """Record one join that started at ``started`` (``time.monotonic()``)."""
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.join_seconds.observe(time.monotonic() - started)


def metrics_authorized(request: web.Request) -> bool:
    """True when ``SFU_METRICS_TOKEN`` is unset, or the request carries ``Authorization:
    Bearer <token>`` with exactly that token (compared in constant time)."""
    settings = request.app.get(keys.SETTINGS)
    expected = settings.metrics_token if settings is not None else None
    if expected is None:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(
        presented.strip().encode("utf-8"), expected.get_secret_value().encode("utf-8")
    )


async def handle_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition format 0.0.4.

    Answers 401 (``unauthorized`` problem, ``WWW-Authenticate: Bearer``) when
    ``SFU_METRICS_TOKEN`` is set and the request does not present it as a Bearer token.
    """
    if not metrics_authorized(request):
        return problem(
            401,
            "unauthorized",
            "/metrics requires Authorization: Bearer <SFU_METRICS_TOKEN>",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    metrics = request.app[METRICS]
    media = request.app.get(keys.MEDIA)
    metrics.media_stats = await media.stats() if media is not None else None
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the process is serving HTTP."""
    return web.json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when the media plane and the store are ready, else 503."""
    from signaling.accounts import STORE

    problems = []
    if request.app.get(keys.MEDIA) is None:
        problems.append("media plane not started")
    store = request.app.get(STORE)
    if store is None:
        problems.append("store not started")
    else:
        try:
            await asyncio.wait_for(store.db.client.admin.command("ping"), 2.0)
        except Exception as exc:
            problems.append(f"store does not answer: {type(exc).__name__}")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})
