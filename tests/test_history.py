"""History on disk (issue 11.5): runs are stored as they are returned and read back from the file
with the contract's dtypes plus session/run/run_at; rows of the older per-row JSON format still
load; with no usable file a bounded in-memory fallback; recording never costs the user the frame."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from hl_notebook import archive
from hl_notebook.call import CallResult
from hl_notebook.config import HLSettings
from hl_notebook.errors import HLRateLimitError
from hl_notebook.frame import columns, to_frame
from hl_notebook.spec import ChatSpec

META = {"session": "string", "run": "Int64", "run_at": "datetime64[ns, UTC]"}


def frame_of(calls: int = 2, samples: int = 2, text: str = "out", tail: str = " ünï \ud800") -> pd.DataFrame:
    """A frame with a failed call; outputs end in ``tail`` (by default non-ASCII and a lone surrogate)."""
    spec = ChatSpec(endpoint="chat", messages=({"role": "user", "content": "say {{word}}"},),
                    model_config={"model": "m", "provider": "mock", "stop": ["x", "y"]}, num_samples=samples)
    results = [CallResult(call, spec.with_inputs({"word": f"w{call}", "n": call}),
                          {"project_id": "pr_1", "usage": {"prompt_tokens": 2, "generation_tokens": 3, "total_tokens": 5},
                           "data": [{"id": f"data_{call}_{i}", "index": i, "output": f"{text} {call}.{i}{tail}",
                                     "finish_reason": "stop", "model_config_id": "config_1"} for i in range(samples)]},
                          latency_s=0.25)
               for call in range(calls)]
    failed = CallResult(calls, spec.with_inputs({"word": "z", "n": None}), None,
                        HLRateLimitError("slow down", status_code=429, endpoint="/chat"))
    return to_frame([*results, failed])


@pytest.fixture
def history_file(tmp_path, monkeypatch):
    archive.settle()  # a run of an earlier test still being recorded goes to its own state
    path = tmp_path / "history.sqlite"
    HLSettings.instance().history_path = str(path)
    monkeypatch.setattr(archive, "SESSION", "test-" + tmp_path.name[-8:])
    for name, value in {"_paths": [], "_memory": [], "_warned": set(), "_run": 0}.items():
        monkeypatch.setattr(archive, name, value, raising=False)
    return path


def contract_part(history: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(history).drop(columns=list(META)).reset_index(drop=True)


def test_a_run_reads_back_from_the_file_with_the_contract_and_meta_dtypes(history_file):
    frame = frame_of()
    archive.record(frame)
    history = archive.history()
    assert list(history.columns) == [*META, *(name for name, _ in columns(["word", "n"]))]
    assert {name: str(history[name].dtype) for name in META} == META
    pd.testing.assert_frame_equal(contract_part(history), pd.DataFrame(frame))
    assert history["run_at"].iloc[0].tzname() == "UTC" and history["session"].unique().tolist() == [archive.SESSION]
    assert history["call_total_tokens"].sum() == 10  # per call, once
    assert type(history).__name__ == "ResultFrame"


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
def test_both_string_storages_round_trip(history_file, storage):
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    with pd.option_context("mode.string_storage", storage):
        frame = frame_of(tail=" ünï ✓")
        assert frame["output"].dtype.storage == storage
        archive.record(frame)
        pd.testing.assert_frame_equal(contract_part(archive.history()), pd.DataFrame(frame))


def test_a_damaged_chunk_costs_its_rows_with_one_warning(history_file, capsys):
    archive.record(frame_of(text="first"))
    archive.record(frame_of(text="second"))
    with sqlite3.connect(history_file) as db:
        db.execute("UPDATE chunks SET data = x'00ff' WHERE run = 1")
    outputs = archive.history()["output"].dropna().tolist()
    assert outputs and all(o.startswith("second") for o in outputs)
    assert "some history rows cannot be read" in capsys.readouterr().err


def test_history_is_read_from_the_file_not_kept_in_memory(history_file):
    archive.record(frame_of())
    assert len(archive.history()) == 5
    with sqlite3.connect(history_file) as db:
        db.execute("DELETE FROM chunks")
    assert len(archive.history()) == 0  # nothing of the run was held in the session


def test_many_runs_and_chunks_come_back_in_order(history_file, monkeypatch):
    monkeypatch.setattr(archive, "CHUNK_ROWS", 3)
    first, second = frame_of(calls=4, text="first"), frame_of(calls=1, samples=3, text="second")
    archive.record(first)
    archive.record(second)
    history = archive.history()
    assert history["output"].tolist() == [*first["output"], *second["output"]]
    assert history["run"].tolist() == [1] * len(first) + [2] * len(second)
    with sqlite3.connect(history_file) as db:
        assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 3 + 2


def test_later_edits_to_the_users_frame_do_not_change_history(history_file):
    frame = frame_of()
    archive.record(frame)
    frame.loc[0, "output"] = "edited"
    assert archive.history()["output"].iloc[0] != "edited"


def test_rows_of_the_older_per_row_json_format_still_load(history_file):
    # written by today's code as it was (which could not store a lone surrogate)
    old = pd.DataFrame(frame_of(tail=" ünï")).rename(columns={f"call_{n}": n for n in
                                                           ("prompt_tokens", "generation_tokens", "total_tokens")})
    old["total_tokens"] = old.groupby("call")["total_tokens"].transform("first")  # repeated, as written then
    records = json.loads(old.to_json(orient="records", date_format="iso"))
    archive.record(frame_of(calls=1))  # creates the file (and a run of this session)
    with sqlite3.connect(history_file) as db:
        db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
                       [("oldsession", 1, 1.0e9, i, json.dumps(r)) for i, r in enumerate(records)])
    everything = archive.history(all_sessions=True)
    older = everything[everything["session"] == "oldsession"]
    assert older["output"].tolist() == old["output"].tolist()
    assert older["call_total_tokens"].tolist() == [5, pd.NA, 5, pd.NA, pd.NA]
    assert older["call_total_tokens"].sum() == 10
    assert str(older["created_at"].dtype) == "datetime64[ns, UTC]" and str(older["call"].dtype) == "Int64"
    assert str(older["run_at"].iloc[0]) == "2001-09-09 01:46:40+00:00"
    assert everything["session"].tolist()[-3:] == [archive.SESSION] * 3  # oldest first
    assert len(archive.history()) == 3  # this session only


def test_without_a_file_history_is_in_memory_and_bounded(history_file, monkeypatch, capsys):
    HLSettings.instance().history_path = ""
    monkeypatch.setattr(archive, "MEMORY_BYTES", 1)  # every run is over the bound: only the last is kept
    archive.record(frame_of(text="one"))
    archive.record(frame_of(text="two"))
    archive.record(frame_of(text="three"))
    history = archive.history()
    assert history["output"].str.startswith("three").sum() == 4 and history["run"].unique().tolist() == [3]
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "history in memory keeps the last" in warnings[0]


def test_an_sqlite_error_keeps_the_run_in_memory_with_one_warning(history_file, capsys):
    archive.record(frame_of(text="kept"))
    with sqlite3.connect(history_file) as db:
        db.execute("DROP TABLE chunks")
        db.execute("CREATE TABLE chunks (x)")  # wrong shape: every insert fails
    archive.record(frame_of(text="in memory"))
    archive.record(frame_of(text="also in memory"))
    outputs = archive.history()["output"].fillna("")
    assert outputs.str.startswith("in memory").sum() == 4 and outputs.str.startswith("also").sum() == 4
    assert len([line for line in capsys.readouterr().err.splitlines() if "cannot be used" in line]) == 1


def test_a_packing_bug_warns_and_never_raises(history_file, monkeypatch, capsys):
    def broken(frame):
        raise RuntimeError("boom")
    monkeypatch.setattr(archive, "_pack", broken)
    archive.record(frame_of())
    archive.record(frame_of())
    assert capsys.readouterr().err.count("could not be added to the history") == 1


def test_hlchat_history_shows_the_compact_view(shell):
    shell.run_cell_magic("hlchat", "--model m --temperature 0 -n 2", "user: history view")
    history = shell.run_line_magic("hlchat_history", "")
    assert str(history["run_at"].dtype) == "datetime64[ns, UTC]"
    view = history.display_view()
    assert list(view.columns)[:5] == ["session", "run", "call", "sample", "output"]
    assert "request" not in view.columns and "history view" in history._repr_html_()


# -- record_later: a run returns its frame, its history is written on the history's thread --------
def test_record_later_keeps_the_frame_as_returned_and_history_waits_for_it(history_file, monkeypatch):
    release = threading.Event()
    pack = archive._pack

    def slow_pack(frame):
        assert release.wait(10)
        return pack(frame)

    monkeypatch.setattr(archive, "_pack", slow_pack)
    frame = frame_of(text="as returned")
    archive.record_later(frame)
    frame.loc[0, "output"] = "edited afterwards"  # the user's edit, before the record is packed
    frame["output"] = "replaced"
    stored = sqlite3.connect(history_file).execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert stored == 0  # not recorded yet (the file is opened before, to warn with the cell)
    threading.Timer(0.2, release.set).start()
    outputs = archive.history()["output"].dropna().tolist()  # waits for the record
    assert outputs and all(text.startswith("as returned") for text in outputs)


def test_record_later_writes_to_the_file_and_session_of_the_moment_it_was_called(history_file, tmp_path,
                                                                                  monkeypatch):
    release = threading.Event()
    pack = archive._pack
    monkeypatch.setattr(archive, "_pack", lambda frame: (release.wait(10), pack(frame))[1])
    archive.record_later(frame_of(text="first file"))
    HLSettings.instance().history_path = str(tmp_path / "other.sqlite")
    monkeypatch.setattr(archive, "SESSION", "a later session")
    release.set()
    archive.settle()
    sessions = sqlite3.connect(history_file).execute("SELECT DISTINCT session FROM chunks").fetchall()
    assert sessions == [("test-" + tmp_path.name[-8:],)]
    assert not (tmp_path / "other.sqlite").exists()


def test_without_copy_on_write_record_later_records_before_it_returns(history_file, monkeypatch):
    monkeypatch.setattr(archive, "_copy_on_write", lambda: False)  # pandas 2 without the option
    frame = frame_of(text="now")
    archive.record_later(frame)
    frame["output"] = "replaced"
    assert sqlite3.connect(history_file).execute("SELECT COUNT(*) FROM chunks").fetchone() == (1,)
    assert archive.history()["output"].dropna().str.startswith("now").all()


def test_a_run_still_being_recorded_at_exit_is_written(tmp_path):
    path = tmp_path / "h.sqlite"
    script = f"""
