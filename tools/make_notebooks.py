"""Write the example notebooks from readable source (run: python tools/make_notebooks.py).

Why: notebooks are JSON; keeping their cells here makes reviews and edits plain Python diffs.
The generated .ipynb files are committed and executed by the test suite.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def write(name: str, cells: list) -> None:
    notebook = new_notebook(cells=cells, metadata=KERNEL)
    nbformat.write(notebook, ROOT / name)


QUICKSTART = [
    new_markdown_cell("# hl_notebook quickstart\n\nThe four Humanloop v4 chat endpoints from a notebook. "
                      "With no `HUMANLOOP_BASE_URL` set, `%%hlchat` starts the embedded local server with "
                      "the deterministic `mock` provider: no keys, no network."),
    new_code_cell("%load_ext hl_notebook\nimport pandas as pd\nimport hl_notebook"),
    new_markdown_cell("## `/chat`: an inline model config\n\nRole blocks in the cell; options pick the "
                      "config. One row per sample."),
    new_code_cell("%%hlchat --model demo-model --temperature 0.7 -n 2 --project quickstart --out chat_df\n"
                  "system: You are a terse assistant.\n"
                  "user: Give me one tip for naming variables."),
    new_markdown_cell("## Templates\n\n`{{name}}` placeholders are filled from `--inputs` or from "
                      "notebook variables of the same name."),
    new_code_cell("topic = \"pandas\"\n"),
    new_code_cell("%%hlchat --model demo-model --temperature 0 --project quickstart --out template_df\n"
                  "user: Explain {{topic}} in one sentence."),
    new_markdown_cell("## `/chat-model-config`: a registered config\n\nConfigs are immutable and "
                      "deduplicated by their parameters."),
    new_code_cell("client = hl_notebook.api_client()\n"
                  "terse = client.register_config(\"quickstart\", model=\"terse-model\", provider=\"mock\", "
                  "temperature=0, max_tokens=6)\n"
                  "chatty = client.register_config(\"quickstart\", model=\"chatty-model\", provider=\"mock\", "
                  "temperature=1)\n"
                  "terse_id, chatty_id = terse[\"config\"][\"id\"], chatty[\"config\"][\"id\"]\n"
                  "project_id = terse[\"project_id\"]"),
    new_code_cell("%%hlchat --model-config-id {terse_id} --out config_df\n"
                  "user: Describe the ocean in a long sentence."),
    new_markdown_cell("## `/chat-experiment`: sample among configs\n\nEach sample picks one of the "
                      "experiment's configs."),
    new_code_cell("experiment = client.create_experiment(project_id, \"terse-vs-chatty\", [terse_id, chatty_id])\n"
                  "experiment_id = experiment[\"id\"]"),
    new_code_cell("%%hlchat --experiment-id {experiment_id} -n 4 --out experiment_df\n"
                  "user: Say hello."),
    new_markdown_cell("## `/chat-deployed`: whatever the project has deployed\n\nDeploy the chatty "
                      "config to production, then call the project without naming a config."),
    new_code_cell("client.deploy(project_id, config_id=chatty_id)"),
    new_code_cell("%%hlchat --deployed --project quickstart --out deployed_df\n"
                  "user: What is deployed?"),
    new_markdown_cell("## All four, side by side"),
    new_code_cell("results = pd.concat([chat_df, config_df, experiment_df, deployed_df], ignore_index=True)\n"
                  "results[[\"endpoint\", \"model\", \"temperature\", \"sample\", \"output\", \"finish_reason\", "
                  "\"total_tokens\"]]"),
]

COMPARE = [
    new_markdown_cell("# Comparing model configs\n\nThree configs × ten support questions × two samples in one "
                      "cell, run concurrently, then compared side by side. Runs on the embedded local server "
                      "(mock provider) unless `HUMANLOOP_BASE_URL` is set."),
    new_code_cell("%load_ext hl_notebook\nimport pandas as pd\nimport hl_notebook"),
    new_code_cell("configs = [\n"
                  "    {\"model\": \"small-model\", \"temperature\": 0.0, \"max_tokens\": 12},\n"
                  "    {\"model\": \"small-model\", \"temperature\": 0.9},\n"
                  "    {\"model\": \"large-model\", \"temperature\": 0.4},\n"
                  "]\n"
                  "questions = pd.DataFrame({\n"
                  "    \"product\": [\"router\", \"laptop\", \"phone\", \"camera\", \"printer\",\n"
                  "                \"monitor\", \"keyboard\", \"headset\", \"tablet\", \"speaker\"],\n"
                  "    \"issue\": [\"drops wifi every hour\", \"battery drains overnight\", \"screen flickers\",\n"
                  "              \"lens will not focus\", \"prints blank pages\", \"shows no signal\",\n"
                  "              \"keys repeat\", \"mic is silent\", \"will not charge\", \"crackles at high volume\"],\n"
                  "})\n"
                  "questions.head(3)"),
    new_code_cell("%%hlchat --configs configs --inputs questions -n 2 --project support-bot --out runs\n"
                  "system: You are a support agent. Answer in two sentences.\n"
                  "user: My {{product}} {{issue}}. What should I try first?"),
    new_markdown_cell("One row per sample, in declared order: configs × inputs × samples."),
    new_code_cell("print(len(runs), \"rows;\", runs[\"call\"].nunique(), \"calls\")\n"
                  "runs[[\"call\", \"sample\", \"model\", \"temperature\", \"inputs.product\", \"output\", "
                  "\"finish_reason\"]].head(6)"),
    new_markdown_cell("## Side by side\n\nOne row per question, one column per config."),
    new_code_cell("hl_notebook.compare(runs)"),
    new_markdown_cell("## Per-config numbers"),
    new_code_cell("stats = hl_notebook.summary(runs)\nstats"),
    new_code_cell("hl_notebook.plot(runs)"),
    new_markdown_cell("## Ready for pandas\n\nThe frame is tidy, so the usual tools apply."),
    new_code_cell("runs.pivot_table(index=\"inputs.product\", columns=[\"model\", \"temperature\"], "
                  "values=\"generation_tokens\", aggfunc=\"mean\")"),
]

PANEL = [
    new_markdown_cell("# The chat panel\n\nThe same calls and sweeps as `%%hlchat`, with controls. Pick an "
                      "endpoint, edit the messages, click **Run**; **Add to comparison** collects configs for a "
                      "sweep. Results accumulate in the table and in `panel.result`."),
    new_code_cell("%load_ext hl_notebook\nimport hl_notebook"),
    new_code_cell("cities = [{\"city\": \"Lisbon\"}, {\"city\": \"Osaka\"}, {\"city\": \"Quito\"}]"),
    new_code_cell("panel = hl_notebook.panel()\npanel"),
    new_markdown_cell("Driving the panel from code does what the controls and the Run button do:"),
    new_code_cell("panel.set(messages=\"user: One fact about {{city}}.\", inputs=\"cities\").run()\n"
                  "panel.result[[\"model\", \"inputs.city\", \"output\"]]"),
]

if __name__ == "__main__":
    write("panel.ipynb", PANEL)
    write("quickstart.ipynb", QUICKSTART)
    write("compare_configs.ipynb", COMPARE)
