"""Budgets per provider key: requests/min and tokens/min shared by every thread, worker and client of
one database, and one back-off for everyone when the provider still answers 429.

Why: notebooks back off on their own, so two colleagues sweeping against one provider key tripped
each other's rate limits. The server sees every call made with a key, so it paces them: each
upstream request reserves the next slot on the key's timeline in the database
(``Store.advance_bucket``, a GCRA-style scheduler: one request costs ``60/rpm`` seconds of the
requests bucket and ``tokens * 60/tpm`` of the tokens bucket) and sleeps until its slot. Keys are
known here only by their fingerprint (the first 8 hex digits of their SHA-256), never by value.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

LIMITED_PROVIDERS = ("openai", "anthropic")  # pass-through providers that spend a key's quota
UNITS = ("rpm", "tpm")
DEFAULT_OUTPUT_TOKENS = 256  # a request's output estimate when it sets no max_tokens (corrected afterwards)
IMAGE_TOKENS = 1000  # an inline image's estimate (OpenAI counts 85-1105 for one image at detail high)
DEFAULT_PAUSE = 1.0  # seconds everyone waits after a 429 that named no Retry-After
RECOVER_AFTER = 5  # successes in a row before this process's concurrency for a key grows again
GROWTH = 1.5
WAIT_SLICE = 0.25  # seconds between looks at the shutdown switch while waiting for a concurrency slot
_ENTRY = re.compile(r"(?P<provider>[a-z][a-z0-9_-]*)(?:@(?P<fingerprint>[^=]*))?=(?P<budget>.*)")
_AMOUNT = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[a-z]+)")
_FINGERPRINT = re.compile(r"[0-9a-f]{8}")


class LimitSyntaxError(ValueError):
    """A ``--provider-limits`` value that cannot be read; its message is one line naming the part."""


class WaitCancelled(Exception):
    """The server is shutting down while the call waited for its slot."""


class BudgetExhausted(Exception):
    """The key's next free slot is later than the call may wait; ``retry_after`` says when it is."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the provider key's budget has no free slot for {retry_after:.1f} s")
        self.retry_after = retry_after


class Buckets(Protocol):
    """What the limiter needs of the store: the shared timelines (``store.Store`` has both)."""

    def advance_bucket(self, bucket: str, not_before: float, cost: float) -> float: ...

    def buckets(self) -> dict[str, float]: ...


def fingerprint(key: str) -> str:
    """How a key is named in limits, stats and the database: 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class Budget:
    """Requests and tokens per minute (None: that unit is not limited)."""

    rpm: float | None = None
    tpm: float | None = None

    def over(self, base: "Budget | None") -> "Budget":
        """This budget with the units it leaves unset taken from ``base``."""
        if base is None:
            return self
        return Budget(self.rpm if self.rpm is not None else base.rpm, self.tpm if self.tpm is not None else base.tpm)

    def describe(self) -> str:
        return ",".join(f"{value:g}{unit}" for unit, value in (("rpm", self.rpm), ("tpm", self.tpm)) if value)


@dataclass(frozen=True)
class LimitTable:
    """The parsed ``--provider-limits``: a budget per provider, and overrides per key fingerprint."""

    providers: Mapping[str, Budget] = field(default_factory=dict)
    keys: Mapping[tuple[str, str], Budget] = field(default_factory=dict)

    def budget(self, provider: str, key_fingerprint: str) -> Budget | None:
        """The key's budget: its override's units, the others from its provider's (None: unlimited)."""
        override = self.keys.get((provider, key_fingerprint))
        base = self.providers.get(provider)
        return override.over(base) if override is not None else base

    def __bool__(self) -> bool:
        return bool(self.providers or self.keys)