import time
from hl_notebook import archive
from hl_notebook.config import HLSettings
import test_history
HLSettings.instance().history_path = {str(path)!r}
pack = archive._pack
archive._pack = lambda frame: (time.sleep(0.5), pack(frame))[1]
archive.record_later(test_history.frame_of(text="at exit"))
"""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM chunks").fetchone() == (1,)


def test_record_later_opens_a_path_on_the_callers_thread_only_until_it_is_known(history_file, tmp_path,
                                                                                 monkeypatch):
    """The caller's thread opens a path to warn with the cell; once a run was stored there or the path
    was warned about, only the history's thread opens it (one open per run, as before)."""
    caller = threading.current_thread()
    opened_here: list[str] = []
    connect = archive._connect

    def counting(path=None):
        if threading.current_thread() is caller:
            opened_here.append(path)
        return connect(path)

    monkeypatch.setattr(archive, "_connect", counting)
    monkeypatch.setattr(archive, "_copy_on_write", lambda: True)  # the history's thread, whatever pandas
    for _ in range(3):
        archive.record_later(frame_of())
        archive.settle()
    assert opened_here == [str(history_file)]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    unusable = str(blocker / "history.sqlite")
    HLSettings.instance().history_path = unusable
    for _ in range(3):
        archive.record_later(frame_of())
        archive.settle()
    assert opened_here == [str(history_file), unusable]


