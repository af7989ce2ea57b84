"""Experiments that learn from feedback: statistics per config and Thompson sampling (issue 13).

Why: v4 experiments favoured the configs whose logs got positive feedback. The statistical tests
run on an app with a fixed ``experiment_seed`` (a fresh app per test, so each is deterministic
however the tests are selected); restart and shared-database tests run real server processes.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from hl_notebook.server import ServerSettings, create_app
from hl_notebook.server.experiments import Arm, beta_cdf, beta_quantile, posterior_mean, spread, thompson
from support import ServerProcess
from tests.server.helpers import HELLO, logs, mock_config, ok, register, registered, unique

KEY = "test-key-experiments"
SEED = 20240613
GOOD, BAD = {"type": "rating", "value": "good"}, {"type": "rating", "value": "bad"}


class App:
    """A TestClient with the methods the shared helpers call on a server (``post``/``get``, ``/v4`` paths)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers = {"X-API-KEY": KEY}

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.client.post("/v4" + path, json=body, headers=self.headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get("/v4" + path, headers=self.headers, **kwargs)


@pytest.fixture
def app(tmp_path) -> Iterator[App]:
    settings = ServerSettings(api_key=KEY, db_path=str(tmp_path / "exp.sqlite"), experiment_seed=SEED)
    with TestClient(create_app(settings)) as client:
        yield App(client)


def new_experiment(server: Any, models: tuple[str, ...] = ("model-a", "model-b"),
                   labels: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A project with one mock config per model and an experiment over them (in that order)."""
    project = unique("learning")
    first = registered(server, project=project, **mock_config(models[0]))
    project_id = first["project_id"]
    config_ids = [first["config"]["id"]] + [register(server, project, **mock_config(m)) for m in models[1:]]
    body = {"name": unique("exp"), "positive_labels": labels or [GOOD], "config_ids": config_ids}
    experiment_id = ok(server.post(f"/projects/{project_id}/experiments", body))["id"]
    return {"project_id": project_id, "experiment_id": experiment_id, "config_ids": config_ids}


def sample(server: Any, experiment_id: str, n: int, path: str = "/chat-experiment",
           project_id: str | None = None) -> list[dict[str, Any]]:
    """``n`` samples (100 per call) from the experiment, directly or as the project's deployment."""
    data = []
    while len(data) < n:
        body = {"messages": HELLO, "num_samples": min(100, n - len(data))}
        body.update({"project_id": project_id} if path == "/chat-deployed" else {"experiment_id": experiment_id})
        data += ok(server.post(path, body))["data"]
    return data


def rate(server: Any, data: list[dict[str, Any]], value_of: dict[str, dict[str, str]]) -> None:
    """One feedback per sample: ``value_of[its config id]``."""
    items = [{**value_of[d["model_config_id"]], "data_id": d["id"]} for d in data if d["model_config_id"] in value_of]
    ok(server.post("/feedback", items))


def share(data: list[dict[str, Any]], config_id: str) -> float:
    return Counter(d["model_config_id"] for d in data)[config_id] / len(data)


def configs_of(server: Any, experiment_id: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in ok(server.get(f"/experiments/{experiment_id}"))["configs"]}


# -- sampling ------------------------------------------------------------------------------------
def test_without_feedback_two_configs_split_200_samples_evenly(app):
    exp = new_experiment(app)
    data = sample(app, exp["experiment_id"], 200)
    assert 0.3 <= share(data, exp["config_ids"][0]) <= 0.7
    assert {d["model_config_id"] for d in data} == set(exp["config_ids"])


def test_positive_feedback_on_a_and_negative_on_b_moves_the_samples_to_a(app):
    exp = new_experiment(app)
    a, b = exp["config_ids"]
    first = sample(app, exp["experiment_id"], 40)
    rate(app, first, {a: GOOD, b: BAD})
    assert 0.7 <= share(sample(app, exp["experiment_id"], 200), a)


def test_the_loser_is_still_explored_when_it_is_uncertain(app):
    """Thompson sampling, not a greedy pick: A slightly ahead on little evidence does not take every sample."""
    exp = new_experiment(app)
    a, b = exp["config_ids"]
    first = sample(app, exp["experiment_id"], 6)
    by_config = {c: [d for d in first if d["model_config_id"] == c] for c in (a, b)}
    assert all(by_config.values()), "the seed gave one config every sample; pick another seed"
    rate(app, by_config[a][:1], {a: GOOD})  # A: 1 success; B: no trials
    assert 0.05 <= share(sample(app, exp["experiment_id"], 200), b) <= 0.6


def test_an_experiment_deployed_to_chat_deployed_learns_the_same_way(app):
    exp = new_experiment(app)
    a, b = exp["config_ids"]
    ok(app.client.patch(f"/v4/projects/{exp['project_id']}/deploy-config", headers=app.headers,
                        json={"experiment_id": exp["experiment_id"]}))
    first = sample(app, exp["experiment_id"], 40, "/chat-deployed", exp["project_id"])
    stored = {log["id"]: log for log in logs(app, exp["project_id"])}
    assert {stored[d["id"]]["experiment_id"] for d in first} == {exp["experiment_id"]}
    rate(app, first, {a: BAD, b: GOOD})
    assert 0.7 <= share(sample(app, exp["experiment_id"], 200, "/chat-deployed", exp["project_id"]), b)
    assert configs_of(app, exp["experiment_id"])[b]["trials_count"] == sum(d["model_config_id"] == b for d in first)


def test_get_experiment_model_config_samples_by_the_same_rule(app):
    exp = new_experiment(app)
    a, b = exp["config_ids"]
    rate(app, sample(app, exp["experiment_id"], 40), {a: BAD, b: GOOD})
    drawn = [ok(app.get(f"/experiments/{exp['experiment_id']}/model-config")) for _ in range(20)]
    assert {d["experiment_id"] for d in drawn} == {exp["experiment_id"]}
    assert Counter(d["config"]["id"] for d in drawn)[b] >= 14


# -- statistics ----------------------------------------------------------------------------------
def closed_form_spread(successes: int, failures: int) -> float:
    """The 90 % central interval width of Beta(1+s, 1+f), from the binomial form of its CDF
    (integer parameters), independent of the server's continued fraction."""
    a, b = 1 + successes, 1 + failures
    n = a + b - 1

    def cdf(x: float) -> float:
        return sum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))

    def quantile(p: float) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):
            low, high = ((low + high) / 2, high) if cdf((low + high) / 2) < p else (low, (low + high) / 2)
        return low

    return quantile(0.95) - quantile(0.05)


