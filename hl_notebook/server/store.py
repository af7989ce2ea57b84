"""Storage for projects, model configs, experiments, deployments, sessions, logs and the state
several server workers share (rate budgets, counters, running calls).

Why: the local server must survive restarts and serve a team, so state lives in a database — a
SQLite file for one person, PostgreSQL for a team server (``database.py``) — behind a few
intention-named methods whose SQL is written once for both. A chat call writes everything it creates
in one transaction, so a failed call leaves nothing half-done; names and ids that must be unique are
unique keys, so racing workers agree (``ON CONFLICT``), never check-then-insert.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .database import Database, DatabaseError, Tx, UniqueViolation, open_database
from .experiments import Arm, thompson
from .ids import new_id, stable_id

DEFAULT_ENVIRONMENT = "production"
# feedback types that hold several values per log (the v4 SDK: only rating, correction and comment
# may be unset without a value); every other type, custom ones included, holds one value per log
MULTI_VALUED_FEEDBACK = frozenset({"action", "issue"})

SCHEMA_VERSION = 4  # the last migration below; a database with a higher number is refused

# Migrations, in order; each is idempotent (CREATE ... IF NOT EXISTS, a column added only when
# missing), so a database made before the version table existed (version 0) runs them all.
# Types: {serial} and {real} are filled in per engine (database.py).
BASE_TABLES = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), name TEXT NOT NULL,
    description TEXT, params TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), name TEXT NOT NULL,
    positive_labels TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS experiment_configs (
    experiment_id TEXT NOT NULL REFERENCES experiments(id), config_id TEXT NOT NULL REFERENCES configs(id),
    active INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (experiment_id, config_id));
CREATE TABLE IF NOT EXISTS environments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, is_default INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS deployments (
    project_id TEXT NOT NULL REFERENCES projects(id), environment_id TEXT NOT NULL REFERENCES environments(id),
    config_id TEXT, experiment_id TEXT, PRIMARY KEY (project_id, environment_id));
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, reference_id TEXT UNIQUE, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    seq {serial}, id TEXT NOT NULL UNIQUE, project_id TEXT NOT NULL,
    config_id TEXT NOT NULL, session_id TEXT, parent_id TEXT, sample_index INTEGER NOT NULL,
    endpoint TEXT NOT NULL, created_at {real} NOT NULL, inputs TEXT, messages TEXT, output TEXT,
    finish_reason TEXT, error TEXT, metadata TEXT, source TEXT, usage TEXT, saved INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_project ON logs (project_id, seq);
"""
# logs.inputs/messages hold the JSON of rows written before payloads existed; newer rows point at a
# payload (stored once however many samples, or calls, share it) through inputs_ref/messages_ref.
# logs.experiment_id: the experiment a log's config was sampled for (its feedback teaches that one).
# experiment_configs.position: the order configs were added in (SQLite's rowid has no PostgreSQL twin).
MIGRATIONS: list[tuple[str, list[Any]]] = [
    ("base tables", [BASE_TABLES]),
    ("payloads, feedback and idempotency", [
        ("logs", "inputs_ref", "ALTER TABLE logs ADD COLUMN inputs_ref TEXT"),
        ("logs", "messages_ref", "ALTER TABLE logs ADD COLUMN messages_ref TEXT"),
        ("logs", "experiment_id", "ALTER TABLE logs ADD COLUMN experiment_id TEXT"),
        """
CREATE TABLE IF NOT EXISTS feedback (
    seq {serial}, id TEXT NOT NULL UNIQUE, log_id TEXT NOT NULL REFERENCES logs(id),
    experiment_id TEXT, type TEXT NOT NULL, value TEXT NOT NULL, "user" TEXT, created_at {real} NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_by_log ON feedback (log_id, type);
CREATE INDEX IF NOT EXISTS feedback_by_experiment ON feedback (experiment_id, type);
CREATE TABLE IF NOT EXISTS payloads (
    id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, response TEXT NOT NULL, created_at {real} NOT NULL);
"""]),
    ("ordered experiment configs", [
        ("experiment_configs", "position", "ALTER TABLE experiment_configs ADD COLUMN position INTEGER"),
        ("sqlite", "UPDATE experiment_configs SET position = rowid WHERE position IS NULL")]),
    ("state shared by workers", ["""
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket TEXT PRIMARY KEY, tat {real} NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS running_calls (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, started_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS worker_stats (
    worker TEXT PRIMARY KEY, stats TEXT NOT NULL, updated_at {real} NOT NULL);
"""]),
]
assert len(MIGRATIONS) == SCHEMA_VERSION

