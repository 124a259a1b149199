"""Prometheus series of the media worker processes (issue 12), read from the media plane's
:class:`sfu.plane.types.PlaneStats` ``workers`` (one :class:`~sfu.plane.types.WorkerInfo` per
worker process) at scrape time.

* gauge ``sfu_worker_up{worker}``: 1 while worker ``worker`` (its index) answers, else 0;
* counter ``sfu_worker_restarts_total{worker}``: times it was started again after its first
  start (a crash, ``kill -9``);
* counter ``sfu_worker_cpu_seconds_total{worker}``: user + system CPU seconds of every
  process that held that index (``/proc/<pid>/stat``, sampled every second);
* gauge ``sfu_worker_resident_memory_bytes{worker}``: resident memory of its current process.

Register it next to the app's other collectors (``signaling/metrics.py``):
``registry.register(WorkerCollector(lambda: metrics.media_stats))``. With no workers (``sfu
serve --workers 0``) every family is present and empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfu.plane.types import PlaneStats


class WorkerCollector(Collector):
    """Collects the per-worker series from the :class:`PlaneStats` ``stats()`` returns (None:
    no media plane yet)."""

    def __init__(self, stats: Callable[[], PlaneStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        """The four families, one sample per worker index."""
        plane = self._stats()
        stats = plane.workers if plane is not None else ()
        up = GaugeMetricFamily(
            "sfu_worker_up", "1 while the media worker process answers", labels=["worker"]
        )
        restarts = CounterMetricFamily(
            "sfu_worker_restarts",
            "Times the media worker process was started again after it died",
            labels=["worker"],
        )
        cpu = CounterMetricFamily(
            "sfu_worker_cpu_seconds",
            "User and system CPU time of the media worker process (s), over restarts",
            labels=["worker"],
        )
        rss = GaugeMetricFamily(
            "sfu_worker_resident_memory_bytes",
            "Resident memory of the media worker process (bytes)",
            labels=["worker"],
        )
        for worker in stats:
            label = [str(worker.index)]
            up.add_metric(label, 1.0 if worker.up else 0.0)
            restarts.add_metric(label, worker.restarts)
            cpu.add_metric(label, worker.cpu_seconds)
            rss.add_metric(label, worker.rss_bytes)
        yield up
        yield restarts
        yield cpu
        yield rss
