"""CPU per chat request inside the app, no sockets or uvicorn: hl_notebook.server vs the minimal app (diagnostic).

    python bench/server_inprocess.py                       # 3 x 2,000 requests from 16 coroutines each
    python bench/server_inprocess.py --idempotent          # every request with its own Idempotency-Key
    python bench/server_inprocess.py --profile             # + cProfile of the event-loop thread (CPU time)

Both ASGI apps are called directly by 16 coroutines on one event loop (asyncio's, not uvloop), with
the standard benchmark request (``_common.specs_and_bodies``), interleaved. ``cpu us/req`` is the
process's CPU time (every thread: the loop and the server's writer) per request; the median of the
repetitions is shown. What this leaves out — HTTP parsing, sockets, uvicorn — is the same for both
apps, so the ratio here is lower than ``server_throughput.py``'s; use it to find where the app's own
time goes (``--profile`` sorts by the loop thread's own CPU time), not as the figure.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
import uuid
from typing import Any

import _common as c
import _minimal_app


def _scope(body: bytes, key: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"x-api-key", c.API_KEY.encode()),
               (b"content-length", str(len(body)).encode())]
    if key:
        headers.append((b"idempotency-key", key.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v4/chat", "raw_path": b"/v4/chat", "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 80), "state": {}}


async def _one(app: Any, body: bytes, key: str | None) -> None:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the response is sent
        return {"type": "http.disconnect"}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(_scope(body, key), receive, send)
    assert messages[0]["status"] == 200, messages


async def _load(app: Any, body: bytes, n: int, idempotent: bool) -> float:
    """CPU microseconds per request for n requests from 16 coroutines."""
    async def worker(count: int) -> None:
        for _ in range(count):
            await _one(app, body, uuid.uuid4().hex if idempotent else None)

    start = time.process_time()
    await asyncio.gather(*(worker(n // 16) for _ in range(16)))
    return (time.process_time() - start) / n * 1e6


async def _main(args: argparse.Namespace) -> None:
    from hl_notebook.server import ServerSettings, create_app

    c.use_server("http://127.0.0.1:1/v4")  # only to plan the request body: nothing is sent there
    _, bodies = c.specs_and_bodies(1, "http://127.0.0.1:1/v4")
    body = json.dumps(bodies[0]).encode()
    hl = create_app(ServerSettings(api_key=c.API_KEY, db_path=str(c.tmp_path("inprocess.sqlite"))))
    async with hl.router.lifespan_context(hl):
        for app in (hl, _minimal_app.app):  # warm-up: project and config rows, imports, threads
            await _load(app, body, 400, args.idempotent)
        cpu: dict[str, list[float]] = {"hl": [], "minimal": []}
        for _ in range(args.repeat):
            cpu["hl"].append(await _load(hl, body, args.n, args.idempotent))
            cpu["minimal"].append(await _load(_minimal_app.app, body, args.n, False))
        hl_cpu, minimal_cpu = c.median(cpu["hl"]), c.median(cpu["minimal"])
        print(c.table(["app", "cpu us/req (median)", "all repetitions"],
                      [["hl", hl_cpu, " ".join(f"{v:.0f}" for v in cpu["hl"])],
                       ["minimal", minimal_cpu, " ".join(f"{v:.0f}" for v in cpu["minimal"])]]))
        print(f"minimal / hl CPU per request: {minimal_cpu / hl_cpu:.3f}")
        if args.profile:
            profile = cProfile.Profile(time.thread_time)
            profile.enable()
            await _load(hl, body, args.n, args.idempotent)
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_load_options(parser, n=(2000, "requests per repetition (a multiple of 16)"), repeat=3)
    parser.add_argument("--idempotent", action="store_true", help="send an Idempotency-Key with each hl request")
    parser.add_argument("--profile", action="store_true", help="cProfile the event-loop thread afterwards")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key of --profile (cumulative, tottime)")
    args = parser.parse_args()
    c.bounded(parser, args, n=50000, repeat=10)
    c.header("in-process CPU per chat request: hl_notebook.server vs the minimal app")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
