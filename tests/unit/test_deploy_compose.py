"""``deploy/docker-compose.yml`` (issue 13): the services a two-node cluster needs, and
settings, ports and secrets that agree with each other and with :class:`Settings`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from signaling.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
NODES = ("sfu-a", "sfu-b")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _flag(command: list[str], name: str) -> str:
    """The value of ``--name value`` or ``--name=value`` in a command list."""
    for i, part in enumerate(command):
        if part == name:
            return command[i + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {command}")


def _variables(value: str) -> set[str]:
    """The ``${NAME...}`` variables a compose value refers to."""
    return set(re.findall(r"\$\{([A-Z0-9_]+)", value))


def _port(url: str) -> int:
    """The port of a URL that may hold ``${VAR}`` references in its host."""
    port = urlsplit(re.sub(r"\$\{[^}]*\}", "host", url)).port
    assert port is not None, url
    return port


def test_services_and_shared_settings() -> None:
    services = _compose()["services"]
    assert set(services) == {"mongo", "redis", "coturn", *NODES}
    known = {
        (field.validation_alias.choices[0] if field.validation_alias else f"SFU_{name.upper()}")
        for name, field in Settings.model_fields.items()
        if not isinstance(field.validation_alias, str)
    }
    mongo_port = int(_flag(services["mongo"]["command"], "--port"))
    redis_port = int(_flag(services["redis"]["command"], "--port"))
    turn_port = int(_flag(services["coturn"]["command"], "--listening-port"))
    turn_secret = _flag(services["coturn"]["command"], "--static-auth-secret")
    http_ports = []
    for name in NODES:
        node = services[name]
        env = node["environment"]
        assert set(env) <= known, f"{name}: unknown settings {set(env) - known}"
        assert node["network_mode"] == "host"  # aiortc's UDP ports cannot be mapped
        assert {"mongo", "redis"} <= set(node["depends_on"])
        port = int(_flag(node["command"], "--port"))
        http_ports.append(port)
        assert _port(env["SFU_NODE_URL"]) == port
        assert _port(env["MONGO_URL"]) == mongo_port
        assert _port(env["SFU_REDIS_URL"]) == redis_port
        assert env["SFU_TURN_URLS"].startswith("turn:")
        assert int(env["SFU_TURN_URLS"].split("?")[0].rsplit(":", 1)[1]) == turn_port
        assert _variables(env["SFU_TURN_SECRET"]) == _variables(turn_secret) == {"SFU_TURN_SECRET"}
        # SIGTERM drains: compose must wait longer than the drain before it kills
        grace = int(str(node["stop_grace_period"]).rstrip("s"))
        assert grace > float(env["SFU_DRAIN_TIMEOUT_S"])
    assert len(set(http_ports)) == len(NODES)
    a, b = (services[n]["environment"] for n in NODES)
    for shared in ("SFU_JWT_SECRET", "MONGO_URL", "SFU_REDIS_URL", "SFU_FILE_MASTER_KEY"):
        assert a[shared] == b[shared], shared
    assert a["SFU_NODE_ID"] != b["SFU_NODE_ID"]
