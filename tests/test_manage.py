"""Registering configs, creating experiments and deploying from a notebook (the documented API),
then using them through the magic, against the real server process."""
from __future__ import annotations

import pytest

import hl_notebook
from hl_notebook.errors import HLNotFoundError, HLUsageError


def test_register_list_experiment_deploy_then_chat_with_each_endpoint(shell):
    a = hl_notebook.register_config("m-a", temperature=0, max_tokens=5, project="manage-demo")
    b = hl_notebook.register_config("m-b", temperature=0, project="manage-demo", name="second")
    assert a.startswith("config_") and a != b
    assert hl_notebook.register_config("m-a", temperature=0, max_tokens=5, project="manage-demo") == a  # dedup
    configs = hl_notebook.list_configs("manage-demo")
    assert configs["config_id"].tolist() == [a, b]
    assert configs.loc[0, "model"] == "m-a" and configs.loc[0, "max_tokens"] == 5 and configs.loc[1, "name"] == "second"
    assert configs["provider"].tolist() == ["mock", "mock"]  # HLSettings.provider of the shell fixture

    shell.user_ns.update(a=a, b=b)
    frame = shell.run_cell_magic("hlchat", "--model-config-id {a},{b} --project manage-demo", "user: hi")
    assert frame["model"].tolist() == ["m-a", "m-b"] and frame["error"].isna().all()

    experiment = hl_notebook.create_experiment([a, b], name="a-vs-b", project="manage-demo")
    table = hl_notebook.list_experiments("manage-demo")
    assert table["experiment_id"].unique().tolist() == [experiment] and table["config_id"].tolist() == [a, b]
    shell.user_ns["exp"] = {"id": experiment}
    sampled = shell.run_cell_magic("hlchat", '--experiment-id {exp["id"]} -n 4', "user: which")
    assert set(sampled["model_config_id"]) <= {a, b} and len(sampled) == 4

    deployments = hl_notebook.deploy(config_id=b, project="manage-demo", environments=["staging"])
    assert "staging" in deployments["environment_name"].tolist()
    staged = shell.run_cell_magic("hlchat", "--deployed --project manage-demo --environment staging", "user: x")
    assert staged["model_config_id"].tolist() == [b]


def test_mistakes_are_one_line_errors(shell):
    with pytest.raises(HLUsageError, match="unknown config parameter 'temprature'"):
        hl_notebook.register_config("m", temprature=0)
    with pytest.raises(HLUsageError, match="out of range"):
        hl_notebook.register_config("m", temperature=3)
    with pytest.raises(HLNotFoundError, match="no project named 'never-made'"):
        hl_notebook.list_configs("never-made")
    with pytest.raises(HLUsageError, match="exactly one of config_id or experiment_id"):
        hl_notebook.deploy(project="manage-demo")
