"""Front end for scripts: ``chat()``, ``sweep()`` and ``retry(df)``, with the magic's behaviour.

Why: the same plan -> pool -> frame path as the notebook front ends, without printing: errors are
raised, and a sweep's failures stay rows in the returned frame.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .config import HLSettings
from .connection import connect, default_provider
from .errors import HLUsageError
from .parse import parse_cell
from .plan import as_axis, make_specs
from .pool import run_specs

if TYPE_CHECKING:
    import pandas as pd

    from .client import HLClient


def api_client(base_url: str | None = None) -> "HLClient":
    """The HLClient of the current connection (embedded server unless one is configured), for
    registering configs, creating experiments and deploying (spec §9)."""
    return connect(base_url).client


def _messages(messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Cell-format text, or wire message dicts; anything else is a one-line usage error."""
    if isinstance(messages, str):
        return parse_cell(messages)
    listed = list(messages) if isinstance(messages, (list, tuple)) else None
    odd = next((item for item in listed if not isinstance(item, Mapping)), None) if listed is not None else messages
    if listed is None or odd is not None:
        kind = type(messages).__name__ if listed is None else f"a {type(messages).__name__} of {type(odd).__name__}"
        raise HLUsageError("messages must be cell-format text ('user: hi') or a list of message dicts "
                           f"({{'role': 'user', 'content': 'hi'}}), not {kind}")
    return [dict(message) for message in listed]


def chat(messages: str | Sequence[Mapping[str, Any]], *, model: str | None = None, endpoint: str | None = None,
         provider: str | None = None, model_config_id: str | None = None, experiment_id: str | None = None,
         deployed: bool = False, environment: str | None = None, project: str | None = None,
         inputs: Mapping[str, Any] | None = None, num_samples: int = 1, stream: bool = False,
         base_url: str | None = None, other: Mapping[str, Any] | None = None, **config: Any) -> "pd.DataFrame":
    """One chat call -> DataFrame (one row per sample). ``messages`` is a cell-format string or wire dicts.

    Extra keyword arguments are model-config parameters (``temperature``, ``max_tokens``, ``top_p``,
    ``stop``, ``presence_penalty``, ``frequency_penalty``, ``seed``); ``other`` holds
    provider-specific extras (``{"base_url": ...}`` for an OpenAI-compatible server).

    Raises:
        HLError: any failure (the frame is not returned when the call produced nothing).
    """
    return sweep(messages, model=model, endpoint=endpoint, provider=provider, model_config_id=model_config_id,
                 experiment_id=experiment_id, deployed=deployed, environment=environment, project=project,
                 inputs=dict(inputs) if inputs is not None else None, num_samples=num_samples, stream=stream,
                 base_url=base_url, raise_errors=True, other=other, **config)


def sweep(messages: str | Sequence[Mapping[str, Any]], *, configs: Any = None, inputs: Any = None,
          endpoint: str | None = None, deployed: bool = False, project: str | None = None,
          num_samples: int = 1, stream: bool = False, concurrency: int | None = None,
          progress: bool | None = None, base_url: str | None = None, raise_errors: bool = False,
          cache: bool | None = None, other: Mapping[str, Any] | None = None, **axes: Any) -> "pd.DataFrame":
    """Configs × inputs × samples -> one DataFrame in declared order; failed calls are rows.

    Axis arguments take a value or a list (``model=["a", "b"], temperature=[0, 0.7]``); ``configs``
    is a list of config dicts or a DataFrame; ``inputs`` a dict, list of dicts or DataFrame.
    ``progress`` None follows ``HLSettings.progress``.

    Raises:
        HLInterrupted: Ctrl-C cancelled some calls (a KeyboardInterrupt).
        HLError: with ``raise_errors``, a single call that produced nothing.
    """
    stop = axes.pop("stop", None)
    # plan before connecting (as the magic does): a mistake in the arguments never starts a server
    specs = make_specs(_messages(messages), endpoint=endpoint, axes={k: as_axis(v) for k, v in axes.items()},
                       configs=configs, inputs=inputs, deployed=deployed, stop=stop,
                       project=project or HLSettings.instance().project or None, num_samples=num_samples,
                       stream=stream, default_provider=default_provider(base_url), other=other)
    run = run_specs(specs, connection=connect(base_url) if specs else None, concurrency=concurrency,
                    progress=progress, cache=cache)
    return run.result(raise_fatal=raise_errors, report=False)


def retry(df: "pd.DataFrame", *, concurrency: int | None = None, progress: bool | None = None) -> "pd.DataFrame":
    """A new frame: ``df`` with the rows of every call that had an error replaced by fresh ones.

    The frame's ``request`` column holds each call's spec, so the frame alone is enough; each call
    keeps its idempotency key, so a call that ran but whose answer was lost is not run twice on a
    server that honours the key. A call is its ``call`` number within its run (``session`` and
    ``run`` too when the frame has them, as ``history()`` does): call numbers repeat across runs.
    Rows keep their places and every column of ``df`` (a fresh row has no value in the columns
    that are not the contract's, such as scores); calls that fail again keep their (new) error.
    """
    import pandas as pd

    from .frame import result_frame, to_frame
    from .spec import spec_from_json

    if "request" not in df.columns or "call" not in df.columns:
        raise HLUsageError("retry() needs a frame returned by hl_notebook (with its call and request columns)")
    ids = [name for name in ("session", "run") if name in df.columns] + ["call"]
    frame = pd.DataFrame(df).reset_index(drop=True)
    failed = frame[frame["error"].notna()].drop_duplicates(ids)  # its index: each call's first row
    if failed.empty:
        return df.copy()
    keys = failed["call_key"] if "call_key" in failed.columns else [None] * len(failed)
    specs = [spec_from_json(text, None if pd.isna(key) else key) for text, key in zip(failed["request"], keys)]
    run = run_specs(specs, concurrency=concurrency, progress=progress)
    fresh = to_frame(run.results, run.configs)  # its ``call``: the position in ``failed``
    replaced = failed.iloc[fresh["call"].to_numpy()]
    fresh = fresh.assign(**{name: replaced[name].array for name in ids},  # .array: the frame's dtypes
                         **({"run_at": replaced["run_at"].array} if "run_at" in frame.columns else {}))
    fresh = fresh.assign(_place=replaced.index.to_numpy(), _sample=fresh["sample"].fillna(-1).to_numpy())
    kept = frame[~pd.MultiIndex.from_frame(frame[ids]).isin(pd.MultiIndex.from_frame(failed[ids]))]
    kept = kept.assign(_place=kept.index.to_numpy(), _sample=kept["sample"].fillna(-1).to_numpy())
    shared = [c for c in fresh.columns if c in frame.columns or c in ("_place", "_sample")]
    merged = pd.concat([kept, fresh[shared]], ignore_index=True)
    merged = merged.sort_values(["_place", "_sample"], kind="stable")
    return result_frame(merged[list(frame.columns)].reset_index(drop=True))
