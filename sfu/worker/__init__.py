"""Media worker processes (issue 12): the channel between the control process and a worker
(:mod:`sfu.worker.channel`, protocol in ``docs/worker-channel.md``), the worker process entry
(:mod:`sfu.worker.process`, ``python -m sfu.worker``) and the control process's pool of
workers (:mod:`sfu.worker.pool`). Like the rest of ``sfu`` it never imports aiohttp, pymongo
or ``signaling``.
"""
