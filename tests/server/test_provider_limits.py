"""Budgets per provider key (ratelimit.py): the ``--provider-limits`` syntax, the scheduler on the
real store, and the server's stats and logs, which name a key only by its fingerprint.

Why: the pacing rules (slot spacing, token corrections, the shared pause after a 429, the
concurrency that halves and recovers, the wait bound) are arithmetic on a shared timeline; they
are checked here on a clock the test moves, against the real SQLite store (two Store objects on
one file stand for two workers).
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from hl_notebook.server.ratelimit import (
    AdaptiveConcurrency, Budget, BudgetExhausted, KeyLimiter, LimitSyntaxError, ProviderLimiter, WaitCancelled,
    estimate_tokens, fingerprint, parse_limits, reported_tokens,
)
from hl_notebook.server.providers.anthropic import AnthropicProvider
from hl_notebook.server.providers.base import ProviderCall
from hl_notebook.server.providers.upstream import Upstreams
from hl_notebook.server.store import Store
from postgres import database_for
from support import ServerProcess
from tests.fakes import anthropic_server, quota_server, serve
from tests.server.helpers import sigterm_cancels_the_waiting_call

CANARY = "sk-LIMIT-CANARY-5e1d"
ONE_WORKER = ["--workers", "1"]  # stats of several workers add up only every 0.5 s (workers.StatsPublisher): exact counts need one


class Clock:
    """A clock the test moves: ``wait`` (the limiter's sleep, on its shutdown switch) advances it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        return False

    def is_set(self) -> bool:
        return False


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "buckets.sqlite"))


