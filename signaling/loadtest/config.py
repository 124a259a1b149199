"""The load test's configuration and the placement of peers on worker processes.

Kept free of heavy imports: ``sfu --help`` imports this module through the CLI.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A bad load-test argument (the CLI prints it on one line and exits with 2)."""


@dataclass
class LoadTestConfig:
    """What ``sfu loadtest`` runs. ``duration_s`` is the steady phase after every peer has
    joined (or failed to); ``join_rate`` is joins per second over all workers. ``urls``: every
    server (nodes of a cluster, issue 13) peers are spread over, round robin by peer index;
    ``url`` is the first (its ``/metrics`` is the one scraped)."""

    url: str
    room: str = "loadtest"
    audio_publishers: int = 1
    video_publishers: int = 0
    listeners: int = 10
    duration_s: float = 60.0
    join_rate: float = 20.0
    processes: int = 1
    token_secret: str | None = None
    token: str | None = None
    probes: int = 4
    decoder: bool = True
    ice_hosts: list[str] = field(default_factory=list)
    join_timeout_s: float = 30.0
    token_ttl_s: int = 6 * 3600
    urls: list[str] = field(default_factory=list)

    @property
    def publishers(self) -> int:
        """Audio plus video publishers."""
        return self.audio_publishers + self.video_publishers

    @property
    def peers(self) -> int:
        """Every simulated participant."""
        return self.publishers + self.listeners

    def url_for(self, index: int) -> str:
        """The server peer number ``index`` (publisher or listener) joins: round robin."""
        servers = self.urls or [self.url]
        return servers[index % len(servers)]

    def validate(self) -> LoadTestConfig:
        """Check every field; raises :class:`ConfigError` with a one-line message."""
        if not self.urls:
            self.urls = [self.url]
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"--url must be http(s)://HOST[:PORT], got {url!r}")
        self.url = self.urls[0]
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.room):
            raise ConfigError("--room must be 1-128 characters of A-Z a-z 0-9 _ . -")
        for name in ("audio_publishers", "video_publishers", "listeners"):
            value = getattr(self, name)
            if not 0 <= value <= 100_000:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 100000")
        if self.peers == 0:
            raise ConfigError(
                "nothing to simulate: give --audio-publishers, --video-publishers or --listeners"
            )
        if not 0 < self.duration_s <= 7 * 86400:
            raise ConfigError("--duration must be positive (at most 7 days)")
        if not 0 < self.join_rate <= 10_000:
            raise ConfigError("--join-rate must be between 0 and 10000 joins per second")
        if not 1 <= self.processes <= 256:
            raise ConfigError("--processes must be between 1 and 256")
        if not 0 <= self.probes <= 64:
            raise ConfigError("--probes must be between 0 and 64")
        if self.token and self.token_secret:
            raise ConfigError("give either --token or --token-secret, not both")
        if not self.token and not self.token_secret:
            raise ConfigError("give --token-secret S (or set SFU_JWT_SECRET) or --token T")
        if self.token and self.peers > 1:
            raise ConfigError(
                "--token gives every peer the token's identity, and a second peer with the same "
                "identity kicks the first: use --token-secret for more than one peer"
            )
        # more workers than listeners would idle
        self.processes = max(1, min(self.processes, max(1, self.listeners)))
        return self

    def to_dict(self) -> dict[str, Any]:
        """The configuration without secrets (for the report)."""
        out = asdict(self)
        out["token_secret"] = "***" if self.token_secret else None
        out["token"] = "***" if self.token else None
        return out


def default_ice_hosts(url: str) -> list[str]:
    """``["127.0.0.1"]`` when the server is on loopback (aioice skips loopback addresses when
    it enumerates interfaces), else ``[]`` (aioice's own enumeration)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ["127.0.0.1"]
    except ValueError:
        pass
    return []


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|m|min|h))?\s*")


def parse_duration(text: str) -> float:
    """``"60s"``, ``"2m"``, ``"1.5h"``, ``"500ms"`` or plain seconds -> seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"bad duration {text!r} (use e.g. 60s, 2m, 1h)")
    unit = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * unit


def parse_rate(text: str) -> float:
    """``"20/s"``, ``"600/m"`` or a plain number (per second) -> joins per second."""
    match = _RATE.fullmatch(text)
    if not match:
        raise ValueError(f"bad rate {text!r} (use e.g. 20/s or 600/m)")
    per = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) / per


@dataclass(frozen=True)
class Placement:
    """Which peers one worker runs."""

    worker: int
    publishers: list[tuple[int, str]]  # (index, "audio" | "video")
    listeners: list[int]  # listener indices
    probes: list[int]  # listener indices that measure latency
    decoder: int | None  # the listener index that decodes, if it is ours


def place(config: LoadTestConfig) -> list[Placement]:
    """Publishers (and the latency probes: worker 0's first listeners) on worker 0, listeners
    split evenly over the workers, the decoding listener last (on the last worker)."""
    workers = config.processes
    publishers = [(i, "audio") for i in range(config.audio_publishers)] + [
        (config.audio_publishers + i, "video") for i in range(config.video_publishers)
    ]
    decoder = config.listeners - 1 if config.decoder and config.listeners >= 2 else None
    out = []
    start = 0
    for w in range(workers):
        count = config.listeners // workers + (1 if w < config.listeners % workers else 0)
        mine = list(range(start, start + count))
        start += count
        probes = [i for i in mine if i != decoder][: config.probes] if w == 0 else []
        out.append(
            Placement(
                worker=w,
                publishers=publishers if w == 0 else [],
                listeners=mine,
                probes=probes,
                decoder=decoder if decoder in mine else None,
            )
        )
    return out
