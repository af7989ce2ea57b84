"""Stage 1, plan: user intent (magic options, ``chat()``/``sweep()`` arguments, panel state) -> ChatSpecs.

Why: every front end calls ``make_specs``, so the same inputs give the same specs (and therefore
the same DataFrame). Everything here runs before any network call and imports neither the server
nor ``requests``: a mistake is reported with nothing sent, and rejecting a bad cell stays cheap.
Values from pandas and numpy are made plain JSON here (pitfalls 14, 15), so nothing later can fail
on NaN, ``np.int64`` or a timestamp.
"""
from __future__ import annotations

import ast
import datetime as dt
import itertools
import math
import re
import warnings
from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import HLUsageError, MissingInputError, did_you_mean
from .spec import PARAMETER, PARAMETERS, ChatSpec, choose_endpoint, validate_spec
from .template import variables

# what picks a config other than inline parameters; each takes several values too
SELECTORS = ("model_config_id", "experiment_id", "environment")
# options that take several values (sweep axes): inline parameters and config selectors
AXIS_NAMES = [*(p.name for p in PARAMETERS if p.sweep), *SELECTORS]
# fields a config row (``--configs``, ``configs=``, the panel's comparison list) may set
CONFIG_FIELDS = [*(p.name for p in PARAMETERS), "other", *SELECTORS, "project", "num_samples"]