def stored(db_path: Path) -> bytes:
    """Everything the test server stored: the SQLite files, or (HL_TEST_DB) every PostgreSQL table's rows."""
    target = database_for(db_path)
    if not target.startswith("postgresql"):
        return b"".join(path.read_bytes() for path in db_path.parent.glob(db_path.name + "*"))
    import psycopg

    with psycopg.connect(target) as connection:
        tables = [row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(connection.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables).encode()


def limiter(store: Store, clock: Clock, budget: Budget, ceiling: int = 8) -> KeyLimiter:
    return KeyLimiter("openai", "0123abcd", budget, store, ceiling, clock)


# -- the syntax ---------------------------------------------------------------------------------

def test_parse_providers_and_key_overrides():
    table = parse_limits(["openai=500rpm,200000tpm; anthropic=50rpm", "openai@3fa2c1d0=100rpm"])
    assert table.budget("openai", "ffffffff") == Budget(500, 200000)
    assert table.budget("openai", "3fa2c1d0") == Budget(100, 200000)  # the override's units win, others stay
    assert table.budget("anthropic", "3fa2c1d0") == Budget(50, None)
    assert not parse_limits("") and not parse_limits([])


def test_override_alone_limits_only_that_key():
    table = parse_limits("anthropic@0123abcd=10tpm")
    assert table.budget("anthropic", "0123abcd") == Budget(None, 10)
    assert table.budget("anthropic", "99999999") is None


@pytest.mark.parametrize("text, says", [
    ("openai", "expected provider="),
    ("openai=500", "'500' is not a budget"),
    ("openai=500rps", "'500rps' is not a budget"),
    ("openai=0rpm", "must be above 0"),
    ("openai=5rpm,6rpm", "rpm given twice"),
    ("openai=5rpm;openai=6rpm", "has a budget already"),
    ("mock=5rpm", "only openai and anthropic"),
    ("llamacpp=5rpm", "only openai and anthropic"),
    ("openai@sk-abc=5rpm", "fingerprint"),
    ("openai@3FA2C1D0XX=5rpm", "fingerprint"),
])
def test_bad_syntax_is_one_line_naming_the_entry(text: str, says: str):
    with pytest.raises(LimitSyntaxError) as caught:
        parse_limits(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_bad_syntax_stops_the_server_with_exit_code_2(tmp_path: Path):
    run = subprocess.run([sys.executable, "-m", "hl_notebook.server", "--port", "0", "--api-key", "k" * 20,
                          "--db", str(tmp_path / "x.sqlite"), "--provider-limits", "openai=5rps"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "--provider-limits: 'openai=5rps': '5rps' is not a budget (use e.g. 500rpm or 200000tpm)"]


def test_fingerprint_is_sha256_prefix_and_only_keyed_passthrough_is_limited(store: Store):
    assert fingerprint("sk-test") == "f3abf2a6"  # `echo -n sk-test | sha256sum`, first 8 hex digits
    limits = ProviderLimiter(parse_limits(f"openai=60rpm;openai@{fingerprint('sk-b')}=30rpm"), store)
    assert limits.for_key("openai", "sk-a").budget == Budget(60, None)
    assert limits.for_key("openai", "sk-b").budget == Budget(30, None)
    assert limits.for_key("openai", "sk-a") is limits.for_key("openai", "sk-a")
    assert limits.for_key("openai", None) is None  # keyless (a local model server): not limited
    assert limits.for_key("anthropic", "sk-a") is None  # no budget for anthropic
    assert limits.for_key("mock", "sk-a") is None and limits.for_key("llamacpp", "sk-a") is None


def test_token_estimate_and_reported_usage():
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}], "n": 2, "max_tokens": 50}
    assert estimate_tokens(body) == len(__import__("json").dumps(body)) // 4 + 100
    assert estimate_tokens({"model": "m"}) == len('{"model": "m"}') // 4 + 256
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4_000_000}}
    with_image = {"model": "m", "messages": [{"role": "user", "content": [image]}], "max_tokens": 10}
    assert 1000 < estimate_tokens(with_image) < 1100  # not a million tokens for 4 MB of base64
    assert reported_tokens({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}) == 7
    assert reported_tokens({"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10}) == 17
    assert reported_tokens({}) is None and reported_tokens(None) is None


# -- the scheduler -----------------------------------------------------------------------------

def test_requests_are_spaced_by_the_rpm_budget(store: Store):
    clock = Clock()
    key = limiter(store, clock, Budget(rpm=60))
    for _ in range(4):
        key.admit(10, clock() + 60, clock)
        key.release(succeeded=True)
    assert clock.slept == [1.0, 1.0, 1.0]  # the first goes at once, then one per second
    assert key.counters.requests == 4 and key.counters.waited == 3


def test_two_workers_on_one_database_share_the_timeline(tmp_path: Path):
    clock = Clock()
    first, second = (limiter(Store(str(tmp_path / "shared.sqlite")), clock, Budget(rpm=30)) for _ in range(2))
    start = clock()
    for key in (first, second, first, second):
        key.admit(10, clock() + 60, clock)
        key.release(succeeded=True)
    assert clock() - start == 6.0  # 4 requests at 2 s each: the second worker waited for the first's slots


def test_tokens_are_reserved_then_corrected_by_usage(store: Store):
    clock = Clock()
    key = limiter(store, clock, Budget(tpm=600))  # 10 tokens a second
    key.admit(100, clock() + 600, clock)  # 10 s reserved
    key.release(succeeded=True)
    key.settle(100, 40)  # it spent 40: 6 s given back
    assert key.next_free() - clock() == pytest.approx(4.0)
    key.settle(40, 100)  # a count above the estimate takes more
    assert key.next_free() - clock() == pytest.approx(10.0)
    key.settle(100, None)  # unknown usage keeps the estimate
    assert key.next_free() - clock() == pytest.approx(10.0)


def test_a_429_pauses_the_key_for_everyone_and_halves_concurrency(tmp_path: Path):
    clock = Clock()
    one, other = (limiter(Store(str(tmp_path / "shared.sqlite")), clock, Budget(rpm=600, tpm=60000))
                  for _ in range(2))
    one.throttled(retry_after=30)
    assert one.concurrency.limit == 4 and one.counters.rate_limited == 1
    other.admit(10, clock() + 60, clock)  # another worker's next request waits for the pause
    assert clock.slept == [30.0]
    one.throttled(retry_after=None)  # no Retry-After: a one-second pause
    assert one.next_free() - clock() == pytest.approx(1.0)


def test_concurrency_halves_and_recovers_by_half_after_five_successes_never_above_ceiling():
    never = threading.Event()
    level = AdaptiveConcurrency(ceiling=16)
    level.throttle(), level.throttle(), level.throttle()
    assert level.limit == 2
    seen = []
    for _ in range(40):
        assert level.acquire(time.time() + 1, never)
        level.release(succeeded=True)
        seen.append(level.limit)
    assert seen[4] == 3 and seen[9] == 4 and seen[14] == 6 and max(seen) == 16 == seen[-1]
    for _ in range(10):
        level.throttle()
    assert level.limit == 1


def test_no_slot_within_the_bound_is_refused_without_reserving(store: Store):
    clock = Clock()
    key = limiter(store, clock, Budget(rpm=60))
    key.throttled(retry_after=100)
    before = store.buckets()
    with pytest.raises(BudgetExhausted) as caught:
        key.admit(10, clock() + 50, clock)
    assert caught.value.retry_after == pytest.approx(100)
    assert store.buckets() == before and key.concurrency.in_flight == 0 and key.counters.refused == 1


def test_a_call_queued_for_its_slot_holds_no_concurrency_place(store: Store):
    """Places bound requests at the upstream: a queue holding them all kept a 429's retry out until it drained."""
    key = KeyLimiter("openai", "0123abcd", Budget(rpm=60), store, ceiling=1)
    never = threading.Event()
    key.admit(10, time.time() + 60, never)
    key.release(succeeded=True)
    queued = threading.Thread(target=key.admit, args=(10, time.time() + 60, never))
    queued.start()  # its slot is a second away
    time.sleep(0.5)
    assert queued.is_alive() and key.concurrency.in_flight == 0
    queued.join(5)
    assert key.concurrency.in_flight == 1


def test_a_full_concurrency_refuses_at_the_deadline(store: Store):
    key = KeyLimiter("openai", "0123abcd", Budget(rpm=60000), store, ceiling=1)
    never = threading.Event()
    key.admit(10, time.time() + 5, never)
    started = time.monotonic()
    with pytest.raises(BudgetExhausted):
        key.admit(10, time.time() + 0.3, never)
    assert 0.25 < time.monotonic() - started < 5


@pytest.mark.parametrize("blocked_on", ["slot", "concurrency"])
def test_shutdown_ends_a_wait_at_once(store: Store, blocked_on: str):
    key = KeyLimiter("openai", "0123abcd", Budget(rpm=60 if blocked_on == "slot" else 600000), store, ceiling=1)
    switch = threading.Event()
    key.admit(10, time.time() + 600, switch)  # the only place, and (rpm=60) the next second's slot
    if blocked_on == "slot":
        key.release(succeeded=True)
    ended: list[BaseException] = []

    def wait() -> None:
        try:
            key.admit(10, time.time() + 600, switch)
        except BaseException as exc:  # noqa: BLE001 - the test reads what it was
            ended.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive()
    started = time.monotonic()
    switch.set()
    key.concurrency.wake()
    waiter.join(5)
    assert not waiter.is_alive() and time.monotonic() - started < 1
    assert isinstance(ended[0], WaitCancelled)


def test_each_upstream_request_is_paced_and_its_tokens_settled(store: Store):
    """Anthropic's samples are one request each, plain and streamed: each takes a slot, and the
    tokens bucket ends at what the fake reported (5 tokens a request), not at the estimates."""
    clock = Clock()  # fixed: the buckets' times add up exactly (the real waits are milliseconds)
    limits = ProviderLimiter(parse_limits("anthropic=60000tpm"), store, clock=clock)  # 1,000 tokens/s
    with serve(anthropic_server.create_app(CANARY)) as url:
        provider = AnthropicProvider(Upstreams(limiter=limits))
        call = ProviderCall({"model": "m", "provider": "anthropic", "max_tokens": 50, "other": {"base_url": url}},
                            [{"role": "user", "content": "hello world"}], 2, {"anthropic": CANARY})
        result = provider.complete(call)
        streamed = list(provider.stream(call))
    assert result.prompt_tokens == 4 and result.generation_tokens == 6 and streamed[-1].generation_tokens == 6
    [entry] = limits.snapshot()
    assert entry["fingerprint"] == fingerprint(CANARY) and entry["requests"] == 4 and entry["in_flight"] == 0
    assert store.buckets() == {f"anthropic@{fingerprint(CANARY)}:tpm": pytest.approx(clock() + 4 * 5 / 1000, abs=1e-6)}


# -- the server: stats, and the key kept out of everything --------------------------------------

def test_stats_name_keys_by_fingerprint_and_never_show_the_key(tmp_path: Path):
    """A canary key through paced calls, upstream 429s, a refusal and a stream: stats show its
    fingerprint with budget, concurrency and counters; neither they, the responses, the server's
    output nor its database hold the key."""
    quota = quota_server.SlidingWindow(limit=3, window=2.0)
    with serve(quota_server.create_app(quota)) as upstream:
        config = {"model": "m", "provider": "openai", "temperature": 0, "other": {"base_url": upstream + "/v1"}}
        server = ServerProcess(tmp_path / "hl.sqlite", extra_args=[
            *ONE_WORKER, "--provider-limits", "openai=600rpm", "--upstream-timeout", "30"]).start()
        try:
            seen = []
            for index in range(6):  # 600 rpm is faster than 3 per 2 s: the upstream answers 429 too
                body = {"messages": [{"role": "user", "content": f"hi {index}"}], "model_config": config,
                        "provider_api_keys": {"openai": CANARY}, "stream": index == 5}
                answer = server.post("/chat", body)
                assert answer.status_code == 200, answer.text + "".join(server.output)[-3000:]
                seen.append(answer.text)
            short = {**config, "other": {**config["other"], "timeout": 0.5}}  # waits at most 0.5 s
            server.post("/server-stats/reset", {})
            for _ in range(4):
                seen.append(server.post("/chat", {"messages": [{"role": "user", "content": "x"}], "model_config": short,
                                                  "provider_api_keys": {"openai": CANARY}}).text)
            stats = server.get("/server-stats").json()
        finally:
            server.stop()
    assert {"in_flight", "max_in_flight", "requests"} <= set(stats)
    [entry] = stats["provider_limits"]
    assert entry["provider"] == "openai" and entry["fingerprint"] == fingerprint(CANARY)
    assert entry["rpm"] == 600 and entry["tpm"] is None and entry["concurrency_ceiling"] == 128
    assert entry["concurrency"] < 128 and entry["rate_limited"] >= 1 and entry["refused"] >= 1
    assert quota.refused[CANARY] >= 1
    everything = "\n".join([str(stats), *seen, *server.output]).encode() + stored(tmp_path / "hl.sqlite")
    assert CANARY.encode() not in everything and b"LIMIT-CANARY" not in everything


def test_sigterm_ends_a_call_waiting_for_its_slot(tmp_path: Path):
    """A call queued for a slot a minute away neither holds SIGTERM nor answers late: 502 upstream_cancelled."""
    quota = quota_server.SlidingWindow(limit=100, window=60.0)
    with serve(quota_server.create_app(quota)) as upstream:
        server = ServerProcess(tmp_path / "hl.sqlite", extra_args=[*ONE_WORKER, "--provider-limits", "openai=1rpm"]).start()
        body = {"messages": [{"role": "user", "content": "hi"}], "provider_api_keys": {"openai": CANARY},
                "model_config": {"model": "m", "provider": "openai", "other": {"base_url": upstream + "/v1"}}}
        answers: list[requests.Response] = []
        try:
            assert server.post("/chat", body).status_code == 200  # takes this minute's slot
            waiting = threading.Thread(target=lambda: answers.append(server.post("/chat", body)), daemon=True)
            waiting.start()
            while not server.get("/server-stats").json()["provider_limits"][0]["waited"]:
                time.sleep(0.05)
            sigterm_cancels_the_waiting_call(server, waiting, answers)
        finally:
            server.stop()
    assert quota.accepted[CANARY] == 1


def test_a_call_whose_slot_is_over_a_minute_away_is_a_429_with_retry_after_at_once(tmp_path: Path):
    """The wait is bounded by MAX_SLOT_WAIT (60 s), below the client's 120 s call deadline: the
    notebook gets a 429 it retries after Retry-After, not a timeout row, and nothing is sent upstream."""
    quota = quota_server.SlidingWindow(limit=100, window=60.0)
    with serve(quota_server.create_app(quota)) as upstream:
        body = {"messages": [{"role": "user", "content": "hi"}], "provider_api_keys": {"openai": CANARY},
                "model_config": {"model": "m", "provider": "openai", "other": {"base_url": upstream + "/v1"}}}
        with ServerProcess(tmp_path / "hl.sqlite", extra_args=["--provider-limits", "openai=0.5rpm"]) as server:
            assert server.post("/chat", body).status_code == 200  # the next slot is 120 s away
            began = time.monotonic()
            refused = server.post("/chat", body)
            assert time.monotonic() - began < 10
    assert refused.status_code == 429 and 100 <= int(refused.headers["Retry-After"]) <= 120
    assert refused.json()["detail"]["type"] == "rate_limit_error"
    assert "rate budget of this key (0.5rpm, --provider-limits) has no free slot" in refused.json()["detail"]["message"]
    assert quota.accepted[CANARY] == 1
