"""Sweeps against real server processes: declared order, the concurrency bound (counted by the
server), injected failures kept as rows, retry(), shared 429 backoff, interrupt, cache."""
from __future__ import annotations

import _thread
import threading

import pandas as pd
import pytest
import requests

import hl_notebook
from hl_notebook.config import HLSettings
from support import ServerProcess


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("slow") / "s.sqlite",
                            extra_args=["--mock-latency-ms", "50"]).start()
    yield process
    process.stop()


def stats(server: ServerProcess, reset: bool = False) -> dict:
    if reset:
        return requests.post(server.base_url + "/server-stats/reset", headers=server.headers, timeout=10).json()
    return requests.get(server.base_url + "/server-stats", headers=server.headers, timeout=10).json()


WORDS = pd.DataFrame({"word": [f"w{i}" for i in range(12)]})


def test_rows_in_declared_order_and_concurrency_bound_respected(point, slow_server):
    point(slow_server)
    stats(slow_server, reset=True)
    frame = hl_notebook.sweep("user: say {{word}}", model=["a", "b"], temperature=0, inputs=WORDS, concurrency=4)
    assert frame["call"].tolist() == list(range(24))
    expected = [f"{m}: say w{i}" for m in ("a", "b") for i in range(12)]
    assert frame["output"].tolist() == expected
    seen = stats(slow_server)
    assert seen["requests"] == 24
    assert 2 <= seen["max_in_flight"] <= 4


def test_injected_failures_become_rows_and_retry_fills_them(point, tmp_path, capsys):
    faulty = point(ServerProcess(tmp_path / "f.sqlite", extra_args=[
        "--faults", "--fault-rates", "500=0.3,drop=0.1", "--fault-seed", "3"]).start())
    try:
        frame = hl_notebook.sweep("user: say {{word}}", model="m", temperature=0, inputs=WORDS, concurrency=4)
        assert frame["call"].tolist() == list(range(12))  # none missing, none duplicated
        failed = frame[frame["error"].notna()]
        assert len(failed) > 0
        assert set(failed["error_type"]) <= {"HLServerError", "HLConnectionError"}
        assert failed["sample"].isna().all()
        for _ in range(10):
            frame = hl_notebook.retry(frame, concurrency=4)
            if frame["error"].isna().all():
                break
        assert frame["error"].isna().all()
        assert frame["output"].tolist() == [f"m: say w{i}" for i in range(12)]
        project = [p for p in faulty.get("/projects").json()["records"] if p["name"] == "default"][0]
        logs = faulty.get("/logs", params={"project_id": project["id"], "size": 1000}).json()
        assert logs["total"] == 12  # faults are injected before the endpoint: only ok calls are logged
    finally:
        faulty.stop()


def test_rate_limits_slow_the_sweep_instead_of_failing_it(point, tmp_path):
    limited = point(ServerProcess(tmp_path / "r.sqlite", extra_args=[
        "--faults", "--fault-rates", "429=0.3", "--fault-seed", "1"]).start())
    try:
        HLSettings.instance().max_retries = 10
        stats(limited, reset=True)
        frame = hl_notebook.sweep("user: say {{word}}", model="m", temperature=0, inputs=WORDS, concurrency=4)
        assert frame["error"].isna().all()
        assert stats(limited)["requests"] == 12  # 429s are answered before the counted endpoint
    finally:
        limited.stop()


def test_summary_line_for_partial_failure(shell, capsys):
    capsys.readouterr()
    shell.run_cell_magic("hlchat", "--model a --provider mock,broken,mock2 --temperature 0", "user: x")
    assert capsys.readouterr().err.strip() == "1 ok, 2 failed (HLValidationError ×2); see the error column"


def interrupt_after(server: ServerProcess, requests_seen: int) -> threading.Thread:
    """A started thread that sends Ctrl-C to the main thread once the server has seen that many requests."""
    def interrupt() -> None:
        while stats(server)["requests"] < requests_seen:
            threading.Event().wait(0.02)
        _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt, daemon=True)
    watcher.start()
    return watcher

def test_interrupt_keeps_finished_rows_in_out_and_history(shell, slow_server, monkeypatch):
    monkeypatch.setenv("HUMANLOOP_BASE_URL", slow_server.base_url)
    monkeypatch.setenv("HUMANLOOP_API_KEY", slow_server.api_key)
    stats(slow_server, reset=True)
    shell.user_ns["many"] = pd.DataFrame({"word": [f"w{i}" for i in range(60)]})
    history_before = len(hl_notebook.history())

    watcher = interrupt_after(slow_server, 8)
    with pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic("hlchat", "--model m --temperature 0 --inputs many --concurrency 2 --out partial",
                             "user: say {{word}}")
    watcher.join(10)
    partial = shell.user_ns["partial"]
    assert partial["call"].tolist() == list(range(60))  # every call is a row, cancelled ones too
    done = partial[partial["error"].isna()]
    assert 0 < len(done) < 60
    assert done["output"].tolist() == [f"m: say w{c}" for c in done["call"]]
    cancelled = partial[partial["error"].notna()]
    assert set(cancelled["error_type"]) == {"HLCancelled"} and cancelled["output"].isna().all()
    assert len(hl_notebook.history()) == history_before + 60
    # the sweep can be resumed: retry() runs exactly the cancelled calls, each logged once
    before = stats(slow_server)["requests"]
    finished = hl_notebook.retry(partial)
    assert finished["error"].isna().all() and finished["call"].tolist() == list(range(60))
    assert finished["output"].tolist() == [f"m: say w{i}" for i in range(60)]
    assert stats(slow_server)["requests"] - before <= len(cancelled)


