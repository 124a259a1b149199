"""The ``sfu loadtest`` subcommand: arguments, and running from parsed arguments.

Errors in arguments, and an unreachable server, print one line on stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, NoReturn

from signaling.loadtest.config import (
    ConfigError,
    LoadTestConfig,
    default_ice_hosts,
    parse_duration,
    parse_rate,
)

DESCRIPTION = (
    "Simulate publishers and listeners against a running server and report delivery, loss, "
    "jitter, join times, end-to-end latency and the server's CPU and memory (from /metrics). "
    "Audio publishers send real Opus, video publishers real VP8 (~500 kbit/s, 15 fps); "
    "listeners count packets without decoding, except one that decodes. --duration is the "
    "steady phase after every peer has joined. Ctrl-C stops early and prints a partial report."
)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` report argument errors on one line (no usage) and exit with 2."""

    def error(message: str) -> NoReturn:
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    parser.error = error  # type: ignore[method-assign]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sfu loadtest`` options."""
    one_line_errors(parser)
    parser.add_argument(
        "--url",
        required=True,
        action="append",
        help="the server, http://HOST:PORT; repeat it (or separate with commas) to spread the "
        "peers over several nodes of a cluster, round robin",
    )
    parser.add_argument("--room", default="loadtest", help="room to join (loadtest)")
    parser.add_argument(
        "--audio-publishers", type=int, default=1, metavar="P", help="publishers sending Opus (1)"
    )
    parser.add_argument(
        "--video-publishers", type=int, default=0, metavar="V", help="publishers sending VP8 (0)"
    )
    parser.add_argument(
        "--listeners",
        type=int,
        default=10,
        metavar="L",
        help="subscribers (10); one of them decodes",
    )
    parser.add_argument(
        "--duration",
        type=_duration,
        default=60.0,
        help="steady phase after the joins, e.g. 60s, 5m (60s)",
    )
    parser.add_argument(
        "--join-rate",
        type=_rate,
        default=20.0,
        help="joins per second over all workers, e.g. 20/s (20/s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="K",
        help="worker processes to spread the peers over (1)",
    )
    parser.add_argument(
        "--probes", type=int, default=4, help="listeners (in worker 0) that measure latency (4)"
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token-secret",
        metavar="S",
        help="the server's JWT secret: mint a token per peer (default: $SFU_JWT_SECRET)",
    )
    auth.add_argument(
        "--token", metavar="T", help="one room token for every peer (only for a single peer)"
    )
    parser.add_argument(
        "--ice-host",
        action="append",
        default=None,
        metavar="ADDR",
        help="local address for ICE candidates (repeatable; default 127.0.0.1 "
        "for a loopback server, else every interface)",
    )
    parser.add_argument(
        "--no-decoder", action="store_true", help="no decoding listener (all listeners count only)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the whole report as JSON")
    parser.add_argument(
        "--plot", metavar="FILE", help="write a PNG of bitrate, loss, latency and CPU over time"
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress")


def config_from_args(args: argparse.Namespace) -> LoadTestConfig:
    """A validated :class:`LoadTestConfig` (raises :class:`ConfigError`)."""
    secret = args.token_secret
    if secret is None and args.token is None:
        secret = os.environ.get("SFU_JWT_SECRET") or None
    urls = [u.strip().rstrip("/") for arg in args.url for u in arg.split(",") if u.strip()]
    config = LoadTestConfig(
        url=urls[0] if urls else "",
        urls=urls,
        room=args.room,
        audio_publishers=args.audio_publishers,
        video_publishers=args.video_publishers,
        listeners=args.listeners,
        duration_s=args.duration,
        join_rate=args.join_rate,
        processes=args.processes,
        token_secret=secret,
        token=args.token,
        probes=args.probes,
        decoder=not args.no_decoder,
        ice_hosts=list(args.ice_host)
        if args.ice_host
        else sorted({h for u in urls for h in default_ice_hosts(u)}),
    )
    return config.validate()


def run_cli(args: argparse.Namespace) -> int:
    """``sfu loadtest``: run, print the report, write --json/--plot; returns the exit code."""
    from signaling.loadtest.report import print_report, write_json, write_plot
    from signaling.loadtest.runner import LoadTestError, run_loadtest

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"sfu loadtest: error: {exc}", file=sys.stderr)
        return 2
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            print(f"sfu loadtest: error: {option}: no such directory for {path}", file=sys.stderr)
            return 2
    try:
        report: dict[str, Any] = asyncio.run(
            run_loadtest(config, progress=not args.quiet, handle_sigint=True)
        )
    except LoadTestError as exc:
        print(f"sfu loadtest: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sfu loadtest: interrupted", file=sys.stderr)
        return 130
    print_report(report)
    if args.json:
        write_json(report, args.json)
        print(f"report written to {args.json}")
    if args.plot:
        write_plot(report, args.plot)
        print(f"plot written to {args.plot}")
    if report["interrupted"]:
        return 130  # as for any Ctrl-C, after the partial report
    joined = report["peers"]["joined_publishers"] + report["peers"]["joined_listeners"]
    return 0 if joined > 0 else 1
