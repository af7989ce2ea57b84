"""``python -m hl_notebook.server``: run the local v4 server with uvicorn.

Why: a team or a notebook user can run the same server the embedded default uses, as a process.
"""
from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import secrets
import signal
import socket
import sys
from typing import Any

from .settings import DEFAULT_DB, DEFAULT_MAX_BODY_BYTES, DEFAULT_UPSTREAM_TIMEOUT, ServerSettings, env_api_key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mock_ms(text: str) -> float:
    from .providers.mock import mock_ms

    try:
        return mock_ms(float(text)) or 0.0
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to 65535; 0 picks a free one)")
    return port


def _upstream_seconds(text: str) -> float:
    from .providers.upstream import timeout_seconds

    try:
        return timeout_seconds(float(text))  # type: ignore[return-value]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hl_notebook.server",
                                     description="Local server speaking the Humanloop v4 chat API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port to bind; 0 picks a free one")
    parser.add_argument("--db", default=str(DEFAULT_DB),
                        help=f"SQLite file, or a postgresql://user:password@host/database URL for a team server "
                             f"(default {DEFAULT_DB})")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes (default 1); more than one needs a PostgreSQL --db")
    parser.add_argument("--api-key", default=None,
                        help="key clients send as X-API-KEY (default: $HL_NOTEBOOK_API_KEY, else a new one)")
    parser.add_argument("--mock-latency-ms", type=_mock_ms, default=0.0,
                        help="simulated latency of the mock provider per call (0 to 60000 ms)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest accepted request body")
    parser.add_argument("--upstream-timeout", type=_upstream_seconds, default=DEFAULT_UPSTREAM_TIMEOUT,
                        help="seconds a pass-through call (openai, anthropic) waits for the upstream's next byte "
                             f"before it fails with 504 (default {DEFAULT_UPSTREAM_TIMEOUT:g}; "
                             "a config's other.timeout wins)")
    parser.add_argument("--faults", action="store_true",
                        help="enable fault injection (X-HL-Fault header, --fault-rates); for testing only")
    parser.add_argument("--fault-rates", default="", help="server-wide fault rates, e.g. 500=0.1,429=0.05,drop=0.02")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--fault-retry-after", default="1", help="Retry-After seconds of drawn 429/503 faults")
    parser.add_argument("--experiment-seed", type=int, default=None, metavar="N",
                        help="seed the sampling of experiment configs, so a sequence of calls samples the same "
                             "configs on every run (default: unseeded)")
    parser.add_argument("--provider-limits", action="append", default=[], metavar="BUDGETS",
                        help="requests and tokens per minute per provider key, shared by every worker on --db, "
                             "e.g. 'openai=500rpm,200000tpm;anthropic=50rpm'; 'openai@3fa2c1d0=100rpm' overrides "
                             "one key, named by the first 8 hex digits of its SHA-256 (default: unlimited)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from . import API_PREFIX, create_app

    args = parse_args(argv)
    api_key = args.api_key or env_api_key()
    if api_key is None:
        if not _is_loopback(args.host):
            print(f"refusing to serve on non-loopback host {args.host} without an explicit --api-key "
                  "or HL_NOTEBOOK_API_KEY", file=sys.stderr)
            return 2
        api_key = secrets.token_urlsafe(24)
        print(f"generated API key (shown once): {api_key}", flush=True)
    from .faults import parse_rates

    try:
        rates = parse_rates(args.fault_rates)
    except ValueError as exc:
        print(f"--fault-rates: {exc}", file=sys.stderr)
        return 2
    if rates and not args.faults:
        print("--fault-rates needs --faults", file=sys.stderr)
        return 2
    from .ratelimit import LimitSyntaxError, parse_limits

    try:
        parse_limits(args.provider_limits)
    except LimitSyntaxError as exc:
        print(f"--provider-limits: {exc}", file=sys.stderr)
        return 2
    settings = ServerSettings(api_key=api_key, db_path=args.db, mock_latency_ms=args.mock_latency_ms,
                              max_body_bytes=args.max_body_bytes, faults=args.faults, fault_rates=rates,
                              fault_seed=args.fault_seed, fault_retry_after=args.fault_retry_after,
                              experiment_seed=args.experiment_seed,
                              upstream_timeout=args.upstream_timeout,
                              provider_limits=";".join(args.provider_limits), workers=args.workers)
    from .workers import refuse_reason

    reason = refuse_reason(settings)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    # proto=IPPROTO_TCP: asyncio turns on TCP_NODELAY for accepted connections only then; without
    # it a kept-alive response body waits for the client's delayed ACK (~40 ms a request)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:  # a port in use, an address not on this machine: one line, not a traceback
        sock.close()
        print(f"cannot listen on {args.host}:{args.port}: {(exc.strerror or str(exc)).lower()}", file=sys.stderr)
        return 2
    sock.listen(2048)  # connections queue from now on, so the URL printed below is usable at once
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    from .database import DatabaseError
    from .store import Store

    try:
        if settings.workers > 1:
            store = Store(settings.db_path)  # migrated once, here, before any worker starts
            store.reset_counters()
            store.close()
            logging.basicConfig(level=logging.INFO)
            print(f"hl_notebook server at http://{shown}:{port}{API_PREFIX} ({settings.workers} workers)", flush=True)
            from . import workers

            workers.serve(settings, sock)
            return 0
        app = create_app(settings)
    except DatabaseError as exc:
        print(f"--db: {exc}", file=sys.stderr)
        return 2
    app.state.store.reset_counters()  # a seeded run draws the same faults and experiment configs again
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    logging.basicConfig(level=logging.INFO)
    print(f"hl_notebook server at http://{shown}:{port}{API_PREFIX}", flush=True)

    class QuietServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM or self.force_exit:
                # uvicorn waits for running requests before the app's lifespan ends: a call whose
                # upstream hangs would hold SIGTERM for as long, so its connection is cut now
                app.state.upstreams.cancel()
            if self.force_exit:  # a second Ctrl-C cancels the requests still running: no tracebacks for that
                logging.getLogger("uvicorn.error").disabled = True

    # the app and its imports are long-lived: out of the collector's sight, a full collection no
    # longer walks them (they paused every request in flight for 50-130 ms under load)
    gc.freeze()
    return _serve(QuietServer(config), sock)


def _serve(server: Any, sock: socket.socket) -> int:
    """Serve until stopped; Ctrl-C (SIGINT) stops quietly with exit code 130 (a first Ctrl-C lets the
    requests in progress finish, a second one stops at once).

    uvicorn shuts down gracefully on SIGINT, then raises the signal again for the handler that was
    there before it. With Python's default handler, asyncio's runner turns that into a
    KeyboardInterrupt inside the loop: cancelled lifespan and request tasks, ~25 lines of
    traceback. Our own handler is the one uvicorn restores, so the repeated signal is only noted.
    """
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        print("hl_notebook server stopped", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