def test_an_interrupt_without_out_says_where_the_rows_are(shell, slow_server, monkeypatch):
    """Without ``--out`` the one line said only what was cancelled; the finished rows are in the
    history, and ``retry`` of that run finishes the sweep."""
    monkeypatch.setenv("HUMANLOOP_BASE_URL", slow_server.base_url)
    monkeypatch.setenv("HUMANLOOP_API_KEY", slow_server.api_key)
    stats(slow_server, reset=True)
    shell.user_ns["many"] = pd.DataFrame({"word": [f"w{i}" for i in range(40)]})

    watcher = interrupt_after(slow_server, 6)
    with pytest.raises(KeyboardInterrupt) as raised:
        shell.run_cell_magic("hlchat", "--model m --temperature 0 --inputs many --concurrency 2", "user: say {{word}}")
    watcher.join(10)
    assert str(raised.value).endswith("cancelled; rows so far are in hl_notebook.history()"), str(raised.value)
    history = hl_notebook.history()
    last = history[history["run"] == history["run"].max()]
    finished = hl_notebook.retry(last)
    assert finished["output"].tolist() == [f"m: say w{i}" for i in range(40)]

def test_cache_answers_repeats_without_http(point, slow_server):
    point(slow_server)
    first = hl_notebook.sweep("user: cache {{word}}", model="m", temperature=0.5, inputs=WORDS.head(3), cache=True)
    stats(slow_server, reset=True)
    again = hl_notebook.sweep("user: cache {{word}}", model="m", temperature=0.5, inputs=WORDS.head(3), cache=True)
    assert stats(slow_server)["requests"] == 0
    assert again["cached"].all() and not first["cached"].any()
    assert again["output"].tolist() == first["output"].tolist()
    fresh = hl_notebook.sweep("user: cache {{word}}", model="m", temperature=0.5, inputs=WORDS.head(3))
    assert not fresh["cached"].any() and stats(slow_server)["requests"] == 3
    # an experiment picks its config per call on the server: the cache must never answer for it
    a = hl_notebook.register_config("m-a", temperature=0, project="cache-exp")
    b = hl_notebook.register_config("m-b", temperature=0, project="cache-exp")
    experiment = hl_notebook.create_experiment([a, b], name="cached?", project="cache-exp")
    for _ in range(2):
        hl_notebook.sweep("user: same", experiment_id=experiment, num_samples=2, cache=True)
    repeat = hl_notebook.sweep("user: same", experiment_id=experiment, num_samples=2, cache=True)
    assert not repeat["cached"].any()


def test_concurrency_starts_at_32_and_halves_when_the_server_pushes_back(point, slow_server, tmp_path, capfd):
    from hl_notebook.plan import make_specs
    from hl_notebook.pool import run_specs

    point(slow_server)
    stats(slow_server, reset=True)
    specs = make_specs([{"role": "user", "content": "say {{n}}"}], axes={"model": ["m"], "temperature": [0]},
                       inputs=[{"n": i} for i in range(96)], default_provider="mock")
    run = run_specs(specs, progress=True)
    assert run.concurrency_levels == [32] and all(r.ok for r in run.results)
    assert stats(slow_server)["max_in_flight"] > 8  # the old default capped sweeps at 8 in flight
    assert "in_flight=32" in capfd.readouterr().err  # the progress bar shows the current level

    limited = point(ServerProcess(tmp_path / "r.sqlite", extra_args=[
        "--faults", "--fault-rates", "429=0.2", "--fault-seed", "2", "--fault-retry-after", "0"]).start())
    try:
        HLSettings.instance().max_retries = 10
        run = run_specs(specs, concurrency=20)
        levels = run.concurrency_levels
        assert levels[0] == 20 and min(levels) < 20 and max(levels) <= 20  # halved, never above --concurrency
        assert all(r.ok for r in run.results)
    finally:
        limited.stop()


