"""judge() and %%hlchat_judge: a judge prompt per row through the sweep's pool, scores parsed from replies.

The mock provider replies ``"<model>: <last user text>"`` (temperature 0), so a judge prompt whose
last user message ends with ``{{verdict}}`` makes the judge "say" that row's verdict.
"""
from __future__ import annotations

import pandas as pd
import pytest

import hl_notebook
from hl_notebook.errors import MissingInputError
from hl_notebook.judging import parse_verdict

VERDICTS = [{"verdict": "7"}, {"verdict": "pass"}, {"verdict": "FAIL"}, {"verdict": "Score: 8/10"},
            {"verdict": "no idea"}, {"verdict": "[[2.5]] then more words"}]


@pytest.fixture
def frame(point, server):
    point(server)
    return hl_notebook.sweep("user: answer {{verdict}}", model="gpt-4o-mini", temperature=0, inputs=VERDICTS)


@pytest.mark.parametrize("reply, value", [
    ("gpt-4o-mini: 7", 7.0), ("Score: 8/10. Good.", 8.0), ("I rate it 7 out of 10.", 7.0), ("[[3]] not 9", 3.0),
    ("PASS\nbecause it answers", 1.0), ("judge: looks fine, pass", 1.0), ("fail.", 0.0), ("Verdict is FAILED", 0.0),
    ("rating = -1", -1.0), ("x: score: 0.25", 0.25), ("**Score:** 4", 4.0),
])
def test_parse_verdict_reads_numbers_and_pass_fail(reply, value):
    assert parse_verdict(reply) == (value, None)


@pytest.mark.parametrize("reply", ["no score here", "42 apples and more", "", None, "bypass", "compass"])
def test_parse_verdict_without_a_score_is_none_and_a_note(reply):
    value, note = parse_verdict(reply)
    assert value is None and note


def test_judge_scores_every_row_and_keeps_the_reply(frame):
    judged = hl_notebook.judge(frame, "user: Judge this. {{verdict}}", name="quality", model="judge-model")
    assert judged["score.quality"].tolist()[:4] == [7.0, 1.0, 0.0, 8.0]
    assert pd.isna(judged["score.quality"].iloc[4])
    assert judged["score.quality"].iloc[5] == 2.5
    assert str(judged["score.quality"].dtype) == "Float64"
    assert judged["score.quality.reason"].iloc[0] == "judge-model: Judge this. 7"  # the judge's reply
    assert judged["score.quality.error"].iloc[4].startswith("no score in the judge's reply")
    assert judged["score.quality.error"].drop(index=4).isna().all()
    assert list(judged.columns[-3:]) == ["score.quality", "score.quality.reason", "score.quality.error"]


def test_template_variables_are_output_prompt_and_inputs(frame):
    judged = hl_notebook.judge(frame.iloc[:1], "user: {{prompt}} | {{output}} | {{inputs.verdict}} | {{verdict}}",
                               model="j")
    assert judged["score.judge.reason"].iloc[0] == \
        "j: answer 7 | gpt-4o-mini: answer 7 | 7 | 7"
    assert judged["score.judge"].iloc[0] == 7.0


def test_rows_without_output_are_not_sent_and_a_failed_judge_call_is_its_rows_error(point, server):
    point(server)
    frame = hl_notebook.sweep("user: answer {{verdict}}", model="m", provider=["mock", "broken"], temperature=0,
                              inputs=VERDICTS[:2])
    before = len(hl_notebook.history())
    judged = hl_notebook.judge(frame, "user: {{verdict}}", model="j")
    assert len(hl_notebook.history()) - before == 2  # two judge calls: the failed rows were not sent
    failed = frame["error"].notna()
    assert judged.loc[~failed, "score.judge"].tolist() == [7.0, 1.0]
    assert judged.loc[failed, "score.judge"].isna().all()
    assert judged.loc[failed, "score.judge.error"].str.startswith("not judged: the call failed").all()
    broken = hl_notebook.judge(frame, "user: {{verdict}}", model="j", provider="broken")
    assert broken["score.judge"].isna().all()
    errors = broken.loc[~failed, "score.judge.error"].tolist()
    assert all(e.startswith("HL") and "\n" not in e for e in errors), errors