def parse_limits(text: str | Iterable[str]) -> LimitTable:
    """``openai=500rpm,200000tpm;anthropic=50rpm;openai@3fa2c1d0=100rpm`` as a LimitTable.

    Entries are separated by ``;`` (or given as several strings); each is ``provider=budget`` or
    ``provider@fingerprint=budget``, the budget a comma list of ``<number>rpm`` and ``<number>tpm``.
    An override replaces the units it names and keeps its provider's others.

    Raises:
        LimitSyntaxError: an entry that is malformed, repeated, for a provider that is not limited
            (mock, llamacpp), or with a fingerprint that is not 8 lowercase hex digits.
    """
    parts = [text] if isinstance(text, str) else list(text)
    entries = [e.strip() for part in parts for e in part.split(";") if e.strip()]
    providers: dict[str, Budget] = {}
    keys: dict[tuple[str, str], Budget] = {}
    for entry in entries:
        match = _ENTRY.fullmatch(entry.replace(" ", "").lower())
        if match is None:
            raise LimitSyntaxError(f"{entry!r}: expected provider=NUMBERrpm,NUMBERtpm "
                                   "(or provider@fingerprint=...), entries separated by ';'")
        provider, key_fingerprint = match["provider"], match["fingerprint"]
        if provider not in LIMITED_PROVIDERS:
            raise LimitSyntaxError(f"{entry!r}: only {' and '.join(LIMITED_PROVIDERS)} calls are limited "
                                   f"(not {provider!r})")
        if key_fingerprint is not None and not _FINGERPRINT.fullmatch(key_fingerprint):
            raise LimitSyntaxError(f"{entry!r}: a key is named by its fingerprint, the first 8 hex digits of "
                                   "the SHA-256 of the key (never the key itself)")
        budget = _budget(entry, match["budget"])
        table: dict[Any, Budget] = providers if key_fingerprint is None else keys
        name = provider if key_fingerprint is None else (provider, key_fingerprint)
        if name in table:
            raise LimitSyntaxError(f"{entry!r}: {provider}{'@' + key_fingerprint if key_fingerprint else ''} "
                                   "has a budget already")
        table[name] = budget
    return LimitTable(providers, keys)


def _budget(entry: str, text: str) -> Budget:
    values: dict[str, float] = {}
    for amount in text.split(","):
        match = _AMOUNT.fullmatch(amount)
        if match is None or match["unit"] not in UNITS:
            raise LimitSyntaxError(f"{entry!r}: {amount!r} is not a budget (use e.g. 500rpm or 200000tpm)")
        value = float(match["number"])
        if not math.isfinite(value) or value <= 0:
            raise LimitSyntaxError(f"{entry!r}: {amount!r} must be above 0")
        if match["unit"] in values:
            raise LimitSyntaxError(f"{entry!r}: {match['unit']} given twice")
        values[match["unit"]] = value
    return Budget(values.get("rpm"), values.get("tpm"))


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """What a request may spend before its usage is known: its JSON's characters / 4 for the prompt
    (an inline ``data:`` image counts IMAGE_TOKENS, not its base64 length), plus ``max_tokens``
    (else DEFAULT_OUTPUT_TOKENS) per requested choice."""
    prompt = len(json.dumps(_without_inline_data(body), ensure_ascii=False, default=str)) // 4
    output = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_OUTPUT_TOKENS
    choices = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 0) > 0 else 1
    return prompt + int(output) * choices


def _without_inline_data(value: Any) -> Any:
    """``value`` with each ``data:`` URL (a base64 image) replaced by text of IMAGE_TOKENS tokens."""
    if isinstance(value, str):
        return "." * (4 * IMAGE_TOKENS) if value.startswith("data:") and len(value) > 4 * IMAGE_TOKENS else value
    if isinstance(value, Mapping):
        return {k: _without_inline_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_inline_data(v) for v in value]
    return value


def reported_tokens(usage: Any) -> int | None:
    """Tokens a response says it spent (OpenAI's or Anthropic's usage object); None when it says nothing."""
    if not isinstance(usage, Mapping):
        return None

    def number(name: str) -> int | None:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    if number("total_tokens") is not None:
        return number("total_tokens")
    names = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
             "cache_creation_input_tokens", "cache_read_input_tokens")
    counts = [number(name) for name in names if number(name) is not None]
    return sum(counts) if counts else None  # type: ignore[arg-type]