LOG_COLUMNS = ("logs.seq, logs.id, logs.project_id, logs.config_id, logs.session_id, logs.parent_id, "
               "logs.sample_index, logs.endpoint, logs.created_at, logs.output, logs.finish_reason, logs.error, "
               "logs.metadata, logs.source, logs.usage, logs.saved, logs.experiment_id, "
               "COALESCE(inputs_payload.body, logs.inputs) AS inputs, "
               "COALESCE(messages_payload.body, logs.messages) AS messages")
LOG_JOINS = ("LEFT JOIN payloads AS inputs_payload ON inputs_payload.id = logs.inputs_ref "
             "LEFT JOIN payloads AS messages_payload ON messages_payload.id = logs.messages_ref")


def project_id_for(name: str) -> str:
    """Projects created by name get an id derived from it, so racing creators agree."""
    return stable_id("pr", "project:" + name)


def feedback_id(log_id: str, type: str, value: str | None) -> str:
    """A feedback's id: one per (log, type), or per (log, type, value) for multi-valued types, so
    setting a value again (or replacing a rating) keeps the id."""
    key = f"{log_id}\n{type}" + (f"\n{value}" if type in MULTI_VALUED_FEEDBACK else "")
    return stable_id("fbk", key)


class NotFound(Exception):
    """An id or name the store does not know; the routes answer 404 with ``str(exc)``."""


class AlreadyExists(Exception):
    """A name that must be new is taken; the routes answer 422 with ``str(exc)`` at the name."""


