"""Canary keys: a distinctive Humanloop key and provider key go through chats, sweeps, errors,
streaming, the panel, history, the cache and an executed, saved notebook — and appear nowhere:
not in frames, reprs, widget values, error text, server logs, the SQLite files or the .ipynb."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from hl_notebook.config import HLSettings
from hl_notebook.widget import ChatPanel
from support import ServerProcess, closed_port_url

HL_KEY = "hl-CANARY-3c9d1e7f5a"
PROVIDER_KEY = "sk-CANARY-8b2f4d6a0c"
WRONG_KEY = "hl-CANARY-wrong-4e1d"


def assert_clean(text: str, where: str) -> None:
    for canary in ("CANARY", HL_KEY, PROVIDER_KEY, WRONG_KEY):
        assert canary not in text, f"{canary} leaked into {where}"


@pytest.fixture
def canary_server(tmp_path, monkeypatch, ipython):
    server = ServerProcess(tmp_path / "canary.sqlite", api_key=HL_KEY,
                           env={"OPENAI_BASE_URL": closed_port_url() + "/v1"}).start()
    monkeypatch.setenv("HUMANLOOP_BASE_URL", server.base_url)
    monkeypatch.setenv("HUMANLOOP_API_KEY", HL_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    settings = HLSettings.instance(parent=ipython)
    settings.provider = "mock"
    settings.cache_path = str(tmp_path / "cache.sqlite")
    settings.history_path = str(tmp_path / "history.sqlite")
    ipython.configurables[:] = [c for c in ipython.configurables if type(c).__name__ != "HLSettings"] + [settings]
    yield server
    server.stop()


def test_canary_keys_appear_nowhere(canary_server, ipython, capsys, tmp_path, monkeypatch):
    shell = ipython
    shown: list[str] = []
    frames = []
    frames.append(shell.run_cell_magic("hlchat", "--model m -n 2 --cache", "user: hello {{who}}".replace(
        "{{who}}", "there")))
    frames.append(shell.run_cell_magic("hlchat", "--model a,b --temperature 0,1 --stream", "user: sweep"))
    frames.append(shell.run_cell_magic("hlchat", "--model m --provider openai,mock", "user: provider failure"))
    assert frames[-1]["error"].str.contains("OpenAI is unreachable").any()
    for cell in ("%%hlchat --model m --provider openai\nuser: fails",       # provider failure (503)
                 "%%hlchat --model m -n 101\nuser: 422",                     # validation
                 "%config HLSettings",                                      # every setting printed
                 "%%hlchat --model m --no-such-option\nuser: x"):
        shell.run_cell(cell)
    monkeypatch.setenv("HUMANLOOP_API_KEY", WRONG_KEY)
    shell.run_cell("%%hlchat --model m\nuser: 401")
    monkeypatch.setenv("HUMANLOOP_API_KEY", HL_KEY)
    captured = capsys.readouterr()
    shown += [captured.out, captured.err]
    assert "HLAuthError" in captured.out and "HLServerError" in captured.out  # the errors did happen

    panel = ChatPanel(shell=shell)
    panel._messages.value = "user: from the panel"
    panel._run.click()
    panel.wait(60)
    panel._provider.value = "openai"
    panel._run.click()
    panel.wait(60)
    assert "OpenAI is unreachable" in panel._status.value

    def widget_values(widget):
        yield repr(widget)
        for child in getattr(widget, "children", ()):
            yield from widget_values(child)

    import hl_notebook
    from hl_notebook.connection import connect
    history = hl_notebook.history()
    texts = {
        "frames": "".join(f.to_json(date_format="iso") + f.to_string() + repr(f) for f in frames),
        "panel": "".join(widget_values(panel)) + panel.result.to_json(date_format="iso"),
        "history": history.to_json(date_format="iso"), "printed": "".join(shown),
        "reprs": repr(connect().client) + repr(HLSettings.instance()),
        "server log": "".join(canary_server.output),
    }
    for name, text in texts.items():
        assert_clean(text, name)
    for path in [*tmp_path.glob("*.sqlite*"), *Path(os.environ["HL_NOTEBOOK_HOME"]).glob("*.sqlite*")]:
        assert_clean(path.read_bytes().decode("latin-1"), str(path.name))


def test_saved_executed_notebook_has_no_key(canary_server, tmp_path):
    notebook = new_notebook(cells=[
        new_code_cell("%load_ext hl_notebook\n%config HLSettings.provider = 'mock'"),
        new_code_cell("%%hlchat --model m --out df\nuser: in a notebook"),
        new_code_cell("%%hlchat --model m --provider openai\nuser: provider failure"),
        new_code_cell("%config HLSettings"),
        new_code_cell("import os; good = os.environ['HUMANLOOP_API_KEY']; os.environ['HUMANLOOP_API_KEY'] = 'x' * 12"),
        new_code_cell("%%hlchat --model m\nuser: wrong key"),
        new_code_cell("df"),
        # full tracebacks with every frame's locals (issue 10: 84 key occurrences in such a notebook)
        new_code_cell("os.environ['HUMANLOOP_API_KEY'] = good\n%xmode Verbose\n"
                      "%config HLSettings.show_traceback = True"),
        new_code_cell("%%hlchat --model m --provider openai\nuser: verbose provider failure"),
        new_code_cell("import hl_notebook\nhl_notebook.chat('user: hi', model='m', provider='openai')"),
        new_code_cell("%%hlchat --model m -n 101\nuser: verbose 422"),
        new_code_cell("hl_notebook.chat('user: {{x}}', model='m', inputs={'x': float('inf')})"),
        # a plain bug in a frame that holds a connection and a request body: Verbose prints its locals
        new_code_cell("from hl_notebook.connection import connect\nfrom hl_notebook.plan import make_specs\n"
                      "from hl_notebook.spec import build_body\ndef buggy():\n    connection = connect()\n"
                      "    body = build_body(make_specs([{'role': 'user', 'content': 'x'}], axes={'model': ['m']})[0],"
                      " connection.provider_api_keys)\n    return (connection, body) / 0\nbuggy()"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    env_before = dict(os.environ)
    os.environ["HL_NOTEBOOK_HOME"] = str(tmp_path)
    try:
        NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    saved = tmp_path / "saved.ipynb"
    nbformat.write(notebook, saved)
    text = saved.read_text()
    outputs = [[output.get("text") or output.get("ename") or output.get("data", {}).get("text/plain", "")
                for output in cell.get("outputs", [])] for cell in notebook.cells]
    assert "HLServerError" in text and "HLAuthError" in text and "m: in a notebook" in text, outputs  # the calls ran
    verbose = [output for cell in notebook.cells[8:] for output in cell.get("outputs", [])
               if output.get("output_type") == "error"]
    assert len(verbose) == 5 and all(len(output["traceback"]) > 1 for output in verbose)  # full tracebacks
    assert "TypeError" in verbose[-1]["traceback"][-1]  # the buggy frame holding the keys was shown

    assert_clean(text, "the saved notebook")