def test_the_frame_spec_columns_are_built_while_the_calls_run(point, slow_server, monkeypatch):
    """The calling thread builds them between waits (pool._run_pool's ``idle``), not after the last answer."""
    from hl_notebook import frame as frame_module, pool

    point(slow_server)
    answered, built = [], []
    execute = pool.execute

    def timed_execute(*args, **kwargs):
        result = execute(*args, **kwargs)
        answered.append(threading.get_ident())
        return result

    build_some = frame_module.SpecColumns.build_some

    def counted(self, seconds=0.001):
        more = build_some(self, seconds)
        built.append((len(answered), threading.get_ident(), more))
        return more

    monkeypatch.setattr(pool, "execute", timed_execute)
    monkeypatch.setattr(frame_module.SpecColumns, "build_some", counted)
    frame = hl_notebook.sweep("user: say {{word}}", model="m", temperature=0, inputs=WORDS, concurrency=4)
    assert frame["prompt"].tolist() == [f"say w{i}" for i in range(12)]
    assert built and {thread for _, thread, _ in built} == {threading.get_ident()}  # on the calling thread
    answers_when_done = next(answers for answers, _, more in built if not more)
    assert answers_when_done < 12  # all built before the last answer (12 calls of 50 ms, 4 at a time)


def test_a_failure_in_the_work_done_while_waiting_never_stops_the_calls(point, slow_server, monkeypatch):
    from hl_notebook import frame as frame_module

    point(slow_server)
    build_some = frame_module.SpecColumns.build_some
    failed = []

    def fails_while_waiting(self, seconds=0.001):
        if not failed:  # the pool's first call of it; to_frame's later ones work
            failed.append(1)
            raise RuntimeError("a bug in idle work")
        return build_some(self, seconds)

    monkeypatch.setattr(frame_module.SpecColumns, "build_some", fails_while_waiting)
    frame = hl_notebook.sweep("user: say {{word}}", model="m", temperature=0, inputs=WORDS, concurrency=4)
    assert failed and frame["error"].isna().all() and frame["output"].tolist() == [f"m: say w{i}" for i in range(12)]


def test_older_objects_are_frozen_while_the_calls_run_and_only_then(point, slow_server, monkeypatch):
    """A full collection in a sweep walks only what the sweep made (gcpause.py): the calls see a frozen heap."""
    import gc

    from hl_notebook import pool

    point(slow_server)
    frozen_during = []
    execute = pool.execute

    def observed_execute(*args, **kwargs):
        frozen_during.append(gc.get_freeze_count())
        return execute(*args, **kwargs)

    monkeypatch.setattr(pool, "execute", observed_execute)
    gc.unfreeze()  # (nothing frozen before: the sweep's own freeze is what the calls see)
    frame = hl_notebook.sweep("user: say {{word}}", model="m", temperature=0, inputs=WORDS, concurrency=4)
    assert frame["error"].isna().all()
    assert len(frozen_during) == 12 and min(frozen_during) > 0
    assert gc.get_freeze_count() == 0


def test_no_specs_is_an_empty_run_at_once():
    """A pool of no calls waited for ever: no worker was there to say that all calls were kept."""
    from hl_notebook.pool import run_specs

    runs = []
    worker = threading.Thread(target=lambda: runs.append(run_specs([], concurrency=8, progress=False)), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "run_specs([]) did not return"
    assert runs[0].results == [] and len(runs[0].frame) == 0 and runs[0].status() == ("0 ok, 0 failed", False)


def test_retry_of_a_frame_of_several_runs_replaces_only_the_failed_calls(point, server):
    """Call numbers repeat across runs (history, or runs concatenated): retry matched rows by
    ``call`` alone and dropped every ok row that shared a number with a failed one."""
    from support import closed_port_url

    point(server)
    hl_notebook.sweep("user: first {{word}}", model="m", temperature=0, inputs=WORDS.head(3), progress=False)
    second = hl_notebook.sweep("user: second {{word}}", model="m", temperature=0, inputs=WORDS.head(3),
                               progress=False, base_url=closed_port_url())  # every call fails: nothing listens there
    history = hl_notebook.history()
    both = history[history["run"].isin(history["run"].unique()[-2:])].reset_index(drop=True)
    assert both["error"].notna().tolist() == [False] * 3 + [True] * 3
    fixed = hl_notebook.retry(both)
    assert len(fixed) == 6 and fixed["error"].isna().all()
    assert fixed["output"].tolist() == [f"m: {n} w{i}" for n in ("first", "second") for i in range(3)]
    assert fixed[["session", "run", "call"]].equals(both[["session", "run", "call"]])  # in place, ids kept
    assert fixed.dtypes.equals(both.dtypes)
    mixed = pd.concat([both.iloc[:3], second], ignore_index=True)  # a run frame has no session or run
    again = hl_notebook.retry(mixed)
    assert again["error"].isna().all() and again["call"].tolist() == [0, 1, 2] * 2
    assert again.dtypes.equals(mixed.dtypes)  # (the run ids of the retried rows stayed <NA>, not NaN floats)
    assert fixed["log_id"].iloc[:3].tolist() == both["log_id"].iloc[:3].tolist()  # ok rows untouched
