"""``retry(df)``: re-run only the failed calls of a result frame and put their new rows in place.

Why: a long sweep with a few rate-limited or broken calls should be finished, not re-run; the
frame's ``request`` column holds each call's spec, so the frame alone is enough.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import HLUsageError
from .spec import spec_from_json

if TYPE_CHECKING:
    import pandas as pd


def retry(df: "pd.DataFrame", *, concurrency: int | None = None, progress: bool | None = None) -> "pd.DataFrame":
    """A new frame: the ok rows of ``df`` plus fresh rows for every call that had an error.

    Rows stay in (call, sample) order; calls that fail again keep their (new) error.
    """
    import pandas as pd

    from .frame import conform, to_frame
    from .runner import execute_specs

    if "request" not in df.columns or "call" not in df.columns:
        raise HLUsageError("retry() needs a frame returned by hl_notebook (with its call and request columns)")
    failed = df[df["error"].notna()].drop_duplicates("call")
    if failed.empty:
        return df.copy()
    calls = failed["call"].tolist()
    specs = [spec_from_json(text) for text in failed["request"]]
    run = execute_specs(specs, concurrency=concurrency, progress=progress)
    for result in run.outcome.results:
        result.call = int(calls[result.call])
    fresh = to_frame(run.outcome.results, run.outcome.configs)
    kept = df[~df["call"].isin(calls[: len(run.outcome.results)])]
    merged = pd.concat([conform(kept), fresh], ignore_index=True)
    order = merged["sample"].fillna(-1)
    return merged.assign(_order=order).sort_values(["call", "_order"], kind="stable").drop(columns="_order") \
        .reset_index(drop=True)
