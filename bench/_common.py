"""Shared helpers for the benchmarks: server processes, the client set-up, timing, tables.

Every benchmark reports a ratio against a baseline measured in the same command, so the absolute
numbers of this noisy 2-core machine matter less than the ratios. Servers bind 127.0.0.1 only.

Importing this module points ``HL_NOTEBOOK_HOME`` at a temporary folder (before ``hl_notebook``
is imported), so a benchmark's history and caches never touch ``~/.hl_notebook``.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
API_KEY = "bench-key-0123456789abcdef"

_TMP = Path(tempfile.mkdtemp(prefix="hlbench-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ.setdefault("HL_NOTEBOOK_HOME", str(_TMP / "home"))

from hl_notebook.server.process import URL_LINE, ServerProcess, local_server_command  # noqa: E402

# the standard request of the benchmarks: a templated user message, one input row per request
MESSAGES = "system: You are terse.\nuser: Summarise item {{item}} of the catalogue in one sentence."
MODEL = "gpt-4o-mini"
TEMPERATURE = 0.7


def tmp_path(name: str) -> Path:
    """A path inside this run's temporary folder (removed at exit)."""
    return _TMP / name


# -- server processes --------------------------------------------------------------------------
def server_process(command: Sequence[str], url_pattern: str = URL_LINE.pattern) -> ServerProcess:
    """A server child process (run from the repository root) that prints its URL on stdout."""
    return ServerProcess(command, url_pattern=url_pattern, cwd=ROOT)


SERVER_VARIANTS = ("shipped", "proto0")


def hl_server(latency_ms: float = 0.0, extra_args: Sequence[str] = (), variant: str = "shipped",
              name: str = "server") -> ServerProcess:
    """``python -m hl_notebook.server`` on a free loopback port, own SQLite file (not started yet).

    ``variant="proto0"`` runs the same ``main()`` through ``bench/_hl_server_proto0.py``, whose
    only difference is a listening socket made with ``proto=0`` as before commit 7474105 (so
    asyncio leaves Nagle on): the what-if of the ~40 ms delayed-ACK stall.
    """
    if variant not in SERVER_VARIANTS:
        raise ValueError(f"server variant {variant!r}: one of {SERVER_VARIANTS}")
    launcher = None if variant == "shipped" else BENCH_DIR / "_hl_server_proto0.py"
    return server_process(hl_server_command(latency_ms, extra_args, launcher, name))


def hl_server_command(latency_ms: float, extra_args: Sequence[str] = (), launcher: Path | None = None,
                      name: str = "server") -> list[str]:
    """The local server's command line (own SQLite file, 127.0.0.1, free port); ``launcher`` is a
    bench script to run instead of ``-m hl_notebook.server`` with the same arguments."""
    db = tmp_path(f"{name}-{time.monotonic_ns()}.sqlite")
    command = local_server_command(db, API_KEY, ["--mock-latency-ms", str(latency_ms), *extra_args])
    if launcher is not None:
        command[1:3] = [str(launcher)]  # [python, "-m", "hl_notebook.server", ...]
    return command


def add_server_option(parser: Any, default: str = "shipped") -> None:
    parser.add_argument("--server", choices=(*SERVER_VARIANTS, "both"), default=default,
                        help="shipped: python -m hl_notebook.server as is; proto0: the same with the "
                             "listening socket bound as before 7474105 (what-if, bench/_hl_server_proto0.py); "
                             f"both: one after the other (default {default})")


LOAD_OPTIONS = {"n": int, "latency_ms": float, "concurrency": int, "repeat": int, "target": float}


def add_load_options(parser: Any, **defaults: Any) -> None:
    """The options the load benchmarks share, in one order: those of --n, --latency-ms, --concurrency,
    --repeat and --target that are given, each as ``name=default`` or ``name=(default, help)``."""
    for name, kind in LOAD_OPTIONS.items():
        if name in defaults:
            default, help_ = defaults[name] if isinstance(defaults[name], tuple) else (defaults[name], None)
            parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=help_)


