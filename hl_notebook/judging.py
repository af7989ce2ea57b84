"""LLM judges: a templated judge prompt run once per result row -> ``score.<name>`` columns.

Why: many qualities (helpful? on topic?) are only measurable by asking a model. A judge is a
sweep whose inputs are the rows of another frame, so it goes through the same stages — plan
(``plan.make_specs``), pool (``pool.run_specs``: concurrency, progress bar, cache, failures as
results, history) — and a failed or unreadable judgement costs one row's score, never the frame.
(Not named ``judge.py``: that module would replace the public function ``hl_notebook.judge``.)

Template variables: ``{{output}}``, ``{{prompt}}`` and every ``inputs.<name>`` column, as
``{{inputs.<name>}}`` and as ``{{<name>}}``; in the magic, notebook variables fill other names.

Reading the score from the reply (``parse_verdict``), first rule that matches:

1. the last ``[[X]]`` in the reply (MT-bench style);
2. the last ``Score: X`` (also ``rating``, ``grade``, ``verdict``, ``result``; ``:``, ``=`` or ``is``);
3. X as the reply's last word (trailing punctuation ignored);
4. X as the whole first line;

where X is a number (``7``, ``-1``, ``0.8``; ``7/10`` and ``7 out of 10`` give 7) or ``pass``/``fail``
(any case; also ``passed``/``failed``), which give 1 and 0. Nothing found -> NA with a note in
``score.<name>.error``. Prompt the judge to end its reply with the score.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .config import HLSettings
from .errors import HLInterrupted, MissingInputError
from .plan import is_missing
from .scoring import error_text, with_score
from .template import variables

if TYPE_CHECKING:
    import pandas as pd

    from .pool import Run

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_VALUE = rf"(?P<number>{_NUMBER})(?:\s*(?:/|out\s+of)\s*\d+(?:\.\d+)?)?|(?P<word>pass(?:ed)?|fail(?:ed)?)\b"
_BRACKETS = re.compile(rf"\[\[\s*(?:{_VALUE})\s*\]\]", re.IGNORECASE)
_LABELLED = re.compile(rf"\b(?:score|rating|grade|verdict|result)\**\s*(?:[:=]|\bis\b)\s*\**\s*(?:{_VALUE})",
                       re.IGNORECASE)
_LAST_WORD = re.compile(rf"(?<![\w.])(?:{_VALUE})[\s.!?,;:*\"')\]]*\Z", re.IGNORECASE)
_WHOLE_LINE = re.compile(rf"^[\s*\"'(\[]*(?:{_VALUE})[\s.!?,;:*\"')\]]*$", re.IGNORECASE)
NO_SCORE = "no score in the judge's reply: end it with a number or pass/fail (or 'Score: X', '[[X]]')"


def parse_verdict(reply: str | None) -> tuple[float | None, str | None]:
    """The score in a judge's reply (rules in the module docstring): ``(value, None)`` or ``(None, note)``."""
    if reply is None or not reply.strip():
        return None, "the judge's reply is empty"
    lines = reply.strip().splitlines()
    found = (_last(_BRACKETS, reply) or _last(_LABELLED, reply) or _LAST_WORD.search(reply.strip())
             or _WHOLE_LINE.match(lines[0]))
    if found is None:
        return None, NO_SCORE
    if found.group("word"):
        return (1.0 if found.group("word").lower().startswith("pass") else 0.0), None
    value = float(found.group("number"))
    return (value, None) if math.isfinite(value) else (None, NO_SCORE)


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def template_values(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The values of ``names`` a frame row provides (see the module docstring), by name."""
    values: dict[str, Any] = {}
    for name in names:
        if name in ("output", "prompt") or name.startswith("inputs."):
            column = name
        elif f"inputs.{name}" in row:
            column = f"inputs.{name}"
        else:
            continue
        if column in row:
            values[name] = row[column]
    return values


def judged_rows(df: "pd.DataFrame") -> "pd.Series":
    """Rows a judge is sent: with an output and no error (a failed or cancelled call is not judged)."""
    import pandas as pd

    ok = df["output"].notna() if "output" in df.columns else pd.Series(False, index=df.index)
    return ok & df["error"].isna() if "error" in df.columns else ok


def judge(df: "pd.DataFrame", prompt: str | Sequence[Mapping[str, Any]], name: str = "judge", *,
          model: str | None = None, provider: str | None = None, endpoint: str | None = None,
          model_config_id: str | None = None, experiment_id: str | None = None, deployed: bool = False,
          environment: str | None = None, project: str | None = None, base_url: str | None = None,
          other: Mapping[str, Any] | None = None, concurrency: int | None = None, cache: bool | None = None,
          progress: bool | None = None, namespace: Mapping[str, Any] | None = None,
          **config: Any) -> "pd.DataFrame":
    """A new frame: ``df`` plus ``score.<name>``, ``score.<name>.reason`` (the judge's reply) and
    ``score.<name>.error``, from one judge call per row that has an output.

    Args:
        df: any result frame (from a run, ``history()``, ``score``, another ``judge``).
        prompt: the judge's messages in cell format (``"user: Rate {{output}} …"``) or wire dicts.
        name: the score's name.
        model, provider, endpoint, model_config_id, experiment_id, deployed, environment, project,
            base_url, other, config: the judge's endpoint and config, as in ``chat()``. An inline
            config is sent at ``temperature`` 0 unless one is given (a judge should be repeatable).
        concurrency, cache, progress: as in ``sweep()`` (the same pool and limits).
        namespace: values for template names the frame does not provide (the magic passes the
            notebook's variables).

    Returns:
        A result frame; rows without output get NA and ``not judged: …`` in ``score.<name>.error``,
        a failed judge call NA and its one-line error, an unreadable reply NA and a note.

    Raises:
        MissingInputError: the prompt uses a name no column (or ``namespace``) provides; nothing is sent.
        HLUsageError: a bad option, as in ``sweep()``; nothing is sent.
        HLInterrupted: Ctrl-C cancelled judge calls (a KeyboardInterrupt), as in ``sweep()``.
    """
    frame, run = run_judge(df, prompt, name, model=model, provider=provider, endpoint=endpoint,
                           model_config_id=model_config_id, experiment_id=experiment_id, deployed=deployed,
                           environment=environment, project=project, base_url=base_url, other=other,
                           concurrency=concurrency, cache=cache, progress=progress, namespace=namespace, **config)
    if run is not None and run.interrupted and run.cancelled:
        raise HLInterrupted(run.summary() + "; the judge calls that finished are in history()")
    return frame


def run_judge(df: "pd.DataFrame", prompt: str | Sequence[Mapping[str, Any]], name: str = "judge", *,
              base_url: str | None = None, concurrency: int | None = None, cache: bool | None = None,
              progress: bool | None = None, namespace: Mapping[str, Any] | None = None,
              **options: Any) -> "tuple[pd.DataFrame, Run | None]":
    """``judge`` without raising on Ctrl-C: the scored frame and the judge's Run (None: nothing sent)."""
    from .api import _messages
    from .connection import connect
    from .pool import run_specs
    from .scoring import score_name

    name = score_name(None, name)
    messages = _messages(prompt)
    needed = variables(messages)
    missing = [n for n in needed if not template_values(dict.fromkeys(df.columns), [n])
               and n not in (namespace or {})]
    if missing:
        raise MissingInputError(missing)
    send = judged_rows(df)
    rows = [template_values(row, needed) for _, row in df[send].iterrows()]
    run = None
    if rows:
        connection = connect(base_url)
        specs = judge_specs(messages, rows, connection.default_provider, namespace, **options)
        run = run_specs(specs, connection=connection, concurrency=concurrency, progress=progress, cache=cache)
    return _scored(df, name, send, run), run


def judge_specs(messages: list[dict[str, Any]], rows: list[dict[str, Any]], default_provider: str | None,
                namespace: Mapping[str, Any] | None = None, *, model: str | None = None,
                provider: str | None = None, endpoint: str | None = None, model_config_id: str | None = None,
                experiment_id: str | None = None, deployed: bool = False, environment: str | None = None,
                project: str | None = None, other: Mapping[str, Any] | None = None, **config: Any) -> list[Any]:
    """One judge ChatSpec per row, planned as a sweep plans (``plan.make_specs``)."""
    from .plan import make_specs

    inline = not (model_config_id or experiment_id or deployed or environment)
    if inline and endpoint in (None, "chat"):
        config.setdefault("temperature", 0)
    axes = {"model": [model] if model else [], "provider": [provider] if provider else [],
            "model_config_id": [model_config_id] if model_config_id else [],
            "experiment_id": [experiment_id] if experiment_id else [],
            "environment": [environment] if environment else []}
    stop = config.pop("stop", None)
    axes.update({key: [value] for key, value in config.items()})
    return make_specs(messages, endpoint=endpoint, axes=axes, inputs=rows, deployed=deployed, stop=stop,
                      project=project or HLSettings.instance().project or None,
                      default_provider=default_provider, namespace=namespace, other=other)


def _scored(df: "pd.DataFrame", name: str, send: "pd.Series", run: "Run | None") -> "pd.DataFrame":
    """``df`` with the judge's columns: results go back to the rows they were made from, in order."""
    values: list[Any] = []
    reasons: list[str | None] = []
    errors: list[str | None] = []
    results = iter(run.results if run is not None else [])
    for sent, error_type in zip(send.tolist(), _error_types(df)):
        if not sent:
            values.append(None)
            reasons.append(None)
            errors.append(f"not judged: the call failed ({error_type})" if error_type
                          else "not judged: the row has no output")
            continue
        result = next(results)
        data = (result.response or {}).get("data") or []
        reply = data[0].get("output") if data and result.error is None else None
        value, note = parse_verdict(reply) if result.error is None else (None, error_text(result.error))
        values.append(value)
        reasons.append(reply)
        errors.append(note)
    return with_score(df, name, values, errors, extra={"reason": reasons})


def _error_types(df: "pd.DataFrame") -> list[str | None]:
    if "error_type" not in df.columns:
        return [None] * len(df)
    return [None if is_missing(t) else str(t) for t in df["error_type"].tolist()]
