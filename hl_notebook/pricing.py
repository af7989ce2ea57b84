"""Cost per row: ``cost_usd`` from the token columns and a price table (USD per million tokens).

Why: a decision between configs weighs quality against money. Prices are data, not code: the table
ships as ``prices.json`` with a date and a source for every price, and ``set_price`` overrides or
adds prices for this session. A model without a price costs NA — never a guess from a similar
name — except on the ``mock`` provider, which costs 0 unless a price is set for it.

Which price applies to a row (``provider``, ``model`` columns), first found:
``set_price(model, provider=P)`` for the row's provider; ``set_price(model)`` (any provider);
the shipped table for (provider, model); 0 for the ``mock`` provider; else NA.

``cost_usd = prompt tokens × prompt price / 1e6 + generation tokens × generation price / 1e6``
is per call, like the frame's ``call_prompt_tokens``/``call_generation_tokens``: on the call's
first row, <NA> on its other sample rows, so ``df.cost_usd.sum()`` over any frame (a sweep, a filter,
history) counts each call once. A frame saved before the token counts were per call (``prompt_tokens``/
``generation_tokens`` repeated on every sample row, e.g. an old CSV) is priced once per call too.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HLUsageError
from .plan import is_missing

if TYPE_CHECKING:
    import pandas as pd

PRICES_FILE = Path(__file__).with_name("prices.json")
FREE_PROVIDERS = ("mock",)


@dataclass(frozen=True)
class Price:
    """USD per million prompt and per million generation tokens, with where the figure comes from."""

    prompt: float
    generation: float
    date: str | None = None
    source: str | None = None


_overrides: dict[tuple[str | None, str], Price] = {}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def shipped_prices() -> dict[tuple[str, str], Price]:
    """The package's price table, by (provider, model)."""
    table = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    return {(entry["provider"], model): Price(float(entry["prompt"]), float(entry["generation"]), entry["date"],
                                              entry["source"])
            for entry in table["prices"] for model in entry["models"]}


def set_price(model: str, *, prompt: float, generation: float, provider: str | None = None) -> None:
    """Set this session's price for ``model`` in USD per million tokens (overrides the shipped table).

    Args:
        model: the model name exactly as in the frame's ``model`` column.
        prompt: USD per million prompt tokens.
        generation: USD per million generation tokens.
        provider: only for this provider; None (default) for the model on any provider, ``mock`` included.

    Raises:
        HLUsageError: an empty model name, or a price that is not a finite number >= 0.
    """
    if not isinstance(model, str) or not model:
        raise HLUsageError(f"set_price: the model must be a non-empty string, not {model!r}")
    values = {}
    for label, value in (("prompt", prompt), ("generation", generation)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise HLUsageError(f"set_price: {label}={value!r} must be a number of USD per million tokens, >= 0")
        values[label] = float(value)
    with _lock:
        _overrides[(provider or None, model)] = Price(values["prompt"], values["generation"], None, "set_price")


def clear_prices() -> None:
    """Forget every ``set_price`` of this session (the shipped table stays)."""
    with _lock:
        _overrides.clear()


def price_of(provider: Any, model: Any) -> Price | None:
    """The price for a row (rules in the module docstring), or None when it is unknown."""
    if is_missing(model):
        return None
    provider = None if is_missing(provider) else str(provider)
    model = str(model)
    with _lock:
        found = _overrides.get((provider, model)) if provider else None
        found = found or _overrides.get((None, model))
    if found is None and provider:
        found = shipped_prices().get((provider, model))
    if found is None and provider in FREE_PROVIDERS:
        found = Price(0.0, 0.0, None, f"{provider} provider")
    return found


def add_cost(df: "pd.DataFrame") -> "pd.DataFrame":
    """A new frame: ``df`` with ``cost_usd`` (Float64, per call: see the module docstring) after its
    token columns, replacing an older one.

    A call costs NA when its price is unknown or its token counts are missing (a failed call).
    """
    import pandas as pd

    from .frame import LEGACY_TOKEN_COLUMNS, TOKEN_COLUMNS, result_frame

    index = df.index
    providers = df["provider"] if "provider" in df.columns else pd.Series(None, index=index, dtype="object")
    models = df["model"] if "model" in df.columns else pd.Series(None, index=index, dtype="object")
    prices = [price_of(p, m) for p, m in zip(providers.tolist(), models.tolist())]
    per_prompt = pd.Series([p.prompt if p else None for p in prices], index=index, dtype="Float64")
    per_generation = pd.Series([p.generation if p else None for p in prices], index=index, dtype="Float64")
    prompt, generation = call_tokens(df)
    cost = (prompt * per_prompt + generation * per_generation) / 1e6
    frame = pd.DataFrame(df).drop(columns=["cost_usd"], errors="ignore")
    after = [c for c in (*reversed(TOKEN_COLUMNS), *reversed(list(LEGACY_TOKEN_COLUMNS))) if c in frame.columns]
    position = frame.columns.get_loc(after[0]) + 1 if after else len(frame.columns)
    frame.insert(position, "cost_usd", cost.astype("Float64"))
    return result_frame(frame)


def call_tokens(df: "pd.DataFrame") -> tuple["pd.Series", "pd.Series"]:
    """Prompt and generation tokens, once per call (Float64, <NA> elsewhere)."""
    import pandas as pd

    from .frame import LEGACY_TOKEN_COLUMNS, TOKEN_COLUMNS

    legacy = list(LEGACY_TOKEN_COLUMNS)
    per_call = TOKEN_COLUMNS[0] in df.columns or legacy[0] not in df.columns
    names = TOKEN_COLUMNS[:2] if per_call else legacy[:2]
    columns = [pd.to_numeric(df[name], errors="coerce").astype("Float64") if name in df.columns
               else pd.Series(None, index=df.index, dtype="Float64") for name in names]
    if not per_call:  # repeated on each sample row: keep the call's first row
        ids = [c for c in ("session", "run", "call_key" if "call_key" in df.columns else "call") if c in df.columns]
        if ids:
            repeat = pd.DataFrame(df)[ids].astype("string").fillna("").duplicated().to_numpy()
            columns = [column.mask(repeat) for column in columns]
    return columns[0], columns[1]