def test_the_judge_runs_in_the_sweep_pool_with_its_progress_and_cache(frame, capsys):
    capsys.readouterr()
    hl_notebook.judge(frame, "user: {{verdict}}", model="j", progress=True, concurrency=3)
    err = capsys.readouterr().err
    assert "hlchat" in err and "6/6" in err
    first = hl_notebook.judge(frame, "user: {{verdict}}", model="j", cache=True)
    again = hl_notebook.judge(frame, "user: {{verdict}}", model="j", cache=True)
    assert hl_notebook.history()["cached"].iloc[-6:].all()  # the second judge was answered locally
    assert again["score.judge"].equals(first["score.judge"])


def test_judge_calls_run_concurrently_up_to_the_limit(frame, server):
    server.post("/server-stats/reset", {})
    slow = {"mock_latency_ms": 300}  # long enough for calls to overlap on the server
    hl_notebook.judge(frame, "user: {{verdict}}", model="j", concurrency=3, other=slow)
    assert 2 <= server.get("/server-stats").json()["max_in_flight"] <= 3  # overlapping, within the limit
    server.post("/server-stats/reset", {})
    hl_notebook.judge(frame, "user: {{verdict}}", model="j", concurrency=1, other=slow)
    assert server.get("/server-stats").json()["max_in_flight"] == 1


def test_a_name_no_column_provides_fails_before_sending(frame):
    before = len(hl_notebook.history())
    with pytest.raises(MissingInputError, match="rubric"):
        hl_notebook.judge(frame, "user: {{output}} {{rubric}}", model="j")
    assert len(hl_notebook.history()) == before
    judged = hl_notebook.judge(frame.iloc[:1], "user: {{output}} {{rubric}}", model="j",
                               namespace={"rubric": "pass"})
    assert judged["score.judge"].iloc[0] == 1.0


def test_judges_chain_with_scores_and_work_on_history(frame):
    scored = hl_notebook.score(frame, lambda row: len(row["output"]), name="chars")
    judged = hl_notebook.judge(scored, "user: {{verdict}}", name="j1", model="j")
    history = hl_notebook.history()
    earlier = history[(history["model"] == "gpt-4o-mini") & history["inputs.verdict"].isin(["7", "pass"])]
    again = hl_notebook.judge(earlier, "user: {{verdict}}", model="j")
    assert {"score.chars", "score.j1"} <= set(judged.columns)
    assert len(again) >= 2 and set(again["score.judge"]) == {7.0, 1.0}


def test_the_magic_judges_a_notebook_frame(shell, capsys):
    # one-line errors: %config from an earlier test in this session may have turned tracebacks on
    shell.run_line_magic("config", "HLSettings.show_traceback = False")
    shell.user_ns["rows"] = VERDICTS[:3]
    shell.run_cell_magic("hlchat", "--model a --temperature 0 --inputs rows --out df", "user: answer {{verdict}}")
    result = shell.run_cell_magic("hlchat_judge", "df --model j --name q --out scored", "user: {{verdict}}")
    assert shell.user_ns["scored"] is result
    assert result["score.q"].tolist() == [7.0, 1.0, 0.0]
    quoted = shell.run_cell_magic("hlchat_judge", "df --model 'j' --name \"q 2\"", "user: {{verdict}}")
    assert quoted["score.q 2"].tolist() == [7.0, 1.0, 0.0]  # quotes are not part of the values
    capsys.readouterr()
    shell.run_cell("%%hlchat_judge df --model j,k\nuser: {{verdict}}")
    assert capsys.readouterr().out.strip().splitlines() == ["HLUsageError: --model: a judge takes one value, not 2"]
    shell.run_cell("%%hlchat_judge nothing --model j\nuser: {{verdict}}")
    assert "HLUsageError: FRAME 'nothing' is not defined in the notebook" in capsys.readouterr().out
