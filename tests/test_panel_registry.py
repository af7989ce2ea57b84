"""The panel's registry (configs, experiments, deployments) and provider list, against real servers, no widgets."""
from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI

from hl_notebook.client import HLClient
from hl_notebook.connection import Connection, connect
from hl_notebook.errors import HLUsageError
from hl_notebook.secrets import Secret
from hl_notebook.widget.registry import Registry, server_providers
from support import SERVED_PROVIDERS
from tests.fakes import serve


@pytest.fixture
def project(shell) -> str:
    return f"panel-reg-{uuid.uuid4().hex[:8]}"


def test_the_provider_list_comes_from_the_server(shell):
    assert server_providers(connect()) == SERVED_PROVIDERS


def test_the_provider_list_falls_back_on_a_server_without_server_info():
    with serve(FastAPI()) as url:  # answers 404 everywhere, as other v4 servers do for /server-info
        connection = Connection(HLClient(url + "/v4", Secret("k")), embedded=False)
        providers = server_providers(connection)
    assert "cohere" in providers and len(providers) == 9


def test_refresh_register_create_and_deploy_with_readable_labels(project):
    registry = Registry()
    assert "no configs yet" in registry.refresh(project) and registry.configs == []
    registry.register({"model": "m1", "provider": "mock", "temperature": 0.0})
    assert registry.register({"model": "m1", "provider": "mock", "temperature": 0.7}) == \
        f"registered config m1 · temperature 0.7 in {project}"
    assert registry.refresh(project) == f"2 configs, 0 experiments in {project}"
    labels = [text for text, _ in registry.config_options()]
    assert labels == ["m1 · temperature 0", "m1 · temperature 0.7"]
    ids = [ident for _, ident in registry.config_options()]
    assert registry.create_experiment(ids, "") == \
        f"created experiment m1 · temperature 0 vs m1 · temperature 0.7 in {project}"
    experiment_id = registry.created
    assert registry.experiment_options() == [
        ("m1 · temperature 0 vs m1 · temperature 0.7 (2 configs: m1 · temperature 0 / m1 · temperature 0.7)",
         experiment_id)]
    assert [text for text, _ in registry.deploy_options()] == [
        "config m1 · temperature 0", "config m1 · temperature 0.7",
        "experiment m1 · temperature 0 vs m1 · temperature 0.7"]
    text = registry.deploy(f"config:{ids[1]}", "")
    assert text == f"deployed config m1 · temperature 0.7 to the default environment of {project}"
    assert registry.deployment_lines() == ["production → config m1 · temperature 0.7"]
    registry.deploy(f"experiment:{experiment_id}", "staging")
    assert "staging → experiment m1 · temperature 0 vs m1 · temperature 0.7" in registry.deployment_lines()


def test_registry_mistakes_are_usage_errors(project):
    registry = Registry(project=project)
    with pytest.raises(HLUsageError, match="select one or more"):
        registry.create_experiment([], "x")
    with pytest.raises(HLUsageError, match="pick one"):
        registry.deploy("", "")
    with pytest.raises(HLUsageError, match="fill in Model"):
        registry.register({"temperature": 0.5})