def bounded(parser: Any, args: Any, **highest: int) -> None:
    """Refuse loads beyond the given upper bounds (every bounded option starts at 1), via ``parser.error``."""
    if not all(1 <= getattr(args, name) <= top for name, top in highest.items()):
        ranges = ", ".join(f"--{name.replace('_', '-')} 1..{top}" for name, top in highest.items())
        parser.error(f"bounded loads only: {ranges}")


def server_variants(choice: str) -> list[str]:
    return list(SERVER_VARIANTS) if choice == "both" else [choice]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to get server CPU per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PIN_CPUS: tuple[int, int] | None = None


def pin_apart(server_pid: int) -> str:
    """Every thread of the server process on one CPU, every thread of this (client) process on
    another, so that the two never compete for a core (what pyperf's ``--affinity`` does for one
    process). On two shared cores the scheduler otherwise sometimes runs the client's 32 threads
    beside the server's event loop: 1,000-call sweeps at C=32 gave 1.11-1.17 of ideal unpinned and
    1.08-1.11 pinned apart (bench/README.md, "Issue 15, fifth round"). Threads started later
    inherit their starter's CPU (and ``hey`` this process's); call again to catch any other.
    Returns which CPUs were chosen."""
    global _PIN_CPUS
    if _PIN_CPUS is None:  # chosen once, from the CPUs this process could use before any pinning
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit(f"--pin needs two CPUs; this process may use {cpus}")
        _PIN_CPUS = (cpus[0], cpus[1])
    server_cpu, client_cpu = _PIN_CPUS
    for pid, cpu in ((server_pid, server_cpu), (os.getpid(), client_cpu)):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), {cpu})
    return f"server on CPU {server_cpu}, client on CPU {client_cpu}"


def minimal_server(proto0: bool = False, latency_ms: float = 0.0) -> ServerProcess:
    """The minimal FastAPI baseline app (bench/_minimal_app.py) as a uvicorn process; ``proto0``
    binds its socket the way hl_notebook.server does; ``latency_ms`` answers after that long."""
    return server_process([sys.executable, str(BENCH_DIR / "_minimal_app.py"), *(["--proto0"] if proto0 else []),
                           *(["--latency-ms", str(latency_ms)] if latency_ms else [])],
                          url_pattern=r"minimal server at (http://\S+)")


def headers(key: str | None = None) -> dict[str, str]:
    return {"X-API-KEY": key or API_KEY, "Accept": "application/json"}


def server_stats(base_url: str, reset: bool = False, key: str | None = None) -> dict[str, int]:
    """The server's chat counters (``max_in_flight`` shows the concurrency it actually saw)."""
    import requests

    if reset:
        return requests.post(base_url + "/server-stats/reset", headers=headers(key), timeout=30).json()
    return requests.get(base_url + "/server-stats", headers=headers(key), timeout=30).json()


# -- the hl_notebook client side -----------------------------------------------------------------
def use_server(base_url: str) -> None:
    """Point hl_notebook at ``base_url`` with the mock provider (as a user would, by environment)."""
    os.environ["HUMANLOOP_BASE_URL"] = base_url
    os.environ["HUMANLOOP_API_KEY"] = API_KEY
    from hl_notebook.config import HLSettings

    HLSettings.instance().provider = "mock"


def use_embedded(latency_ms: float) -> tuple[str, str]:
    """No server configured: hl_notebook starts its embedded server in this process (the default a
    notebook user gets), with ``HLSettings.mock_latency_ms``. Returns its base URL and key."""
    for name in ("HUMANLOOP_BASE_URL", "HUMANLOOP_API_KEY"):
        os.environ.pop(name, None)
    from hl_notebook.config import HLSettings
    from hl_notebook.connection import connect

    settings = HLSettings.instance()
    settings.provider, settings.base_url, settings.mock_latency_ms = "", "", latency_ms
    client = connect().client
    return client.base_url, client._api_key.reveal()


def inputs_rows(n: int) -> list[dict[str, Any]]:
    return [{"item": i} for i in range(n)]


