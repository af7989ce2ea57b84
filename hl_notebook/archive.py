"""The call archive (history): every frame a front end returned, kept in a local SQLite file.

Why: results must outlive the kernel — yesterday's runs load back as a DataFrame with the same
columns (``history(all_sessions=True)``) — without the session holding a copy of every frame in
memory. A run is stored as column chunks: each column's values packed once (strings joined as
UTF-8 with their lengths, numbers as their bytes, a mask for <NA>), zlib-compressed (a sweep's
``request`` and ``prompt`` columns repeat a lot); no per-row JSON. Reading goes through the frame
contract's ``conform``. Rows written before (one JSON record per row, table ``rows``, token counts
repeated per sample) are still read, their token counts moved to the per-call columns.

Best-effort: with no usable file (``HLSettings.history_path`` empty, or any SQLite error: warned
once per path) runs are kept in memory, compressed the same way and bounded by ``MEMORY_BYTES``
(oldest runs dropped first, said once). Nothing here may cost the user a finished run's frame.
A run's record is written on the history's own thread (``record_later``) from a snapshot of the
frame, so a sweep returns its frame without waiting for it; ``history()`` waits for it.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .config import HLSettings

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    import pandas as pd

SESSION = uuid.uuid4().hex[:12]
CHUNK_ROWS = 20_000  # rows per stored chunk (one SQLite row, one compressed blob)
MEMORY_BYTES = 64 * 2**20  # bound of the in-memory fallback (compressed bytes)
FORMAT = 1

SCHEMA = """CREATE TABLE IF NOT EXISTS rows (
    session TEXT NOT NULL, run INTEGER NOT NULL, run_at REAL NOT NULL, position INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (session, run, position))"""
CHUNKS = """CREATE TABLE IF NOT EXISTS chunks (
    session TEXT NOT NULL, run INTEGER NOT NULL, run_at REAL NOT NULL, first INTEGER NOT NULL,
    count INTEGER NOT NULL, meta TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (session, run, first))"""

Chunk = tuple[str, int, float, int, int, str, bytes]  # a ``chunks`` row

_lock = threading.Lock()
_run = 0
_paths: list[str] = []  # the files this session's runs went to, so history() finds them all
_memory: list[Chunk] = []  # runs no file took
_warned: set[str] = set()
_recorder: "ThreadPoolExecutor | None" = None  # record_later's thread, started on first use
_latest: "Future[None] | None" = None  # the last run handed to it


def _connect(path: str | None = None) -> sqlite3.Connection | None:
    """The history file, or None when there is none or it cannot be used (warned once per path):
    history is best-effort and must never cost the user a finished run's frame."""
    path = HLSettings.instance().history_path if path is None else path
    if not path:
        return None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        db.execute(SCHEMA)
        db.execute(CHUNKS)
        return db
    except (OSError, sqlite3.Error) as exc:
        _warn(path, exc)
        return None


def _warn(path: str, exc: Exception) -> None:
    _say_once(path, f"hlchat: the history file {path} cannot be used ({type(exc).__name__}: {exc}); "
                    "history is kept in memory only (set HLSettings.history_path)")