def test_a_packing_bug_on_the_history_thread_warns_once_and_the_frame_is_untouched(history_file, monkeypatch, capsys):
    def broken(frame):
        raise RuntimeError("boom")
    monkeypatch.setattr(archive, "_pack", broken)
    frame = frame_of(text="kept")
    archive.record_later(frame)
    archive.record_later(frame)
    archive.settle()
    assert capsys.readouterr().err.count("could not be added to the history") == 1
    assert frame["output"].dropna().str.startswith("kept").all()


def test_a_forked_child_records_its_own_runs_and_does_not_wait_for_its_parents(tmp_path):
    path = tmp_path / "h.sqlite"
    script = f"""
import os, signal, sys, time
from hl_notebook import archive
from hl_notebook.config import HLSettings
import test_history
HLSettings.instance().history_path = {str(path)!r}
archive.record_later(test_history.frame_of(text="parent"))
archive.settle()
pack = archive._pack
archive._pack = lambda frame: (time.sleep(1.0), pack(frame))[1]
archive.record_later(test_history.frame_of(text="parent, still packing at the fork"))
child = os.fork()
if child == 0:
    signal.alarm(20)  # a hang (work handed to the parent's thread, which the child does not have) fails
    archive._pack = pack
    archive.record_later(test_history.frame_of(text="child"))
    outputs = archive.history()["output"].dropna().tolist()
    os._exit(0 if any(o.startswith("child") for o in outputs) else 3)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    assert done.returncode == 0


def test_a_child_forked_while_another_thread_holds_the_history_lock_still_records(tmp_path):
    """The recorder thread takes archive._lock (warnings, the in-memory fallback): a child forked
    at that moment gets a lock nobody will release, unless the child makes its own."""
    path = tmp_path / "h.sqlite"
    script = f"""
import os, signal, sys, threading
from hl_notebook import archive
from hl_notebook.config import HLSettings
import test_history
HLSettings.instance().history_path = {str(path)!r}
held, release = threading.Event(), threading.Event()
def hold():
    with archive._lock:
        held.set()
        release.wait(30)
threading.Thread(target=hold, daemon=True).start()
held.wait(10)
child = os.fork()
if child == 0:
    signal.alarm(20)  # a hang on the inherited lock fails
    archive.record_later(test_history.frame_of(text="child"))
    outputs = archive.history()["output"].dropna().tolist()
    os._exit(0 if any(o.startswith("child") for o in outputs) else 3)
_, status = os.waitpid(child, 0)
release.set()
sys.exit(os.waitstatus_to_exitcode(status))
"""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    assert done.returncode == 0