def config_key(params: dict[str, Any]) -> str:
    """Configs are immutable and identified by their parameters (name/description excluded)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FeedbackChange:
    """One item of ``POST /feedback``: set ``value`` of ``type`` on a log, or unset it."""

    log_id: str
    type: str
    value: str | None = None
    user: str | None = None
    created_at: float | None = None
    unset: bool = False


@dataclass
class PendingLog:
    """A log row to write when the chat call ends (spec §9: one log per sample)."""

    id: str
    sample_index: int
    config_id: str
    output: str | None
    finish_reason: str | None
    error: dict[str, Any] | None
    messages: list[dict[str, Any]] | None = None  # this sample's rendered messages (configs may differ)


class Store:
    """All persistent state, on a SQLite file or a PostgreSQL database (``database.open_database``).

    Thread-safe: SQLite gives each thread its own connection, PostgreSQL a pooled one per statement
    or transaction.
    """

    def __init__(self, path: str | Path, experiment_seed: int | None = None, *, pool_size: int = 16) -> None:
        """``path``: a SQLite file, ``:memory:``, or a ``postgresql://`` URL. ``experiment_seed`` makes
        experiment sampling reproducible: the k-th draw since the counters were reset (server start)
        is seeded by (seed, k), whichever worker makes it."""
        self.db: Database = open_database(path, pool_size)
        self.path = self.db.url
        self.experiment_seed = experiment_seed
        self.experiment_rng = random.Random()
        # projects and configs are never renamed, changed or deleted: what was read once is kept
        # (a read per chat call was the largest cost on PostgreSQL after the writes)
        self._project_ids: dict[str, str] = {}  # name -> id
        self._projects: dict[str, dict[str, Any]] = {}  # id -> row
        self._configs: dict[str, dict[str, Any]] = {}  # id -> row, params as JSON text
        self._stored_configs: set[str] = set()  # ids of configs this process saw committed
        self._migrate()
        with self.write() as db:
            if not db.one("SELECT 1 AS found FROM environments WHERE is_default = 1"):
                db.run("INSERT INTO environments VALUES (?, ?, 1) ON CONFLICT DO NOTHING",
                       (new_id("env"), DEFAULT_ENVIRONMENT))

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``, one process at a time (see ``MIGRATIONS``).

        Raises:
            DatabaseError: the database was made by a newer hl_notebook.
        """
        with self.db.writing() as db:
            self.db.migration_lock(db)
            db.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = db.value("SELECT MAX(version) FROM schema_version") or 0
            if version > SCHEMA_VERSION:
                raise DatabaseError(f"the database at {self.db.url.split('@')[-1]} has schema version {version}, made "
                                    f"by a newer hl_notebook (this one knows {SCHEMA_VERSION}); upgrade hl_notebook")
            for number, (_, steps) in enumerate(MIGRATIONS[version:], start=version + 1):
                for step in steps:
                    self._migration_step(db, step)
                db.run("DELETE FROM schema_version")
                db.run("INSERT INTO schema_version VALUES (?)", (number,))

    def _migration_step(self, db: Tx, step: Any) -> None:
        if isinstance(step, str):
            for statement in filter(str.strip, self.db.ddl(step).split(";")):
                db.run(statement)
        elif len(step) == 3:  # (table, column, ALTER TABLE ... ADD COLUMN ...): only where missing
            table, column, statement = step
            if column not in self.db.columns(db, table):
                db.run(statement)
        elif step[0] == self.db.dialect:  # (engine, statement): that engine only
            db.run(step[1])

    def schema_version(self) -> int:
        with self.db.reading() as db:
            return db.value("SELECT MAX(version) FROM schema_version")

    def close(self) -> None:
        self.db.close()

    # -- connections -------------------------------------------------------------------------
    def write(self) -> Any:
        """One transaction (a context manager yielding a ``database.Tx``)."""
        return self.db.writing()

    def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        with self.db.reading() as db:
            return db.one(sql, params)

    def _all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self.db.reading() as db:
            return db.all(sql, params)

    def _value(self, sql: str, params: Any = ()) -> Any:
        with self.db.reading() as db:
            return db.value(sql, params)

    # -- projects ----------------------------------------------------------------------------
    def project_by_id(self, project_id: str) -> dict[str, Any]:
        row = self._projects.get(project_id)
        if row is None:
            row = self._one("SELECT * FROM projects WHERE id = ?", (project_id,))
            if row is None:
                raise NotFound(f"project {project_id} not found")
            self._projects[project_id] = row
        return dict(row)

    def project_by_name(self, name: str) -> dict[str, Any] | None:
        known = self._project_ids.get(name)
        if known is not None:
            return self.project_by_id(known)
        row = self._one("SELECT * FROM projects WHERE name = ?", (name,))
        if row is not None:
            self._project_ids[name], self._projects[row["id"]] = row["id"], row
        return dict(row) if row else None

    def ensure_project(self, db: Tx, name: str) -> str:
        """The id of the project called ``name``, created on first use (spec §9)."""
        db.run("INSERT INTO projects VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (project_id_for(name), name, time.time()))
        return db.value("SELECT id FROM projects WHERE name = ?", (name,))

    def create_project(self, name: str) -> str:
        """``POST /projects``: the new project's id.

        Raises:
            AlreadyExists: a project has that name. The name is a unique key and the insert
                reports whether it inserted, so of simultaneous creators (any worker) exactly one succeeds.
        """
        project_id = project_id_for(name)
        try:
            with self.write() as db:
                created = db.run("INSERT INTO projects VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                 (project_id, name, time.time()))
        except UniqueViolation:  # the id of another name (never expected: ids derive from names)
            created = 0
        if not created:
            raise AlreadyExists(f"a project named {name!r} already exists")
        return project_id

    def list_projects(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM projects ORDER BY created_at, id")

    # -- configs -----------------------------------------------------------------------------
    def config_id_for(self, project_id: str, params: dict[str, Any]) -> str:
        """The id a config with these parameters has (or will have) in this project."""
        return stable_id("config", project_id + "\n" + config_key(params))

    def config_stored(self, config_id: str) -> bool:
        """Whether the config is known to be in the store (configs are never deleted), so that a
        chat call with it need not register it again (``ensure_config``)."""
        return config_id in self._stored_configs or config_id in self._configs

    def note_config_stored(self, config_id: str) -> None:
        """Call after the transaction that ran ``ensure_config`` for it has committed."""
        self._stored_configs.add(config_id)

    def ensure_config(self, db: Tx, project_id: str, params: dict[str, Any],
                      name: str | None = None, description: str | None = None) -> str:
        """Register (or find) a config; the project's first config is deployed to the default env."""
        config_id = self.config_id_for(project_id, params)
        inserted = db.run(
            "INSERT INTO configs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (config_id, project_id, name or f"{params.get('model', 'config')}-{config_id[-6:]}",
             description, config_key(params), time.time()))
        if inserted and not db.one("SELECT 1 AS found FROM deployments WHERE project_id = ?", (project_id,)):
            env_id = db.value("SELECT id FROM environments WHERE is_default = 1")
            # two first configs registered at once (two workers): the first committed stays deployed
            db.run("INSERT INTO deployments VALUES (?, ?, ?, NULL) ON CONFLICT DO NOTHING",
                   (project_id, env_id, config_id))
        return config_id

    def register_config(self, params: dict[str, Any], *, project_id: str | None = None,
                        project_name: str | None = None, name: str | None = None,
                        description: str | None = None) -> str:
        """``POST /model-configs``: the config's id in the project given by id, or by name (created on
        first use, spec §9), registered in one transaction."""
        with self.write() as db:
            if project_id is None:
                project_id = self.ensure_project(db, project_name or "")
            return self.ensure_config(db, project_id, params, name, description)

    def config(self, config_id: str) -> dict[str, Any]:
        found = self._configs.get(config_id)
        if found is None:
            found = self._one("SELECT * FROM configs WHERE id = ?", (config_id,))
            if found is None:
                raise NotFound(f"model config {config_id} not found")
            self._configs[config_id] = found
        return {**found, "params": json.loads(found["params"])}  # a fresh copy: callers may change it

    def project_configs(self, project_id: str) -> list[dict[str, Any]]:
        self.project_by_id(project_id)
        rows = self._all("SELECT id FROM configs WHERE project_id = ? ORDER BY created_at, id", (project_id,))
        return [self.config(r["id"]) for r in rows]

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(self, project_id: str, name: str, positive_labels: list[Any],
                          config_ids: list[str], set_active: bool) -> str:
        self.project_by_id(project_id)
        for config_id in config_ids:
            if self.config(config_id)["project_id"] != project_id:
                raise NotFound(f"model config {config_id} not found in project {project_id}")
        experiment_id = new_id("exp")
        with self.write() as db:
            db.run("INSERT INTO experiments VALUES (?, ?, ?, ?, ?)",
                   (experiment_id, project_id, name, json.dumps(positive_labels), time.time()))
            db.many("INSERT INTO experiment_configs (experiment_id, config_id, active, position) VALUES (?, ?, 1, ?)"
                    " ON CONFLICT DO NOTHING",
                    [(experiment_id, c, position) for position, c in enumerate(dict.fromkeys(config_ids), start=1)])
            if set_active:
                env_id = db.value("SELECT id FROM environments WHERE is_default = 1")
                self._deploy(db, project_id, [env_id], None, experiment_id)
        return experiment_id

    def add_experiment_config(self, experiment_id: str, config_id: str) -> None:
        """Make ``config_id`` one of the experiment's active configs (a no-op when it already is)."""
        with self.write() as db:
            db.run("INSERT INTO experiment_configs (experiment_id, config_id, active, position)"
                   " SELECT ?, ?, 1, COALESCE(MAX(position), 0) + 1 FROM experiment_configs WHERE experiment_id = ?"
                   " ON CONFLICT DO NOTHING", (experiment_id, config_id, experiment_id))

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        with self.db.reading() as db:
            found = db.one("SELECT * FROM experiments WHERE id = ?", (experiment_id,))
            if found is None:
                raise NotFound(f"experiment {experiment_id} not found")
            configs = db.all("SELECT config_id, active FROM experiment_configs WHERE experiment_id = ?"
                             " ORDER BY position, config_id", (experiment_id,))
        found["positive_labels"] = json.loads(found["positive_labels"])
        found["configs"] = [(r["config_id"], bool(r["active"])) for r in configs]
        found["config_ids"] = [config_id for config_id, active in found["configs"] if active]
        return found

    def project_experiments(self, project_id: str) -> list[dict[str, Any]]:
        self.project_by_id(project_id)
        rows = self._all("SELECT id FROM experiments WHERE project_id = ? ORDER BY created_at, id", (project_id,))
        return [self.experiment(r["id"]) for r in rows]

    def experiment_arms(self, experiment: dict[str, Any]) -> dict[str, Arm]:
        """Feedback counts per config of ``experiment`` (every config, active or not), read from the
        database on each call (``experiments.py`` defines trials and successes)."""
        arms = {config_id: Arm(config_id) for config_id, _ in experiment["configs"]}
        labels = [(label["type"], label["value"]) for label in experiment["positive_labels"]]
        types = sorted({kind for kind, _ in labels})
        if not types:
            return arms
        matches = " OR ".join("(f.type = ? AND f.value = ?)" for _ in labels)
        rows = self._all(
            "SELECT config_id, COUNT(*) AS trials, SUM(success) AS successes FROM ("
            f" SELECT l.config_id AS config_id, MAX(CASE WHEN {matches} THEN 1 ELSE 0 END) AS success FROM feedback f"
            " JOIN logs l ON l.id = f.log_id"
            f" WHERE f.experiment_id = ? AND f.type IN ({', '.join('?' * len(types))}) GROUP BY f.log_id, l.config_id"
            ") AS per_log GROUP BY config_id",
            [*(part for label in labels for part in label), experiment["id"], *types])
        for row in rows:
            if row["config_id"] in arms:
                trials, successes = int(row["trials"]), int(row["successes"])
                arms[row["config_id"]] = Arm(row["config_id"], successes, trials - successes)
        return arms

    def sample_experiment_configs(self, experiment_id: str, n: int, rng: random.Random | None = None) -> list[str]:
        """``n`` configs for ``n`` samples, each drawn independently by Thompson sampling over the
        experiment's active configs (``experiments.thompson``; uniform while there is no feedback)."""
        experiment = self.experiment(experiment_id)
        if not experiment["config_ids"]:
            raise NotFound(f"experiment {experiment_id} has no active model configs")
        arms = self.experiment_arms(experiment)
        if rng is None:
            rng = self.experiment_rng if self.experiment_seed is None else \
                random.Random(f"{self.experiment_seed}:{self.next_count('experiment-draws')}")
        return thompson([arms[c] for c in experiment["config_ids"]], n, rng)

    def sample_experiment_config(self, experiment_id: str, rng: random.Random | None = None) -> str:
        return self.sample_experiment_configs(experiment_id, 1, rng)[0]

    # -- environments and deployments --------------------------------------------------------
    def default_environment(self) -> dict[str, Any]:
        return self._one("SELECT * FROM environments WHERE is_default = 1")  # type: ignore[return-value]

    def environment(self, *, name: str | None = None, env_id: str | None = None) -> dict[str, Any]:
        if env_id:
            row = self._one("SELECT * FROM environments WHERE id = ?", (env_id,))
        else:
            row = self._one("SELECT * FROM environments WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"environment {env_id or name} not found")
        return row

    def ensure_environment(self, name: str) -> dict[str, Any]:
        with self.write() as db:
            db.run("INSERT INTO environments VALUES (?, ?, 0) ON CONFLICT DO NOTHING", (new_id("env"), name))
        return self.environment(name=name)

    @staticmethod
    def _deploy(db: Tx, project_id: str, env_ids: list[str], config_id: str | None,
                experiment_id: str | None) -> None:
        db.many("INSERT INTO deployments VALUES (?, ?, ?, ?) ON CONFLICT (project_id, environment_id)"
                " DO UPDATE SET config_id = excluded.config_id, experiment_id = excluded.experiment_id",
                [(project_id, e, config_id, experiment_id) for e in env_ids])

    def deploy(self, project_id: str, env_ids: list[str], config_id: str | None,
               experiment_id: str | None) -> None:
        """Deploy one config or one experiment (never both) to the given environments."""
        self.project_by_id(project_id)
        owner = self.config(config_id) if config_id else self.experiment(experiment_id or "")
        if owner["project_id"] != project_id:
            raise NotFound(f"{config_id or experiment_id} not found in project {project_id}")
        with self.write() as db:
            self._deploy(db, project_id, env_ids, config_id, experiment_id)

    def deployments(self, project_id: str) -> list[dict[str, Any]]:
        self.project_by_id(project_id)
        return self._all(
            "SELECT d.*, e.name AS environment_name, e.is_default FROM deployments d "
            "JOIN environments e ON e.id = d.environment_id WHERE d.project_id = ? ORDER BY e.name",
            (project_id,))

    def deployment(self, project_id: str, environment: str | None) -> dict[str, Any]:
        env = self.environment(name=environment) if environment else self.default_environment()
        row = self._one("SELECT * FROM deployments WHERE project_id = ? AND environment_id = ?",
                        (project_id, env["id"]))
        if row is None:
            raise NotFound(f"project {project_id} has no deployment in environment {env['name']}")
        return {**row, "environment_name": env["name"]}

    # -- sessions ----------------------------------------------------------------------------
    @staticmethod
    def session_id_for(reference_id: str) -> str:
        """Sessions named by reference get an id derived from it: known before anything is stored."""
        return stable_id("sesh", "ref:" + reference_id)

    def session_for_reference(self, db: Tx, reference_id: str) -> str:
        db.run("INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               (self.session_id_for(reference_id), reference_id, time.time()))
        return db.value("SELECT id FROM sessions WHERE reference_id = ?", (reference_id,))

    # -- logs --------------------------------------------------------------------------------
    def write_logs(self, db: Tx, *, project_id: str, endpoint: str, logs: list[PendingLog],
                   inputs: dict[str, Any], messages: list[dict[str, Any]], metadata: Any, source: str | None,
                   usage: dict[str, int] | None, session_id: str | None, parent_id: str | None,
                   save: bool, experiment_id: str | None = None) -> None:
        """Store one log per sample. With ``save=False`` inputs, messages and outputs are dropped.
        ``experiment_id``: the experiment the samples' configs were drawn from (their feedback counts there).

        ``messages`` is the default for logs whose ``PendingLog.messages`` is None. Inputs and each
        distinct messages list are stored once, as payloads the logs point at: 100 samples of 1 MB
        of messages are 1 MB in the file, not 100. Payloads are inserted in id order, so two calls
        sharing payloads (on two workers) never wait for each other's in opposite orders.
        """
        now = time.time()
        payloads: dict[str, str] = {}  # id -> JSON text

        def payload(value: Any) -> str:
            text = json.dumps(value)
            payload_id = hashlib.sha256(text.encode()).hexdigest()
            payloads[payload_id] = text
            return payload_id

        inputs_ref = payload(inputs) if save else None
        refs: dict[int, str] = {}  # id() of a messages list -> its payload (samples of one config share one list)

        def messages_ref(log: PendingLog) -> str | None:
            chosen = messages if log.messages is None else log.messages
            if id(chosen) not in refs:
                refs[id(chosen)] = payload(chosen)
            return refs[id(chosen)]

        rows = [(log.id, project_id, log.config_id, session_id, parent_id, log.sample_index, endpoint, now,
                 inputs_ref, messages_ref(log) if save else None, log.output if save else None, log.finish_reason,
                 json.dumps(log.error) if log.error else None, json.dumps(metadata),
                 source, json.dumps(usage) if usage else None, int(save), experiment_id)
                for log in logs]
        db.many("INSERT INTO payloads VALUES (?, ?) ON CONFLICT DO NOTHING", sorted(payloads.items()))
        db.many(
            "INSERT INTO logs (id, project_id, config_id, session_id, parent_id, sample_index, endpoint,"
            " created_at, inputs_ref, messages_ref, output, finish_reason, error, metadata, source, usage, saved,"
            " experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # -- idempotency keys --------------------------------------------------------------------
    def completed_call(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """(request hash, response body) of the completed call stored under ``key``, if any."""
        found = self.completed_call_text(key)
        return (found[0], json.loads(found[1])) if found else None

    def completed_call_text(self, key: str) -> tuple[str, str] | None:
        """(request hash, response body as its stored JSON text) of the call completed under ``key``."""
        row = self._one("SELECT request_hash, response FROM idempotency WHERE key = ?", (key,))
        return (row["request_hash"], row["response"]) if row else None

    @staticmethod
    def remember_call(db: Tx, key: str, request_hash: str, response: dict[str, Any] | str) -> None:
        """Store a completed call's response (a body, or its JSON text) under its key, in the
        transaction of its logs. A key stored first by another request (another worker) keeps its response."""
        text = response if isinstance(response, str) else json.dumps(response)
        db.run("INSERT INTO idempotency VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
               (key, request_hash, text, time.time()))

    def claim_call(self, key: str, owner: str, stale: Any) -> bool:
        """Mark the call under ``key`` as running in ``owner`` (a worker); False while another owner
        runs it. ``stale(owner, started_at)`` says whether a claim's owner is gone (a killed worker),
        in which case the claim is taken over."""
        with self.write() as db:
            if db.run("INSERT INTO running_calls VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (key, owner, time.time())):
                return True
            row = db.one("SELECT owner, started_at FROM running_calls WHERE key = ?", (key,))
            if row is None or stale(row["owner"], row["started_at"]):
                db.run("DELETE FROM running_calls WHERE key = ?", (key,))
                db.run("INSERT INTO running_calls VALUES (?, ?, ?)", (key, owner, time.time()))
                return True
            return False

    def release_call(self, key: str, owner: str) -> None:
        with self.write() as db:
            db.run("DELETE FROM running_calls WHERE key = ? AND owner = ?", (key, owner))

    # -- state shared by workers ---------------------------------------------------------------
    def advance_bucket(self, bucket: str, not_before: float, cost: float) -> float:
        """Take the next slot on a shared timeline: slot = max(bucket's time, ``not_before``), and the
        bucket's time becomes slot + ``cost`` (seconds; may be negative to give time back). Returns the
        slot. One atomic statement, so every worker and thread sharing the database sees one timeline.
        """
        with self.write() as db:
            tat = db.value(
                "INSERT INTO rate_buckets (bucket, tat) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE"
                " SET tat = (CASE WHEN rate_buckets.tat > ? THEN rate_buckets.tat ELSE ? END) + ? RETURNING tat",
                (bucket, not_before + cost, not_before, not_before, cost))
        return tat - cost

    def buckets(self) -> dict[str, float]:
        """Every rate bucket's time (the end of its last reserved slot)."""
        return {r["bucket"]: r["tat"] for r in self._all("SELECT bucket, tat FROM rate_buckets ORDER BY bucket")}

    def next_count(self, name: str) -> int:
        """1, 2, 3, … per ``name`` across every worker since ``reset_counters`` (fault and experiment draws)."""
        with self.write() as db:
            return int(db.value("INSERT INTO counters VALUES (?, 1) ON CONFLICT (name) DO UPDATE"
                                " SET value = counters.value + 1 RETURNING value", (name,)))

    def count(self, name: str) -> int:
        """The current value of counter ``name`` (0 before its first ``next_count``)."""
        return int(self._value("SELECT value FROM counters WHERE name = ?", (name,)) or 0)

    def reset_counters(self) -> None:
        """Start the draw sequences again (at server start: a seeded run repeats; claims of the last run end)."""
        with self.write() as db:
            db.run("DELETE FROM counters")
            db.run("DELETE FROM running_calls")
            db.run("DELETE FROM worker_stats")

    def publish_worker_stats(self, worker: str, stats: dict[str, Any]) -> None:
        with self.write() as db:
            db.run("INSERT INTO worker_stats VALUES (?, ?, ?) ON CONFLICT (worker) DO UPDATE"
                   " SET stats = excluded.stats, updated_at = excluded.updated_at",
                   (worker, json.dumps(stats), time.time()))

    def worker_stats(self, since: float) -> dict[str, dict[str, Any]]:
        """Worker -> its last published stats, for workers that published after ``since``."""
        return {r["worker"]: json.loads(r["stats"]) for r in self._all(
            "SELECT worker, stats FROM worker_stats WHERE updated_at >= ? ORDER BY worker", (since,))}

    def clear_worker_stats(self) -> None:
        with self.write() as db:
            db.run("DELETE FROM worker_stats")

    # -- reading logs ------------------------------------------------------------------------
    def count_logs(self, *, project_id: str | None = None, config_id: str | None = None) -> int:
        """How many logs a project (or a config) has."""
        column, value = ("project_id", project_id) if project_id is not None else ("config_id", config_id)
        return int(self._value(f"SELECT COUNT(*) FROM logs WHERE {column} = ?", (value,)))

    def logs(self, project_id: str, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        self.project_by_id(project_id)
        with self.db.reading() as db:
            total = int(db.value("SELECT COUNT(*) FROM logs WHERE project_id = ?", (project_id,)))
            rows = db.all(f"SELECT {LOG_COLUMNS} FROM logs {LOG_JOINS} WHERE logs.project_id = ? "
                          "ORDER BY logs.seq LIMIT ? OFFSET ?", (project_id, size, page * size))
        return self._with_feedback(rows), total

    def log(self, log_id: str) -> dict[str, Any]:
        row = self._one(f"SELECT {LOG_COLUMNS} FROM logs {LOG_JOINS} WHERE logs.id = ?", (log_id,))
        if row is None:
            raise NotFound(f"log {log_id} not found")
        return self._with_feedback([row])[0]

    def _with_feedback(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The log rows, each with ``feedback``: its feedback rows, oldest first."""
        found: dict[str, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
        with self.db.reading() as db:
            for chunk in _chunks(list(found)):
                for item in db.all(f"SELECT * FROM feedback WHERE log_id IN ({', '.join('?' * len(chunk))})"
                                   " ORDER BY seq", chunk):
                    found[item["log_id"]].append(item)
        return [{**row, "feedback": found[row["id"]]} for row in rows]

    # -- feedback (POST /feedback) -------------------------------------------------------------
    def submit_feedback(self, changes: list[FeedbackChange]) -> list[dict[str, Any]]:
        """Apply every change in one transaction, all or nothing; returns one feedback row per change.

        A value replaces the log's value of that type (of that value, for ``MULTI_VALUED_FEEDBACK``);
        ``unset`` removes it and returns what was removed (the change itself, with value ``""``
        when none is given, if nothing was set). Each feedback row keeps the experiment its log was
        sampled for.

        Raises:
            NotFound: the first change (in order) whose log does not exist; nothing is stored.
        """
        now = time.time()
        with self.write() as db:
            experiments = self._log_experiments(db, [change.log_id for change in changes])
            return [self._apply(db, change, experiments[change.log_id], now) for change in changes]

    @staticmethod
    def _log_experiments(db: Tx, log_ids: list[str]) -> dict[str, str | None]:
        """Log id -> the experiment it was sampled for (None: none).

        Raises:
            NotFound: naming the first of ``log_ids`` that no log has.
        """
        known: dict[str, str | None] = {}
        for chunk in _chunks(list(dict.fromkeys(log_ids))):
            known.update((r["id"], r["experiment_id"]) for r in db.all(
                f"SELECT id, experiment_id FROM logs WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
        for log_id in log_ids:
            if log_id not in known:
                raise NotFound(f"log {log_id} not found")
        return known

    @staticmethod
    def _apply(db: Tx, change: FeedbackChange, experiment_id: str | None, now: float) -> dict[str, Any]:
        ident = feedback_id(change.log_id, change.type, change.value)
        row = {"id": ident, "log_id": change.log_id, "experiment_id": experiment_id, "type": change.type,
               "value": change.value or "", "user": change.user,
               "created_at": change.created_at if change.created_at is not None else now}
        if change.unset:
            removed = db.one("SELECT * FROM feedback WHERE id = ?", (ident,))
            db.run("DELETE FROM feedback WHERE id = ?", (ident,))
            return removed or row
        db.run("DELETE FROM feedback WHERE id = ?", (ident,))  # a replaced value is the newest (last in order)
        db.run('INSERT INTO feedback (id, log_id, experiment_id, type, value, "user", created_at)'
               " VALUES (?, ?, ?, ?, ?, ?, ?)", (row["id"], row["log_id"], row["experiment_id"], row["type"],
                                                 row["value"], row["user"], row["created_at"]))
        return row


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """``items`` in chunks small enough for SQLite's limit on ``?`` parameters."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