def _say_once(key: str, text: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(text, file=sys.stderr)


def record(frame: "pd.DataFrame") -> None:
    """Append a run's frame. What is stored is packed from the frame now, so later edits to the
    user's frame do not change history. Never raises: a failure is one warning line."""
    _record(frame, HLSettings.instance().history_path, SESSION)


def _record(frame: "pd.DataFrame", path: str, session: str) -> None:
    global _run
    with _lock:
        _run += 1
        run, run_at = _run, time.time()
    try:
        chunks = [(session, run, run_at, first, *_pack(part))
                  for first, part in _parts(_contract(frame))]
    except Exception as exc:  # noqa: BLE001 - a bug here must not cost the user the run's frame
        _say_once("(packing)", f"hlchat: a run could not be added to the history ({type(exc).__name__}: {exc}); "
                               "the frame itself is complete")
        return
    if not _store(path, chunks):
        _remember(chunks)


def record_later(frame: "pd.DataFrame") -> None:
    """``record(frame)`` on the history's own thread, so that a run returns its frame without
    waiting for the packing and the file (~10 ms for 1,000 rows, more on a slow disk).

    What is recorded is the frame as it is now: with pandas' copy-on-write (always on from pandas
    3) a shallow copy is a snapshot that later edits of the user's frame do not reach; without it,
    the run is recorded before this returns, as ``record`` does. ``history()`` waits for the runs
    still being recorded, and so does the interpreter's exit.
    """
    global _latest
    if not _copy_on_write():
        record(frame)
        return
    snapshot = frame.copy(deep=False)
    path = HLSettings.instance().history_path  # the file and session of now, whatever changes meanwhile
    _check_once(path)
    try:
        with _lock:
            if _recorder is None:
                _start_recorder()
            _latest = _recorder.submit(_record, snapshot, path, SESSION)  # type: ignore[union-attr]
    except RuntimeError:  # the interpreter is shutting down: no new threads
        _record(snapshot, path, SESSION)


def _check_once(path: str) -> None:
    """Open a path the first time a run goes to it, here rather than on the history's thread, so
    that an unusable file is warned about before the cell that used it returns: a notebook shows a
    thread's late print under whichever cell runs then. A path a run was stored in (``_paths``) or
    that was warned about is not opened again."""
    if not path or path in _paths or path in _warned:
        return
    db = _connect(path)
    if db is not None:
        db.close()


def settle() -> None:
    """Wait until every run handed to ``record_later`` is recorded (or has warned)."""
    latest = _latest
    if latest is not None:
        latest.result()


def _start_recorder() -> None:
    """One thread, so runs are recorded in the order they were returned."""
    global _recorder
    from concurrent.futures import ThreadPoolExecutor

    _recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hl_notebook-history")


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads: work handed to the parent's recorder would
    never run, the parent's runs are not the child's to wait for, and ``_lock`` may have been held
    by that thread at the fork. The child starts its own on its first run."""
    global _lock, _recorder, _latest
    _lock = threading.Lock()
    _recorder = _latest = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _copy_on_write() -> bool:
    import pandas as pd

    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return pd.get_option("mode.copy_on_write") is True


def _store(path: str, chunks: list[Chunk]) -> bool:
    db = _connect(path)
    if db is None:
        return False
    try:
        with db:
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", chunks)
    except sqlite3.Error as exc:
        _warn(path, exc)
        return False
    finally:
        db.close()
    with _lock:
        if path not in _paths:
            _paths.append(path)
    return True


def _remember(chunks: list[Chunk]) -> None:
    """Keep chunks in memory, dropping the oldest runs beyond ``MEMORY_BYTES`` (said once)."""
    with _lock:
        _memory.extend(chunks)
        total = sum(len(chunk[-1]) for chunk in _memory)
        latest = _memory[-1][1] if _memory else 0
        while total > MEMORY_BYTES and _memory[0][1] != latest:
            oldest = _memory[0][1]
            total -= sum(len(chunk[-1]) for chunk in _memory if chunk[1] == oldest)
            _memory[:] = [chunk for chunk in _memory if chunk[1] != oldest]
            _say_once("(memory)", f"hlchat: history in memory keeps the last {MEMORY_BYTES >> 20} MB of runs; "
                                  "older runs were dropped (set HLSettings.history_path to a file to keep them)")


def history(all_sessions: bool = False) -> "pd.DataFrame":
    """This session's calls (or every stored session's), one row per sample, oldest first, with
    ``session``, ``run`` and ``run_at`` (UTC) before the contract's columns."""
    import pandas as pd

    settle()
    chunks: list[Chunk] = []
    legacy: list[tuple[str, int, float, str]] = []
    with _lock:
        paths, memory = list(_paths), list(_memory)
    if all_sessions:
        paths = [HLSettings.instance().history_path]
    for path in dict.fromkeys(p for p in paths if p):
        found = _read(path, None if all_sessions else SESSION)
        if found is not None:
            chunks += found[0]
            legacy += found[1]
    chunks += memory
    chunks.sort(key=lambda c: (c[2], c[0], c[1], c[3]))
    frames = [frame for frame in map(_unpack, chunks) if frame is not None]
    if legacy:
        try:
            frames.append(_legacy_frame(legacy))
        except Exception as exc:  # noqa: BLE001 - damaged old rows cost those rows, not the history
            _unreadable(exc)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"session": [], "run": [], "run_at": []})
    if legacy and chunks:
        frame = frame.sort_values(["run_at", "session", "run"], kind="stable", ignore_index=True)
    return _with_meta(frame)