def test_statistics_count_trials_successes_and_the_posterior(app):
    exp = new_experiment(app, labels=[GOOD, {"type": "action", "value": "copy"}])
    a, b = exp["config_ids"]
    data = sample(app, exp["experiment_id"], 60)
    of_a = [d for d in data if d["model_config_id"] == a]
    of_b = [d for d in data if d["model_config_id"] == b]
    assert len(of_a) >= 6 and len(of_b) >= 4
    items = [{**GOOD, "data_id": d["id"]} for d in of_a[:2]]  # 2 successes by rating
    items += [{**BAD, "data_id": of_a[2]["id"]}, {"type": "action", "value": "copy", "data_id": of_a[2]["id"]}]  # success by action
    items += [{**BAD, "data_id": of_a[3]["id"]}]  # failure
    items += [{"type": "action", "value": "share", "data_id": of_a[4]["id"]}]  # failure: a positive type, no match
    items += [{"type": "comment", "value": "nice", "data_id": of_a[5]["id"]}]  # not a trial: not a positive type
    items += [{**BAD, "data_id": d["id"]} for d in of_b[:2]]  # 2 failures
    ok(app.post("/feedback", items))
    # feedback on a log of config A made outside the experiment does not count for it
    outside = ok(app.post("/chat-model-config", {"model_config_id": a, "messages": HELLO}))["data"][0]
    ok(app.post("/feedback", {**GOOD, "data_id": outside["id"]}))

    configs = configs_of(app, exp["experiment_id"])
    assert [configs[a]["trials_count"], configs[b]["trials_count"]] == [5, 2]
    assert configs[a]["mean"] == pytest.approx(4 / 7) and configs[b]["mean"] == pytest.approx(1 / 4)
    assert configs[a]["spread"] == pytest.approx(closed_form_spread(3, 2), abs=1e-9)
    assert configs[b]["spread"] == pytest.approx(closed_form_spread(0, 2), abs=1e-9)
    assert all(c["active"] for c in configs.values())
    listed = ok(app.get(f"/projects/{exp['project_id']}/experiments"))
    assert {c["id"]: c for c in listed[0]["configs"]} == configs


def test_without_feedback_every_config_reports_the_uniform_prior(app):
    exp = new_experiment(app, models=("x", "y", "z"))
    sample(app, exp["experiment_id"], 10)
    for config in configs_of(app, exp["experiment_id"]).values():
        assert (config["trials_count"], config["mean"]) == (0, 0.5)
        assert config["spread"] == pytest.approx(0.9, abs=1e-9)