def specs_and_bodies(n: int, base_url: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """The ChatSpecs ``sweep`` makes for n rows, and the exact wire bodies (for bare baselines)."""
    from hl_notebook.api import _messages
    from hl_notebook.plan import make_specs
    from hl_notebook.connection import connect
    from hl_notebook.spec import build_body

    connection = connect(base_url)
    specs = make_specs(_messages(MESSAGES), axes={"model": [MODEL], "temperature": [TEMPERATURE]},
                       inputs=inputs_rows(n), default_provider=connection.default_provider)
    return specs, [build_body(s) for s in specs]


def hl_sweep(n: int, concurrency: int, base_url: str) -> Any:
    """``hl_notebook.sweep`` of the standard request over n input rows; returns the frame."""
    import hl_notebook

    return hl_notebook.sweep(MESSAGES, model=MODEL, temperature=TEMPERATURE, inputs=inputs_rows(n),
                             concurrency=concurrency, base_url=base_url, progress=False)


class PostTimer:
    """Wraps ``frame.to_frame`` and ``archive.record_later`` in this process (no library file
    changes) to add up the time a sweep spends after its calls on its own thread: building the
    DataFrame and handing it to the history's thread (``history_settle`` times the rest of that
    record, after the sweep returned). Both are looked up on their modules at call time
    (``pool.Run.frame``, ``pool``'s record step)."""

    def __init__(self) -> None:
        import hl_notebook.archive
        import hl_notebook.frame

        record = "record_later" if hasattr(hl_notebook.archive, "record_later") else "record"  # (an older tree)
        self.seconds = {"to_frame": 0.0, record: 0.0}
        for module, name in ((hl_notebook.frame, "to_frame"), (hl_notebook.archive, record)):
            self._wrap(module, name)

    def _wrap(self, module: Any, name: str) -> None:
        original = getattr(module, name)
        if getattr(original, "_bench_wrapped", False):
            original = original.__wrapped__

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        wrapper._bench_wrapped = True  # type: ignore[attr-defined]
        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(module, name, wrapper)

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def history_settle() -> float:
    """Seconds until the history has recorded every run a sweep handed it (``archive.settle``):
    a sweep returns its frame first. Called after a timed sweep, so that the record is not left
    running during the next measurement."""
    from hl_notebook import archive

    start = time.perf_counter()
    getattr(archive, "settle", lambda: None)()  # (a tree from before record_later: recorded in the sweep)
    return time.perf_counter() - start


def bare_pool(bodies: Sequence[dict[str, Any]], url: str, concurrency: int, key: str | None = None) -> list[int]:
    """Baseline: a thread pool of plain ``requests.Session`` s (one per thread) POSTing ``bodies``."""
    import requests
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def one(body: dict[str, Any]) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers.update(headers(key))
        response = session.post(url, json=body, timeout=(10, 300))
        response.json()
        return response.status_code

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, bodies))


def stdlib_pool(bodies: Sequence[dict[str, Any]], url: str, concurrency: int, key: str | None = None,
                keyed: bool = False) -> list[int]:
    """Baseline: the same thread pool over the standard library's ``http.client`` (one kept-alive
    connection per thread, no requests/urllib3 layers): what a Python client's transport costs.
    ``keyed`` sends a fresh ``Idempotency-Key`` with each request, as every sweep call does (the
    server then keeps an idempotency record per call): the fair baseline for the sweep's client."""
    import http.client
    import json
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    local = threading.local()
    sent_headers = {**headers(key), "Content-Type": "application/json"}

    def one(body: dict[str, Any]) -> int:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        connection.request("POST", parts.path, json.dumps(body).encode(),
                           {**sent_headers, "Idempotency-Key": uuid.uuid4().hex} if keyed else sent_headers)
        response = connection.getresponse()
        json.loads(response.read())
        return response.status

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, bodies))


