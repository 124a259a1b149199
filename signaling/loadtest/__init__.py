"""``sfu loadtest``: simulated publishers and listeners against a running server.

Publishers send real pre-encoded Opus and VP8 as raw RTP (:mod:`.media`); listeners count
packets without decoding, one decodes (:mod:`.peers`); peers run in worker processes
(:mod:`.worker`); the parent gathers, samples the server's ``/metrics`` and reports
(:mod:`.runner`, :mod:`.report`). Entry points: :func:`signaling.loadtest.cli.run_cli` and
:func:`signaling.loadtest.runner.run_loadtest`.
"""