class AdaptiveConcurrency:
    """This process's bound on a key's requests in flight: halved on a 429, ×1.5 after
    RECOVER_AFTER successes in a row, never above ``ceiling`` nor below 1 (promptfoo's rule).

    Why: the shared budget paces requests, but a provider that still answers 429 (another client
    of the key, a budget set too high) is best met with fewer requests at once until it recovers.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = self.ceiling
        self.in_flight = 0
        self._streak = 0
        self._changed = threading.Condition()

    def acquire(self, deadline: float, cancelled: threading.Event, clock: Callable[[], float] = time.time) -> bool:
        """Take a place; False when ``deadline`` passed first. Raises WaitCancelled at shutdown."""
        with self._changed:
            while self.in_flight >= self.limit:
                if cancelled.is_set():
                    raise WaitCancelled()
                remaining = deadline - clock()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, WAIT_SLICE))
            self.in_flight += 1
            return True

    def release(self, succeeded: bool) -> None:
        with self._changed:
            self.in_flight -= 1
            if succeeded:
                self._streak += 1
                if self._streak >= RECOVER_AFTER and self.limit < self.ceiling:
                    self.limit = min(self.ceiling, max(self.limit + 1, int(self.limit * GROWTH)))
                    self._streak = 0
            self._changed.notify_all()

    def throttle(self) -> None:
        with self._changed:
            self.limit = max(1, self.limit // 2)
            self._streak = 0

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()


@dataclass
class KeyCounters:
    """What one key's calls met in this process (since start or the last stats reset)."""

    requests: int = 0  # upstream requests admitted
    waited: int = 0  # of those, how many slept for their slot
    rate_limited: int = 0  # upstream 429 answers
    retries: int = 0  # requests sent again after a 429
    refused: int = 0  # calls answered 429 here: no slot within their bound


