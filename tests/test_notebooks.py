"""The example notebooks, executed end to end with a real kernel (nbclient) on the embedded default."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(path: Path, home: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    env_before = dict(os.environ)
    os.environ["HL_NOTEBOOK_HOME"] = str(home)  # the kernel inherits it: a private embedded server DB
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, tmp_path):
    notebook = execute(path, tmp_path)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook showed nothing"


def test_quickstart_shows_all_four_endpoints_on_the_embedded_server(tmp_path):
    notebook = execute(ROOT / "notebooks" / "quickstart.ipynb", tmp_path)
    stderr = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", [])
                     if o.get("name") == "stderr")
    assert "hlchat: using the local server at http://127.0.0.1:" in stderr
    assert "(mock provider); set HUMANLOOP_BASE_URL to use another" in stderr
    table = notebook.cells[-1].outputs[-1]["data"]["text/plain"]
    for endpoint in ("chat", "model-config", "experiment", "deployed"):
        assert f" {endpoint} " in table


def test_main_job_prints_the_quickstart_table(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hl_notebook", "quickstart", "notebooks/quickstart.ipynb"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HL_NOTEBOOK_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "endpoint" in result.stdout and "deployed" in result.stdout


def test_evaluate_scores_judges_prices_diffs_and_reports(tmp_path):
    notebook = execute(ROOT / "notebooks" / "evaluate.ipynb", tmp_path)
    outputs = {index: cell.get("outputs", []) for index, cell in enumerate(notebook.cells)}
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for cell_outputs in outputs.values() for o in cell_outputs)
    assert "match" in text and "old.output" in text  # %%hlchat --baseline displayed the diff
    assert "×3" in text  # compare(collapse=True)
    assert "score.concise" in text and "score.clarity" in text  # a Python score and a judge score
    total = re.search(r"total: \$(\d+\.\d+) for 30 calls", text)
    assert total and float(total.group(1)) > 0  # set_price for the mock models
    report = re.search(r"(\S+evaluate-report\.html) [\d,]+ bytes", text)
    assert report, "the report's path was not printed"
    page = Path(report.group(1)).read_text(encoding="utf-8")
    assert page.count("<img") == 3 and "<script" not in page and '<section id="baseline">' in page


def test_experiment_notebook_moves_the_samples_to_the_config_that_gets_good_feedback(tmp_path):
    notebook = execute(ROOT / "notebooks" / "experiment.ipynb", tmp_path)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "errors: 0" in text  # every scored row was sent as feedback
    later = re.search(r"share of the 200 later samples: (\{.*\})", text)
    assert later, "the notebook did not print the shares"
    shares = ast.literal_eval(later.group(1))
    assert shares.get("medium", 0) >= 0.7  # the config whose answers score well (the first 60 split ~evenly)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the share-per-round plot
    final = notebook.cells[-2].outputs[-1]["data"]["text/plain"]
    assert "trials_count" in final and "spread" in final
