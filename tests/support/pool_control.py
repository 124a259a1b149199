"""A small control process for the orphan test: starts a WorkerPool of 2 echo workers, blocks
worker 0's event loop (so only the kernel's parent-death signal can stop it, not the channel's
EOF), prints ``{"pids": [...]}`` on one line and waits to be killed.

Run: ``python -m tests.support.pool_control``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from sfu.worker.pool import WorkerPool


async def main() -> None:
    pool = WorkerPool("tests.support.echo_target:make", workers=2)
    await pool.start()
    pids = [pool.pid(0), pool.pid(1)]
    assert await pool.call(0, "whoami")
    blocked = asyncio.ensure_future(pool.call(0, "block", 60.0, timeout_s=120))
    await asyncio.sleep(0.2)  # the request reaches worker 0, which stops reading
    print(json.dumps({"pids": pids}), flush=True)
    await asyncio.sleep(120)
    blocked.cancel()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