def test_replaced_and_unset_feedback_change_the_statistics(app):
    exp = new_experiment(app)
    a, _ = exp["config_ids"]
    log_id = next(d["id"] for d in sample(app, exp["experiment_id"], 20) if d["model_config_id"] == a)
    ok(app.post("/feedback", {**GOOD, "data_id": log_id}))
    assert (configs_of(app, exp["experiment_id"])[a]["trials_count"], configs_of(app, exp["experiment_id"])[a]["mean"]) \
        == (1, pytest.approx(2 / 3))
    ok(app.post("/feedback", {**BAD, "data_id": log_id}))  # a new rating replaces the old one
    assert configs_of(app, exp["experiment_id"])[a]["mean"] == pytest.approx(1 / 3)
    ok(app.post("/feedback", {"type": "rating", "unset": True, "data_id": log_id}))
    assert (configs_of(app, exp["experiment_id"])[a]["trials_count"], configs_of(app, exp["experiment_id"])[a]["mean"]) \
        == (0, 0.5)


# -- persistence: the statistics live in the database ---------------------------------------------
def test_feedback_and_statistics_survive_a_restart(tmp_path):
    db = tmp_path / "restart.sqlite"
    with ServerProcess(db, extra_args=["--experiment-seed", "5"]) as first:
        exp = new_experiment(first)
        a, b = exp["config_ids"]
        rate(first, sample(first, exp["experiment_id"], 30), {a: GOOD, b: BAD})
        before = ok(first.get(f"/experiments/{exp['experiment_id']}"))
        logs_before = logs(first, exp["project_id"])
    assert any(c["trials_count"] for c in before["configs"])
    with ServerProcess(db, extra_args=["--experiment-seed", "5"]) as second:
        assert ok(second.get(f"/experiments/{exp['experiment_id']}")) == before
        assert logs(second, exp["project_id"]) == logs_before
        assert all(log["feedback"] for log in logs_before)
        assert 0.7 <= share(sample(second, exp["experiment_id"], 100), a)


def test_processes_sharing_a_database_sample_from_the_same_statistics(tmp_path):
    """Feedback given through one server process steers sampling in another: nothing is cached per process."""
    db = tmp_path / "shared.sqlite"
    with ServerProcess(db) as one, ServerProcess(db) as two:
        exp = new_experiment(one)
        a, b = exp["config_ids"]
        reading = ok(two.get(f"/experiments/{exp['experiment_id']}"))  # the second process has read it before
        assert [c["trials_count"] for c in reading["configs"]] == [0, 0]
        rate(one, sample(one, exp["experiment_id"], 40), {a: BAD, b: GOOD})
        assert ok(two.get(f"/experiments/{exp['experiment_id']}")) == ok(one.get(f"/experiments/{exp['experiment_id']}"))
        assert 0.7 <= share(sample(two, exp["experiment_id"], 100), b)


# -- the statistics themselves (experiments.py) ----------------------------------------------------
@pytest.mark.parametrize("a, b", [(1, 1), (2, 1), (1, 5), (4, 3), (30, 12), (200, 800)])
def test_beta_cdf_matches_the_binomial_closed_form(a, b):
    n = a + b - 1
    for x in (0.01, 0.2, 0.5, 0.77, 0.99):
        expected = sum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))
        assert beta_cdf(x, a, b) == pytest.approx(expected, abs=1e-10)
    for p in (0.05, 0.5, 0.95):
        assert beta_cdf(beta_quantile(p, a, b), a, b) == pytest.approx(p, abs=1e-9)


def test_posterior_summaries():
    assert posterior_mean(Arm("c")) == 0.5 and spread(Arm("c")) == pytest.approx(0.9)
    assert spread(Arm("c", 1, 0)) == pytest.approx(math.sqrt(0.95) - math.sqrt(0.05))  # Beta(2, 1): CDF x**2
    assert spread(Arm("c", 500, 500)) < spread(Arm("c", 5, 5)) < spread(Arm("c"))


def test_thompson_draws_each_sample_independently():
    rng = random.Random(3)
    assert thompson([Arm("only")], 5, rng) == ["only"] * 5
    even = Counter(thompson([Arm("a"), Arm("b"), Arm("c")], 3000, rng))
    assert all(900 <= even[name] <= 1100 for name in "abc")
    skewed = Counter(thompson([Arm("a", 40, 10), Arm("b", 10, 40)], 1000, rng))
    assert skewed["a"] > 990
    with pytest.raises(ValueError):
        thompson([], 1, rng)