def asyncio_pool(bodies: Sequence[dict[str, Any]], url: str, concurrency: int, key: str | None = None) -> list[int]:
    """Baseline: ``concurrency`` kept-alive connections driven by one thread (asyncio streams, a
    fresh ``Idempotency-Key`` per request, like ``stdlib_pool(keyed=True)``): what a client that
    multiplexes its calls on one thread, instead of a thread per call in flight, gets from the same
    server. Minimal HTTP/1.1: answers must carry a Content-Length (the local server's JSON ones do)."""
    import asyncio
    import json
    import uuid
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    fixed = "".join(f"{name}: {value}\r\n" for name, value in
                    {**headers(key), "Content-Type": "application/json",
                     "Host": f"{parts.hostname}:{parts.port}"}.items())
    statuses = [0] * len(bodies)

    async def connection(upcoming: Any) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            for index in upcoming:
                data = json.dumps(bodies[index]).encode()
                head = (f"POST {parts.path} HTTP/1.1\r\n{fixed}Content-Length: {len(data)}\r\n"
                        f"Idempotency-Key: {uuid.uuid4().hex}\r\n\r\n")
                writer.write(head.encode() + data)
                status_line = await reader.readline()
                length = None
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length is None:
                    raise RuntimeError(f"no Content-Length in the answer to call {index}")
                json.loads(await reader.readexactly(length))
                statuses[index] = int(status_line.split()[1])
        finally:
            writer.close()

    async def run() -> None:
        upcoming = iter(range(len(bodies)))  # shared: each connection takes the next call when free
        await asyncio.gather(*(connection(upcoming) for _ in range(min(concurrency, len(bodies)))))

    asyncio.run(run())
    return statuses


def load_hey(url: str, body: dict[str, Any], n: int, concurrency: int, timeout: float = 300,
             key: str | None = None) -> dict[str, Any]:
    """Load ``url`` with ``hey`` (Go; apt-get install hey): n POSTs of ``body`` over ``concurrency``
    connections. hey runs n // concurrency requests per worker. Returns wall, rps, latencies, statuses."""
    import json

    path = tmp_path(f"body-{time.monotonic_ns()}.json")
    path.write_text(json.dumps(body))
    n = max(concurrency, n - n % concurrency)
    command = ["hey", "-n", str(n), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
               "-H", f"X-API-KEY: {key or API_KEY}", "-D", str(path), "-t", "60", url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True).stdout

    def grab(pattern: str) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else float("nan")

    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    return {"n": n, "wall": grab(r"Total:\s+([\d.]+) secs"), "rps": grab(r"Requests/sec:\s+([\d.]+)"),
            "avg": grab(r"Average:\s+([\d.]+) secs"), "p50": grab(r"50%+ in ([\d.]+) secs"), "p99": grab(r"99%+ in ([\d.]+) secs"),
            "ok": statuses.get(200, 0), "errors": (errors.group(1).strip()[:200] if errors else "")}


def load_python(url: str, body: dict[str, Any], n: int, concurrency: int) -> dict[str, Any]:
    """The same load from this process: a thread pool of requests sessions (see ``bare_pool``)."""
    wall, statuses = timed(lambda: bare_pool([body] * n, url, concurrency))
    return {"n": n, "wall": wall, "rps": n / wall, "avg": float("nan"), "p50": float("nan"), "p99": float("nan"),
            "ok": sum(s == 200 for s in statuses), "errors": ""}


# -- timing and reporting ------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def table(headers_: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers_], *[[fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers_))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_note() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores (shared)  "
            f"load {load[0]:.2f}  python {platform.python_version()}")


def code_version() -> str:
    """The commit the library was measured at (``+dirty`` when hl_notebook/ has local changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hl_notebook"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def header(title: str, command_args: Sequence[str] | None = None) -> None:
    args = " ".join(sys.argv[1:] if command_args is None else command_args)
    print(f"# {title}\n# {machine_note()}  code {code_version()}\n"
          f"# command: python bench/{Path(sys.argv[0]).name} {args}".rstrip())


def verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return "-"
    return "PASS" if ratio <= target else "FAIL"
