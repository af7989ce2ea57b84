"""The plain Python API: ``chat()`` and ``sweep()`` for scripts, with the magic's behaviour.

Why: the same request path as the notebook front ends, without printing: errors are raised, and a
sweep's failures stay rows in the returned frame.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .command import make_specs
from .config import HLSettings
from .connection import connect
from .parse import parse_cell
from .runner import execute_specs

if TYPE_CHECKING:
    import pandas as pd

    from .client import HLClient


def api_client(base_url: str | None = None) -> "HLClient":
    """The HLClient of the current connection (embedded server unless one is configured), for
    registering configs, creating experiments and deploying (spec §9)."""
    return connect(base_url).client


def _messages(messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return parse_cell(messages) if isinstance(messages, str) else [dict(m) for m in messages]


def chat(messages: str | Sequence[Mapping[str, Any]], *, model: str | None = None, endpoint: str | None = None,
         provider: str | None = None, model_config_id: str | None = None, experiment_id: str | None = None,
         deployed: bool = False, environment: str | None = None, project: str | None = None,
         inputs: Mapping[str, Any] | None = None, num_samples: int = 1, stream: bool = False,
         base_url: str | None = None, **config: Any) -> "pd.DataFrame":
    """One chat call -> DataFrame (one row per sample). ``messages`` is a cell-format string or wire dicts.

    Extra keyword arguments are model-config parameters (``temperature``, ``max_tokens``, ``top_p``,
    ``stop``, ``presence_penalty``, ``frequency_penalty``, ``seed``).

    Raises:
        HLError: any failure (the frame is not returned when the call produced nothing).
    """
    return sweep(messages, model=model, endpoint=endpoint, provider=provider, model_config_id=model_config_id,
                 experiment_id=experiment_id, deployed=deployed, environment=environment, project=project,
                 inputs=dict(inputs) if inputs is not None else None, num_samples=num_samples, stream=stream,
                 base_url=base_url, raise_errors=True, **config)


def sweep(messages: str | Sequence[Mapping[str, Any]], *, configs: Any = None, inputs: Any = None,
          endpoint: str | None = None, deployed: bool = False, project: str | None = None,
          num_samples: int = 1, stream: bool = False, concurrency: int | None = None,
          progress: bool | None = False, base_url: str | None = None, raise_errors: bool = False,
          cache: bool | None = None, **axes: Any) -> "pd.DataFrame":
    """Configs × inputs × samples -> one DataFrame in declared order; failed calls are rows.

    Axis arguments take a value or a list (``model=["a", "b"], temperature=[0, 0.7]``); ``configs``
    is a list of config dicts or a DataFrame; ``inputs`` a dict, list of dicts or DataFrame.
    """
    from .command import as_axis

    stop = axes.pop("stop", None)
    connection = connect(base_url)
    specs = make_specs(_messages(messages), endpoint=endpoint, axes={k: as_axis(v) for k, v in axes.items()},
                       configs=configs, inputs=inputs, deployed=deployed, stop=stop,
                       project=project or HLSettings.instance().project or None, num_samples=num_samples,
                       stream=stream, default_provider=connection.default_provider)
    run = execute_specs(specs, connection=connection, concurrency=concurrency, progress=progress, cache=cache)
    if run.outcome.interrupted and len(run.outcome.results) < run.outcome.total:
        raise KeyboardInterrupt
    if raise_errors and run.fatal is not None:
        raise run.fatal
    return run.frame
