"""The call archive (history): every frame a front end returned, in memory and in a local SQLite file.

Why: results must outlive the kernel — yesterday's runs load back as a DataFrame with the same
columns (``history(all_sessions=True)``). Rows are stored as JSON records; the frame contract's
``conform`` restores dtypes on the way back.
"""
from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import HLSettings

if TYPE_CHECKING:
    import pandas as pd

SESSION = uuid.uuid4().hex[:12]
_frames: list["pd.DataFrame"] = []
_lock = threading.Lock()
_run = 0

SCHEMA = """CREATE TABLE IF NOT EXISTS rows (
    session TEXT NOT NULL, run INTEGER NOT NULL, run_at REAL NOT NULL, position INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (session, run, position))"""


_warned: set[str] = set()


def _connect() -> sqlite3.Connection | None:
    """The history file, or None when there is none or it cannot be used (warned once per path):
    history is best-effort and must never cost the user a finished run's frame."""
    path = HLSettings.instance().history_path
    if not path:
        return None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        db.execute(SCHEMA)
        return db
    except (OSError, sqlite3.Error) as exc:
        _warn(path, exc)
        return None


def _warn(path: str, exc: Exception) -> None:
    if path not in _warned:
        _warned.add(path)
        print(f"hlchat: the history file {path} cannot be used ({type(exc).__name__}: {exc}); "
              "history is kept in memory only (set HLSettings.history_path)", file=sys.stderr)


def record(frame: "pd.DataFrame") -> None:
    """Append a run's frame (keeps a copy: later edits to the user's frame do not change history)."""
    global _run
    with _lock:
        _run += 1
        run, run_at = _run, time.time()
        tagged = frame.copy()
        tagged.insert(0, "run_at", run_at)
        tagged.insert(0, "run", run)
        tagged.insert(0, "session", SESSION)
        _frames.append(tagged)
    db = _connect()
    if db is None:
        return
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    try:
        with db:
            db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
                           [(SESSION, run, run_at, i, json.dumps(r)) for i, r in enumerate(records)])
    except sqlite3.Error as exc:
        _warn(HLSettings.instance().history_path, exc)
    finally:
        db.close()


def history(all_sessions: bool = False) -> "pd.DataFrame":
    """This session's calls (or every stored session's), one row per sample, oldest first."""
    import pandas as pd

    from .frame import conform

    if not all_sessions:
        with _lock:
            frames = list(_frames)
        if not frames:
            return _tag(conform([]))
        return pd.concat(frames, ignore_index=True)
    db = _connect()
    if db is None:
        return history(False)
    rows = db.execute("SELECT session, run, run_at, record FROM rows ORDER BY run_at, session, run, position")
    records: list[dict[str, Any]] = [{"session": s, "run": r, "run_at": t, **json.loads(rec)} for s, r, t, rec in rows]
    db.close()
    meta = pd.DataFrame({"session": [r["session"] for r in records], "run": [r["run"] for r in records],
                         "run_at": [r["run_at"] for r in records]})
    frame = conform(records)
    return pd.concat([_meta_types(meta), frame], axis=1)


def _tag(frame: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    return pd.concat([_meta_types(pd.DataFrame({"session": [], "run": [], "run_at": []})), frame], axis=1)


def _meta_types(meta: "pd.DataFrame") -> "pd.DataFrame":
    return meta.astype({"session": "string", "run": "Int64", "run_at": "float64"})