def _read(path: str, session: str | None) -> tuple[list[Chunk], list[tuple[str, int, float, str]]] | None:
    db = _connect(path)
    if db is None:
        return None
    where, args = ("WHERE session = ?", (session,)) if session else ("", ())
    try:
        chunks = db.execute(f"SELECT session, run, run_at, first, count, meta, data FROM chunks {where}",
                            args).fetchall()
        legacy = db.execute(f"SELECT session, run, run_at, record FROM rows {where} "
                            "ORDER BY run_at, session, run, position", args).fetchall() if session is None else []
        return chunks, legacy
    except sqlite3.Error as exc:
        _warn(path, exc)
        return None
    finally:
        db.close()


def _with_meta(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``session``, ``run``, ``run_at`` (UTC datetimes) + the contract's columns, as a ResultFrame."""
    import pandas as pd

    from .frame import conform, result_frame

    meta = pd.DataFrame({
        "session": frame["session"].astype("string"), "run": frame["run"].astype("Int64"),
        "run_at": pd.to_datetime(frame["run_at"].astype("float64"), unit="s", utc=True).astype("datetime64[ns, UTC]"),
    })
    return result_frame(pd.concat([meta, pd.DataFrame(conform(frame.drop(columns=list(meta.columns))))], axis=1))


# -- packing -------------------------------------------------------------------------------------
def _contract(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` with exactly the contract's columns and dtypes (a copy only when it differs)."""
    from .frame import columns, conform

    names = [c[len("inputs."):] for c in frame.columns if str(c).startswith("inputs.")]
    schema = columns(names)
    if list(frame.columns) == [name for name, _ in schema] and \
            [str(dtype) for dtype in frame.dtypes] == [dtype for _, dtype in schema]:
        return frame
    return conform(frame)


def _parts(frame: "pd.DataFrame") -> Iterable[tuple[int, "pd.DataFrame"]]:
    for first in range(0, max(len(frame), 1), CHUNK_ROWS):
        yield first, frame.iloc[first:first + CHUNK_ROWS]


def _pack(frame: "pd.DataFrame") -> tuple[int, str, bytes]:
    """(rows, meta JSON, compressed data) of one chunk: per column its dtype and part sizes."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)  # fastest level, raw deflate (no checksum pass)
    out: list[bytes] = []
    described = []
    for name, column in frame.items():  # one Series per column (frame[name] makes a new one each time)
        dtype = str(column.dtype)
        how, parts = _column_parts(column, dtype)
        described.append([name, dtype, [len(part) for part in parts], how])
        out.extend(compressor.compress(part) for part in parts)
    out.append(compressor.flush())
    meta = json.dumps({"format": FORMAT, "columns": described})
    return len(frame), meta, b"".join(out)


def _column_parts(column: "pd.Series", dtype: str) -> tuple[str, list[Any]]:
    """(how, parts) of one column. Strings: ``chars`` or ``bytes`` (the unit of the lengths),
    ``missing`` (all <NA>: nothing stored). A mask part is empty when nothing is missing."""
    missing = column.array.isna()  # a numpy mask, without a Series around it
    mask = missing.tobytes() if missing.any() else b""
    if dtype == "string":
        if missing.all():
            return "missing", []
        how, data, lengths = _arrow_strings(column) or _python_strings(column)
        return how, [data, lengths.tobytes(), mask]
    if dtype == "Int64":
        return "", [column.to_numpy(dtype="int64", na_value=0).tobytes(), mask]
    if dtype.startswith("datetime64"):
        return "", [column.to_numpy(dtype="datetime64[ns]").view("int64").tobytes()]
    return "", [column.to_numpy(dtype=dtype).tobytes()]  # float64, bool


def _python_strings(column: "pd.Series") -> tuple[str, bytes, Any]:
    """("chars", the values' UTF-8 one after another, each value's length in characters); a lone
    surrogate (valid in a Python str) is kept as its surrogate-escape bytes."""
    import numpy as np

    values = column.to_numpy(dtype=object, na_value="").tolist()
    lengths = np.fromiter(map(len, values), dtype=np.int32, count=len(values))
    return "chars", "".join(values).encode("utf-8", "surrogatepass"), lengths


def _arrow_strings(column: "pd.Series") -> tuple[str, Any, Any] | None:
    """("bytes", data, lengths in bytes) of a pyarrow-backed column, without touching the values:
    its own buffers."""
    import numpy as np

    if getattr(column.dtype, "storage", None) != "pyarrow":
        return None
    import pyarrow as pa

    array = pa.array(column.array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type):
        array = array.cast(pa.large_string())
    if not pa.types.is_large_string(array.type) or not len(array):
        return None
    _, offset_buffer, data = array.buffers()  # a slice (a chunk) shares its parent's, from array.offset
    offsets = np.frombuffer(offset_buffer, dtype=np.int64, count=len(array) + 1, offset=8 * array.offset)
    return "bytes", memoryview(data)[int(offsets[0]):int(offsets[-1])], np.diff(offsets).astype(np.int32)


def _unpack(chunk: Chunk) -> "pd.DataFrame | None":
    """One chunk as a frame (strings as objects), or None (said once) when it cannot be read."""
    try:
        return _unpacked(chunk)
    except Exception as exc:  # noqa: BLE001 - a damaged chunk costs its rows, not the history
        _unreadable(exc)
        return None


def _unreadable(exc: Exception) -> None:
    _say_once("(unpacking)", f"hlchat: some history rows cannot be read ({type(exc).__name__}: {exc}); "
                             "they are left out")


def _unpacked(chunk: Chunk) -> "pd.DataFrame":
    import numpy as np
    import pandas as pd

    session, run, run_at, _, count, meta, data = chunk
    raw = memoryview(zlib.decompress(data, -15))
    columns: dict[str, Any] = {"session": [session] * count, "run": np.full(count, run),
                               "run_at": np.full(count, run_at)}
    offset = 0
    for name, dtype, sizes, how in json.loads(meta)["columns"]:
        parts = []
        for size in sizes:
            parts.append(raw[offset:offset + size])
            offset += size
        columns[name] = _column(parts, dtype, how, count)
    if offset != len(raw):
        raise ValueError(f"chunk of {len(raw)} bytes, {offset} described")
    return pd.DataFrame(columns)


def _column(parts: list[memoryview], dtype: str, how: str, count: int) -> Any:
    import numpy as np
    import pandas as pd

    def missing(part: int) -> Any:
        return np.frombuffer(parts[part], dtype=bool) if len(parts[part]) else np.zeros(count, dtype=bool)

    if dtype == "string":
        values = np.full(count, None, dtype=object)
        if how != "missing":
            data = bytes(parts[0])
            ends = np.cumsum(np.frombuffer(parts[1], dtype=np.int32), dtype=np.int64).tolist()
            if how == "chars":
                data = data.decode("utf-8", "surrogatepass")
                values[:] = [data[start:end] for start, end in zip([0, *ends], ends)]
            else:
                values[:] = [data[start:end].decode("utf-8", "surrogatepass") for start, end in zip([0, *ends], ends)]
            values[missing(2)] = None
        return pd.Series(values, dtype=object, copy=False)  # made "string" once, by conform, after chunks are joined
    if dtype == "Int64":
        return pd.arrays.IntegerArray(np.frombuffer(parts[0], dtype=np.int64).copy(), missing(1).copy())
    if dtype.startswith("datetime64"):
        return pd.to_datetime(np.frombuffer(parts[0], dtype="datetime64[ns]"), utc=True)
    return np.frombuffer(parts[0], dtype=dtype).copy()


# -- rows written by earlier versions (one JSON record per row) ------------------------------------
def _legacy_frame(rows: list[tuple[str, int, float, str]]) -> "pd.DataFrame":
    """Legacy records as a frame: their token counts (repeated on each sample row) on each call's
    first row only, under the per-call names."""
    import pandas as pd

    from .frame import LEGACY_TOKEN_COLUMNS

    records = json.loads("[" + ",".join(record for *_, record in rows) + "]")
    frame = pd.DataFrame.from_records(records)
    frame.insert(0, "run_at", [r[2] for r in rows])
    frame.insert(0, "run", [r[1] for r in rows])
    frame.insert(0, "session", [r[0] for r in rows])
    first = ~frame.duplicated(["session", "run", "call"]) if "call" in frame.columns else pd.Series(True, frame.index)
    for old, new in LEGACY_TOKEN_COLUMNS.items():
        if old in frame.columns:
            values = frame[old].where(first)
            frame[new] = values if new not in frame.columns else frame[new].fillna(values)
            frame = frame.drop(columns=old)
    return frame