class KeyLimiter:
    """The pacing of one (provider, key fingerprint): its shared buckets and this process's concurrency."""

    def __init__(self, provider: str, key_fingerprint: str, budget: Budget, store: Buckets, ceiling: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.provider, self.fingerprint, self.budget = provider, key_fingerprint, budget
        self.store, self.clock = store, clock
        self.concurrency = AdaptiveConcurrency(ceiling)
        self.counters = KeyCounters()
        self._lock = threading.Lock()
        self.rpm_bucket = f"{provider}@{key_fingerprint}:rpm"
        self.tpm_bucket = f"{provider}@{key_fingerprint}:tpm"

    def admit(self, tokens: int, deadline: float, cancelled: threading.Event) -> None:
        """Wait for the key's next slot (requests, then tokens), then for a concurrency place, and
        return: the caller sends its request and ends with ``release``.

        The place is taken after the slot: concurrency bounds requests at the upstream, not the
        ones queued for their slot (a queue holding every place kept retries out until it drained).

        Raises:
            BudgetExhausted: no slot, or no place, before ``deadline`` (a slot not reached stays free).
            WaitCancelled: the server is shutting down.
        """
        self._wait_for_slot(tokens, deadline, cancelled)
        if not self.concurrency.acquire(deadline, cancelled, self.clock):
            self._count("refused")
            raise BudgetExhausted(DEFAULT_PAUSE)
        self._count("requests")

    def _wait_for_slot(self, tokens: int, deadline: float, cancelled: threading.Event) -> None:
        now, free = self.clock(), self.next_free()
        if free > deadline:  # a look first, so a call that cannot go reserves nothing
            self._count("refused")
            raise BudgetExhausted(free - now)
        slot, reserved = now, []
        for bucket, cost in self._costs(tokens):
            slot = max(slot, self.store.advance_bucket(bucket, slot, cost))
            reserved.append((bucket, cost))
        if slot > deadline:  # another caller took the slot we saw: give ours back
            for bucket, cost in reserved:
                self.store.advance_bucket(bucket, 0.0, -cost)
            self._count("refused")
            raise BudgetExhausted(slot - now)
        delay = slot - self.clock()
        if delay > 0:
            self._count("waited")
            if cancelled.wait(delay):
                raise WaitCancelled()
        if cancelled.is_set():
            raise WaitCancelled()

    def _costs(self, tokens: int) -> list[tuple[str, float]]:
        costs = []
        if self.budget.rpm:
            costs.append((self.rpm_bucket, 60.0 / self.budget.rpm))
        if self.budget.tpm:
            costs.append((self.tpm_bucket, max(tokens, 0) * 60.0 / self.budget.tpm))
        return costs

    def release(self, succeeded: bool) -> None:
        """The request admitted last by this caller has ended (``succeeded``: a 2xx answer)."""
        self.concurrency.release(succeeded)

    def settle(self, estimate: int, actual: int | None) -> None:
        """Correct the tokens bucket by what a request really spent (an unknown count keeps the estimate)."""
        if self.budget.tpm and actual is not None and actual != estimate:
            self.store.advance_bucket(self.tpm_bucket, 0.0, (actual - estimate) * 60.0 / self.budget.tpm)

    def throttled(self, retry_after: float | None) -> None:
        """An upstream 429: nobody sends with this key before Retry-After, and this process sends fewer at once."""
        until = self.clock() + (DEFAULT_PAUSE if retry_after is None else retry_after)
        for bucket, _ in self._costs(0):
            self.store.advance_bucket(bucket, until, 0.0)
        self.concurrency.throttle()
        self._count("rate_limited")

    def retried(self) -> None:
        self._count("retries")

    def next_free(self, buckets: Mapping[str, float] | None = None) -> float:
        """When the key's next request could go (the later of its buckets' times, or now)."""
        times = self.store.buckets() if buckets is None else buckets
        return max([self.clock(), *(times[b] for b, _ in self._costs(0) if b in times)])

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def snapshot(self, buckets: Mapping[str, float]) -> dict[str, Any]:
        with self._lock:
            counters = dict(vars(self.counters))
        return {"provider": self.provider, "fingerprint": self.fingerprint, "rpm": self.budget.rpm,
                "tpm": self.budget.tpm, "concurrency": self.concurrency.limit,
                "concurrency_ceiling": self.concurrency.ceiling, "in_flight": self.concurrency.in_flight,
                **counters, "next_slot_in_s": round(max(0.0, self.next_free(buckets) - self.clock()), 3)}

    def reset(self) -> None:
        with self._lock:
            self.counters = KeyCounters()


class ProviderLimiter:
    """Every key's limiter in this process, made on a key's first call from the configured table.

    ``ceiling`` bounds each key's concurrency in this process (the server's chat threads). Calls
    without a key (a local model server) and providers without a budget are not limited.
    """

    def __init__(self, table: LimitTable, store: Buckets, ceiling: int = 128,
                 clock: Callable[[], float] = time.time) -> None:
        self.table, self.store, self.ceiling, self.clock = table, store, ceiling, clock
        self._keys: dict[tuple[str, str], KeyLimiter] = {}
        self._lock = threading.Lock()

    def for_key(self, provider: str, key: str | None) -> KeyLimiter | None:
        """The limiter of ``provider`` calls made with ``key``; None when they are not limited."""
        if not key or not self.table or provider not in LIMITED_PROVIDERS:
            return None
        return self._limiter(provider, fingerprint(key))

    def _limiter(self, provider: str, key_fingerprint: str) -> KeyLimiter | None:
        budget = self.table.budget(provider, key_fingerprint)
        if budget is None:
            return None
        with self._lock:
            limiter = self._keys.get((provider, key_fingerprint))
            if limiter is None:
                limiter = self._keys[(provider, key_fingerprint)] = KeyLimiter(
                    provider, key_fingerprint, budget, self.store, self.ceiling, self.clock)
            return limiter

    def wake(self) -> None:
        """Wake every call waiting for a concurrency place (the server is shutting down)."""
        with self._lock:
            limiters = list(self._keys.values())
        for limiter in limiters:
            limiter.concurrency.wake()

    def snapshot(self) -> list[dict[str, Any]]:
        """Per key: budget, concurrency, this process's counters, seconds until its next free slot.

        Keys other workers of the database used appear too (from their buckets), with this
        process's counters (zero)."""
        if not self.table:
            return []
        buckets = self.store.buckets()
        for name in buckets:
            provider, _, rest = name.partition("@")
            key_fingerprint = rest.partition(":")[0]
            if provider in LIMITED_PROVIDERS and _FINGERPRINT.fullmatch(key_fingerprint):
                self._limiter(provider, key_fingerprint)
        with self._lock:
            limiters = sorted(self._keys.values(), key=lambda k: (k.provider, k.fingerprint))
        return [limiter.snapshot(buckets) for limiter in limiters]

    def reset(self) -> None:
        with self._lock:
            limiters = list(self._keys.values())
        for limiter in limiters:
            limiter.reset()