# -- plain JSON values -------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    """None, NaN, ``pd.NA`` or ``NaT``: an empty cell, whatever pandas made of it."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def plain(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data: missing -> None, numpy scalars -> Python, times -> ISO text.

    Raises:
        HLUsageError: an infinite number (JSON has none), naming ``where``.
    """
    if is_missing(value):
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, (str, int)):  # numpy's str_/int64 subclasses become the plain types too
        return str(value) if isinstance(value, str) else int(value)
    if isinstance(value, float):
        if math.isinf(value):
            raise HLUsageError(f"{where}: {value} is not a finite number")
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return plain(value.item(), where)
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays, pandas Series
        return plain(value.tolist(), where)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "isoformat"):  # pd.Timestamp is a datetime; other time-likes too
        return value.isoformat()
    return str(value)


def rows_of(value: Any, what: str) -> list[dict[str, Any]]:
    """A dict -> [dict]; a list of dicts or a DataFrame -> its rows (column names as keys), plain;
    an empty list or DataFrame -> no rows."""
    if value is None:
        return [{}]
    if isinstance(value, Mapping):
        rows = [value]
    elif callable(getattr(value, "to_dict", None)) and hasattr(value, "columns"):
        rows = value.to_dict(orient="records")
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        rows = list(value)
        if not all(isinstance(row, Mapping) for row in rows):
            rows = None
    else:
        rows = None
    if rows is None:
        raise HLUsageError(f"{what} must be a dict, a list of dicts or a DataFrame, not {type(value).__name__}")
    return [{str(k): v if type(v) in _PLAIN_AS_IS else plain(v, f"{what} row {i}, {k}") for k, v in row.items()}
            for i, row in enumerate(rows)]


_PLAIN_AS_IS = {str, int, bool, type(None)}  # what ``plain`` returns unchanged (no label made per cell)


# -- option values -------------------------------------------------------------------------------
def parse_axis(name: str, raw: str | None, namespace: Mapping[str, Any] | None = None) -> list[Any]:
    """An option's values from its text: a comma list, converted to the wire type and range-checked
    (``0,0.7`` -> [0.0, 0.7]). An item ``{expr}`` or ``$name`` is a notebook value (a value or a
    list): ``--model-config-id {a},{b}``, ``--experiment-id {exp["id"]}`` (the magic line itself is
    not variable-expanded, so ``{{`` in it stays literal)."""
    if raw is None:
        return []
    option = "--" + name.replace("_", "-")
    values: list[Any] = []
    for text in _split_items(raw):
        quoted = is_quoted(text)
        text = unquote(text, option) if quoted else text
        if not text:
            raise HLUsageError(f"{option}: empty value in {raw!r}")
        found = _reference(option, text, namespace) if namespace is not None and not quoted else _NOT_A_REFERENCE
        items = [text] if found is _NOT_A_REFERENCE else as_axis(found)
        values.extend(PARAMETER[name].check(item) if name in PARAMETER else item for item in items)
    return values


_NAME = re.compile(r"^\$([A-Za-z_]\w*)$")
_NOT_A_REFERENCE = object()


def _reference(option: str, text: str, namespace: Mapping[str, Any]) -> Any:
    """The notebook value ``text`` refers to (``{expr}``/``$name``), or ``_NOT_A_REFERENCE``."""
    dollar = _NAME.match(text)
    if dollar:
        expression = dollar.group(1)
    elif text.startswith("{") and text.endswith("}") and not text.startswith("{{"):
        expression = text[1:-1].strip()
    else:
        return _NOT_A_REFERENCE
    if expression.isidentifier():
        if expression not in namespace:
            raise HLUsageError(f"{option}: {expression!r} is not defined in the notebook")
        return plain(namespace[expression], option)
    try:  # as IPython's own {expr} expansion of magic lines does, in the user's namespace
        return plain(eval(expression, {}, dict(namespace)), option)  # noqa: S307 - the user's own notebook
    except Exception as exc:  # noqa: BLE001 - any failure of the user's expression is a usage error
        raise HLUsageError(f"{option}: {{{expression}}} could not be evaluated ({type(exc).__name__}: {exc})"
                           ) from None


_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"')  # one literal, its own quotes escaped


def is_quoted(text: str) -> bool:
    """Whether ``text`` is one string literal in matching quotes (``'a b'``, ``"a,b"``)."""
    return text[:1] in ("'", '"') and _QUOTED.fullmatch(text) is not None


def unquote(text: str, option: str) -> str:
    """A value in matching quotes as the Python string literal it is (``"a b"`` is ``a b``, ``'\\n'`` a
    newline); other text as it is. Why: IPython hands a magic line's tokens over with their quotes,
    so ``--project "my project"`` named a project with quote marks in it.

    Raises:
        HLUsageError: a quoted value that is not a valid literal (``'\\x'``).
    """
    if not is_quoted(text):
        return text
    try:
        with warnings.catch_warnings():  # an unknown escape (``'\\d'``) keeps its backslash, as in Python
            warnings.simplefilter("ignore")
            return ast.literal_eval(text)
    except (SyntaxError, ValueError) as exc:
        reason = str(getattr(exc, "msg", exc)).rsplit(": ", 1)[-1]
        raise HLUsageError(f"{option}: {text} is not a valid quoted string ({reason})") from None


def _split_items(raw: str) -> list[str]:
    """Comma-separated items, ignoring commas inside ``{...}``, brackets and quotes; items stripped."""
    items, current, depth, quote = [], [], 0, ""
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return items


def axis_values(name: str, raw: str | None, namespace: Mapping[str, Any]) -> list[Any]:
    """An option's values, with ``{expr}``/``$name`` items taken from the notebook (see ``parse_axis``)."""
    return parse_axis(name, raw.strip() if raw else raw, namespace)


def as_axis(value: Any) -> list[Any]:
    """A Python argument as axis values: None -> [], a scalar -> [it], a list/tuple/Series -> its items."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return list(value.tolist() if hasattr(value, "tolist") else value)
    return [value]


# -- specs ---------------------------------------------------------------------------------------
def make_specs(messages: Sequence[Mapping[str, Any]], *, endpoint: str | None = None,
               axes: Mapping[str, Sequence[Any]] | None = None, configs: Any = None, inputs: Any = None,
               deployed: bool = False, stop: str | list[str] | None = None, project: str | None = None,
               num_samples: int = 1, stream: bool = False, save: bool = True,
               metadata: Mapping[str, Any] | None = None, session_id: str | None = None,
               default_provider: str | None = None, namespace: Mapping[str, Any] | None = None,
               other: Mapping[str, Any] | None = None) -> list[ChatSpec]:
    """ChatSpecs for configs × axes × inputs rows in declared order, validated and template-checked.

    Args:
        messages: wire chat messages (``{{name}}`` placeholders kept).
        axes: option name -> values (``{"model": ["a", "b"], "temperature": [0, 0.7]}``).
        configs: a list of config dicts or a DataFrame of configs (missing cells mean "not set").
        inputs: a dict (one request) or a list of dicts / DataFrame (one request per row).
        default_provider: the provider for /chat when none is given (``mock`` on the embedded server).
        namespace: notebook variables; template names missing from ``inputs`` are taken from here.
        other: provider-specific extras (``model_config.other``).

    Raises:
        HLUsageError: anything that would make the server refuse the call; nothing is sent.
    """
    axes = {name: [_axis_value(name, v) for v in values] for name, values in (axes or {}).items() if values}
    unknown = set(axes) - set(AXIS_NAMES)
    if unknown:
        name = sorted(unknown)[0]
        raise HLUsageError(f"unknown parameter {name!r}{did_you_mean(name, AXIS_NAMES)}; use {', '.join(AXIS_NAMES)}")
    config_rows = [_config_row(row, i) for i, row in enumerate(rows_of(configs, "configs"))] \
        if configs is not None else None
    # one value of an option fills in what a configs row leaves unset; several would sweep a
    # parameter the row fixes, making each of its calls several times over
    for index, row in enumerate(config_rows or []):
        both = [name for name, values in axes.items() if name in row and len(values) > 1]
        if both:
            name = both[0]
            raise HLUsageError(f"--{name.replace('_', '-')} sweeps {name}, which the configs set (row {index}): each "
                               f"of that row's calls would be made {len(axes[name])} times; set it in one place")
    chosen = choose_endpoint(endpoint, model=bool(axes.get("model") or config_rows),
                             model_config_id=bool(axes.get("model_config_id")),
                             experiment_id=bool(axes.get("experiment_id")), deployed=deployed)
    inputs_rows = rows_of(inputs, "inputs") if inputs is not None else [{}]
    if metadata is not None and not isinstance(metadata, Mapping):
        raise HLUsageError("metadata must be a dict")
    if other is not None and not isinstance(other, Mapping):
        raise HLUsageError("other must be a dict")
    base_config: dict[str, Any] = {}
    if chosen == "chat" and default_provider and not axes.get("provider"):
        base_config["provider"] = default_provider
    if stop:
        base_config["stop"] = stop
    if other:
        base_config["other"] = plain(other, "other")
    base = ChatSpec(endpoint=chosen, messages=tuple(dict(m) for m in messages), model_config=base_config,
                    project=project or None, num_samples=num_samples, stream=stream, save=save,
                    metadata=plain(metadata, "metadata") if metadata is not None else None,
                    session_id=session_id or None,
                    inputs=_namespace_inputs(messages, inputs_rows, namespace or {}))
    return expand(base, axes=axes, configs=config_rows, inputs_rows=inputs_rows)


def expand(base: ChatSpec, *, axes: Mapping[str, Sequence[Any]] | None = None,
           configs: Sequence[Mapping[str, Any]] | None = None,
           inputs_rows: Sequence[Mapping[str, Any]] | None = None) -> list[ChatSpec]:
    """ChatSpecs for configs × axes × inputs rows, in that order (configs vary slowest); no rows of
    configs or inputs (``[]``, not None) is no specs.

    Raises:
        MissingInputError: a template variable has no value in some row (nothing is sent).
    """
    names = [name for name, values in (axes or {}).items() if values]
    combos = [dict(zip(names, combo)) for combo in itertools.product(*((axes or {})[n] for n in names))]
    variants = [{**combo, **variant} for variant in (configs if configs is not None else [{}]) for combo in combos]
    needed = variables(base.messages)
    specs = []
    for variant in variants:
        spec = _apply(base, variant)
        validate_spec(spec)
        for row in inputs_rows if inputs_rows is not None else [{}]:
            inputs = {**base.inputs, **row}
            missing = [name for name in needed if name not in inputs]
            if missing:
                raise MissingInputError(missing)
            specs.append(spec.with_inputs(inputs))
    return specs


def _axis_value(name: str, value: Any) -> Any:
    value = plain(value, "--" + name.replace("_", "-"))
    return PARAMETER[name].check(value) if name in PARAMETER and value is not None else value


def _config_row(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One config row: missing cells dropped (a ragged list of dicts makes NaN), the rest checked."""
    config = {}
    for name, value in row.items():
        if name not in CONFIG_FIELDS:
            raise HLUsageError(f"configs row {index}: unknown config field {name!r}"
                               f"; use {', '.join(CONFIG_FIELDS)}")
        if value is None:
            continue
        if name in PARAMETER:
            value = PARAMETER[name].check(value, f"configs row {index}, {name}")
        elif name == "other" and not isinstance(value, Mapping):
            raise HLUsageError(f"configs row {index}: other must be a dict")
        config[name] = value
    return config


def _apply(base: ChatSpec, variant: Mapping[str, Any]) -> ChatSpec:
    config = dict(base.model_config)
    selectors: dict[str, Any] = {}
    for name, value in variant.items():
        if name in PARAMETER or name == "other":
            config[name] = value
        else:
            selectors[name] = value
    return replace(base, model_config=config, **selectors)


def _namespace_inputs(messages: Sequence[Mapping[str, Any]], rows: list[dict[str, Any]],
                      namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Template names not given in every inputs row, taken from notebook variables of that name."""
    given = set.intersection(*(set(row) for row in rows)) if rows else set()
    return {name: plain(namespace[name], name) for name in variables(messages)
            if name not in given and name in namespace and not name.startswith("_")}


def unfilled(spec: ChatSpec) -> list[str]:
    """Template variables whose value is missing (an empty cell): the call would send ``null``."""
    if not any(value is None for value in spec.inputs.values()):  # the usual row: no template scan per call
        return []
    return [name for name in variables(spec.messages) if spec.inputs.get(name, "") is None]
