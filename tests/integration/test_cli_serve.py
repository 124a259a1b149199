"""``sfu serve`` refuses to start with one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_serve_refuses_a_weak_secret_in_production(tmp_path: Path) -> None:
    env = {**os.environ, "SFU_ENV": "production", "SFU_JWT_SECRET": "short"}
    env.pop("MONGO_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "signaling.cli",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sfu serve:")]
    assert lines == [
        "sfu serve: cannot start: SFU_JWT_SECRET must be at least 32 bytes in production"
    ]
    assert "Traceback" not in proc.stderr
