"""Expansion of one call description into many ChatSpecs: config axes × inputs rows.

Why: the magic's comma lists, ``--configs``, the panel's comparison list and ``sweep()`` all mean
"the cartesian product, in declared order"; one function builds it so every front end agrees.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import HLUsageError
from .spec import CONFIG_PARAMS, ChatSpec, validate_spec
from .errors import MissingInputError
from .template import missing_inputs

# axes that select something other than inline config parameters
SELECTOR_AXES = ("model_config_id", "experiment_id", "environment")


def axis_product(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, first axis varying slowest; [{}] without axes."""
    names = [name for name, values in axes.items() if values]
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def rows_of(value: Any, what: str) -> list[dict[str, Any]]:
    """A dict -> [dict]; a list of dicts or a DataFrame -> its rows (column names as keys)."""
    if value is None:
        return [{}]
    if isinstance(value, Mapping):
        return [dict(value)]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and hasattr(value, "columns"):
        return [{str(k): v for k, v in row.items()} for row in to_dict(orient="records")]
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        rows = list(value)
        if all(isinstance(row, Mapping) for row in rows) and rows:
            return [dict(row) for row in rows]
    raise HLUsageError(f"{what} must be a dict, a list of dicts or a DataFrame, not {type(value).__name__}")


def expand(base: ChatSpec, *, axes: Mapping[str, Sequence[Any]] | None = None,
           configs: Sequence[Mapping[str, Any]] | None = None,
           inputs_rows: Sequence[Mapping[str, Any]] | None = None) -> list[ChatSpec]:
    """ChatSpecs for configs × inputs rows, in that order (configs vary slowest).

    Args:
        base: the shared description (endpoint, messages, fixed options).
        axes: option name -> values; combined as a cartesian product.
        configs: explicit config dicts (instead of, or multiplied with, the axes product).
        inputs_rows: one request per row; each row is merged over ``base.inputs``.

    Raises:
        MissingInputError: a template variable has no value in some row (nothing is sent).
    """
    variants = [dict(v) for v in (configs or [{}])]
    variants = [{**combo, **variant} for variant in variants for combo in axis_product(axes or {})]
    specs = []
    for variant in variants:
        spec = _apply(base, variant)
        for row in inputs_rows or [{}]:
            specs.append(spec.with_inputs({**base.inputs, **row}))
    for spec in specs:
        validate_spec(spec)
        missing = missing_inputs(spec.messages, spec.inputs)
        if missing:
            raise MissingInputError(missing)
    return specs


def _apply(base: ChatSpec, variant: Mapping[str, Any]) -> ChatSpec:
    config = dict(base.model_config)
    selectors: dict[str, Any] = {}
    for name, value in variant.items():
        if name in CONFIG_PARAMS:
            config[name] = value
        elif name in SELECTOR_AXES:
            selectors[name] = value
        elif name in ("project", "num_samples"):
            selectors[name] = value
        else:
            raise HLUsageError(f"unknown config field {name!r}: use {', '.join([*CONFIG_PARAMS, *SELECTOR_AXES])}")
    return replace(base, model_config=config, **selectors)
