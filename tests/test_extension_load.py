"""Loading the extension and rejecting bad cells stay cheap: no FastAPI, no uvicorn, no server import
and no embedded server started. Checked in a fresh interpreter (this test process has imported the
server already), with a real InteractiveShell."""
from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r'''
import json, sys, threading
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "hl_notebook")
shell.run_line_magic("config", "HLSettings.history_path = ''")
errors = []
def record(cell):
    result = shell.run_cell(cell)
    errors.append(type(result.error_in_exec).__name__)
record("%%hlchat --model m --temprature 0\nuser: hi")          # unknown option
record("%%hlchat --model m\nuser: explain {{undefined_name}}")  # missing template variable
record("%%hlchat --model m --temperature 7\nuser: hi")          # out of range
record("%%hlchat --model m --max-tokens lots\nuser: hi")        # not a number
record("%%hlchat --model m\nusr:\nhi")                          # malformed cell
heavy = [name for name in ("fastapi", "uvicorn", "starlette", "hl_notebook.server") if name in sys.modules]
threads = [t.name for t in threading.enumerate() if t.name.startswith("hl_notebook")]
print("RESULT " + json.dumps({"errors": errors, "heavy": heavy, "threads": threads}))
'''


def test_bad_cells_are_rejected_without_loading_or_starting_the_server(tmp_path):
    env = {**os.environ, "HL_NOTEBOOK_HOME": str(tmp_path)}
    env.pop("HUMANLOOP_BASE_URL", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["errors"] == ["HLUsageError", "MissingInputError", "HLUsageError", "HLUsageError",
                                "CellSyntaxError"]
    assert result["heavy"] == [] and result["threads"] == []
    # each error rendered as exactly one line
    lines = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if "Error:" in line]
    assert len(lines) == 5, done.stdout + done.stderr
    assert "unknown option --temprature; did you mean --temperature?" in lines[0]
    assert "undefined_name" in lines[1] and "(0 to 2)" in lines[2]


def test_the_server_process_helper_does_not_load_the_web_framework():
    code = "import sys, hl_notebook.server.process; print([m for m in ('fastapi', 'uvicorn') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
