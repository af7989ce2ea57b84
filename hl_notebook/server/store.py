"""SQLite storage for projects, model configs, experiments, deployments, sessions and logs.

Why: the local server must survive restarts and serve a small team, so state lives in one SQLite
file (WAL mode, a connection per thread, busy timeout) behind a few intention-named methods. A chat
call writes everything it creates in one transaction, so a failed call leaves nothing half-done.
"""
from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .experiments import Arm, thompson
from .ids import new_id, stable_id

DEFAULT_ENVIRONMENT = "production"
# feedback types that hold several values per log (the v4 SDK: only rating, correction and comment
# may be unset without a value); every other type, custom ones included, holds one value per log
MULTI_VALUED_FEEDBACK = frozenset({"action", "issue"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), name TEXT NOT NULL,
    description TEXT, params TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), name TEXT NOT NULL,
    positive_labels TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS experiment_configs (
    experiment_id TEXT NOT NULL REFERENCES experiments(id), config_id TEXT NOT NULL REFERENCES configs(id),
    active INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (experiment_id, config_id));
CREATE TABLE IF NOT EXISTS environments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, is_default INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS deployments (
    project_id TEXT NOT NULL REFERENCES projects(id), environment_id TEXT NOT NULL REFERENCES environments(id),
    config_id TEXT, experiment_id TEXT, PRIMARY KEY (project_id, environment_id));
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, reference_id TEXT UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, project_id TEXT NOT NULL,
    config_id TEXT NOT NULL, session_id TEXT, parent_id TEXT, sample_index INTEGER NOT NULL,
    endpoint TEXT NOT NULL, created_at REAL NOT NULL, inputs TEXT, messages TEXT, output TEXT,
    finish_reason TEXT, error TEXT, metadata TEXT, source TEXT, usage TEXT, saved INTEGER NOT NULL,
    inputs_ref TEXT, messages_ref TEXT, experiment_id TEXT);
CREATE INDEX IF NOT EXISTS logs_by_project ON logs (project_id, seq);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, log_id TEXT NOT NULL REFERENCES logs(id),
    experiment_id TEXT, type TEXT NOT NULL, value TEXT NOT NULL, user TEXT, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_by_log ON feedback (log_id, type);
CREATE INDEX IF NOT EXISTS feedback_by_experiment ON feedback (experiment_id, type);
CREATE TABLE IF NOT EXISTS payloads (
    id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, response TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket TEXT PRIMARY KEY, tat REAL NOT NULL);
"""
# logs.inputs/messages hold the JSON of rows written before payloads existed; newer rows point at a
# payload (stored once however many samples, or calls, share it) through inputs_ref/messages_ref.
# logs.experiment_id: the experiment a log's config was sampled for (its feedback teaches that one)
MIGRATIONS = {"inputs_ref": "ALTER TABLE logs ADD COLUMN inputs_ref TEXT",
              "messages_ref": "ALTER TABLE logs ADD COLUMN messages_ref TEXT",
              "experiment_id": "ALTER TABLE logs ADD COLUMN experiment_id TEXT"}
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
    """All persistent state. Thread-safe: each thread gets its own connection."""

    def __init__(self, path: str | Path, experiment_seed: int | None = None) -> None:
        """``experiment_seed`` makes experiment sampling reproducible within this process (tests)."""
        self.path = str(path)
        self.experiment_rng = random.Random(experiment_seed)
        self._rng_lock = threading.Lock()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        db = self._connection()
        db.executescript(SCHEMA)
        columns = {row["name"] for row in db.execute("PRAGMA table_info(logs)")}
        for column, statement in MIGRATIONS.items():
            if column not in columns:
                try:
                    db.execute(statement)
                except sqlite3.OperationalError as exc:  # another process migrated the file first
                    if "duplicate column" not in str(exc):
                        raise
        with self.write() as db:
            if not db.execute("SELECT 1 FROM environments WHERE is_default = 1").fetchone():
                db.execute("INSERT OR IGNORE INTO environments VALUES (?, ?, 1)",
                           (new_id("env"), DEFAULT_ENVIRONMENT))

    # -- connections -------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction.

        Writers of this process queue on a lock first: SQLite's busy handler polls with growing
        sleeps (up to 100 ms), so under load a waiter would sleep long after the lock is free.
        Other processes on the same file still wait through ``busy_timeout``.
        """
        db = self._connection()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self._connection()

    # -- projects ----------------------------------------------------------------------------
    def project_by_id(self, project_id: str) -> dict[str, Any]:
        row = self.read().execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
        if row is None:
            raise NotFound(f"project {project_id} not found")
        return dict(row)

    def project_by_name(self, name: str) -> dict[str, Any] | None:
        row = self.read().execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def ensure_project(self, db: sqlite3.Connection, name: str) -> str:
        """The id of the project called ``name``, created on first use (spec §9)."""
        project_id = project_id_for(name)
        db.execute("INSERT OR IGNORE INTO projects VALUES (?, ?, ?)", (project_id, name, time.time()))
        return db.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()[0]

    def create_project(self, name: str) -> str:
        """``POST /projects``: the new project's id.

        Raises:
            AlreadyExists: a project has that name. Checked and inserted in one write transaction
                (and the name is UNIQUE), so of simultaneous creators exactly one succeeds.
        """
        with self.write() as db:
            if db.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"a project named {name!r} already exists")
            project_id = project_id_for(name)
            db.execute("INSERT INTO projects VALUES (?, ?, ?)", (project_id, name, time.time()))
        return project_id

    def list_projects(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.read().execute("SELECT * FROM projects ORDER BY created_at, id")]

    # -- configs -----------------------------------------------------------------------------
    def config_id_for(self, project_id: str, params: dict[str, Any]) -> str:
        """The id a config with these parameters has (or will have) in this project."""
        return stable_id("config", project_id + "\n" + config_key(params))

    def ensure_config(self, db: sqlite3.Connection, project_id: str, params: dict[str, Any],
                      name: str | None = None, description: str | None = None) -> str:
        """Register (or find) a config; the project's first config is deployed to the default env."""
        config_id = self.config_id_for(project_id, params)
        inserted = db.execute(
            "INSERT OR IGNORE INTO configs VALUES (?, ?, ?, ?, ?, ?)",
            (config_id, project_id, name or f"{params.get('model', 'config')}-{config_id[-6:]}",
             description, config_key(params), time.time())).rowcount
        if inserted and not db.execute("SELECT 1 FROM deployments WHERE project_id = ?", (project_id,)).fetchone():
            env_id = db.execute("SELECT id FROM environments WHERE is_default = 1").fetchone()[0]
            db.execute("INSERT INTO deployments VALUES (?, ?, ?, NULL)", (project_id, env_id, config_id))
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
        row = self.read().execute("SELECT * FROM configs WHERE id = ?", (config_id,)).fetchone()
        if row is None:
            raise NotFound(f"model config {config_id} not found")
        found = dict(row)
        found["params"] = json.loads(found["params"])
        return found

    def project_configs(self, project_id: str) -> list[dict[str, Any]]:
        self.project_by_id(project_id)
        rows = self.read().execute("SELECT id FROM configs WHERE project_id = ? ORDER BY created_at, id",
                                   (project_id,))
        return [self.config(r[0]) for r in rows]

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(self, project_id: str, name: str, positive_labels: list[Any],
                          config_ids: list[str], set_active: bool) -> str:
        self.project_by_id(project_id)
        for config_id in config_ids:
            if self.config(config_id)["project_id"] != project_id:
                raise NotFound(f"model config {config_id} not found in project {project_id}")
        experiment_id = new_id("exp")
        with self.write() as db:
            db.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?)",
                       (experiment_id, project_id, name, json.dumps(positive_labels), time.time()))
            db.executemany("INSERT OR IGNORE INTO experiment_configs VALUES (?, ?, 1)",
                           [(experiment_id, c) for c in config_ids])
            if set_active:
                self._deploy(db, project_id, [self.default_environment()["id"]], None, experiment_id)
        return experiment_id

    def add_experiment_config(self, experiment_id: str, config_id: str) -> None:
        """Make ``config_id`` one of the experiment's active configs (a no-op when it already is)."""
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO experiment_configs VALUES (?, ?, 1)", (experiment_id, config_id))

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        row = self.read().execute("SELECT * FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise NotFound(f"experiment {experiment_id} not found")
        found = dict(row)
        found["positive_labels"] = json.loads(found["positive_labels"])
        found["configs"] = [(r[0], bool(r[1])) for r in self.read().execute(
            "SELECT config_id, active FROM experiment_configs WHERE experiment_id = ? ORDER BY rowid", (experiment_id,))]
        found["config_ids"] = [config_id for config_id, active in found["configs"] if active]
        return found

    def project_experiments(self, project_id: str) -> list[dict[str, Any]]:
        self.project_by_id(project_id)
        rows = self.read().execute("SELECT id FROM experiments WHERE project_id = ? ORDER BY created_at, id",
                                   (project_id,))
        return [self.experiment(r[0]) for r in rows]

    def experiment_arms(self, experiment: dict[str, Any]) -> dict[str, Arm]:
        """Feedback counts per config of ``experiment`` (every config, active or not), read from the
        database on each call (``experiments.py`` defines trials and successes)."""
        arms = {config_id: Arm(config_id) for config_id, _ in experiment["configs"]}
        labels = [(label["type"], label["value"]) for label in experiment["positive_labels"]]
        types = sorted({kind for kind, _ in labels})
        if not types:
            return arms
        matches = " OR ".join("(f.type = ? AND f.value = ?)" for _ in labels)
        rows = self.read().execute(
            "SELECT config_id, COUNT(*), SUM(success) FROM ("
            f" SELECT l.config_id AS config_id, MAX({matches}) AS success FROM feedback f"
            " JOIN logs l ON l.id = f.log_id"
            f" WHERE f.experiment_id = ? AND f.type IN ({', '.join('?' * len(types))}) GROUP BY f.log_id"
            ") GROUP BY config_id",
            [*(part for label in labels for part in label), experiment["id"], *types])
        for config_id, trials, successes in rows:
            if config_id in arms:
                arms[config_id] = Arm(config_id, successes, trials - successes)
        return arms

    def sample_experiment_configs(self, experiment_id: str, n: int, rng: random.Random | None = None) -> list[str]:
        """``n`` configs for ``n`` samples, each drawn independently by Thompson sampling over the
        experiment's active configs (``experiments.thompson``; uniform while there is no feedback)."""
        experiment = self.experiment(experiment_id)
        if not experiment["config_ids"]:
            raise NotFound(f"experiment {experiment_id} has no active model configs")
        arms = self.experiment_arms(experiment)
        with self._rng_lock:
            return thompson([arms[c] for c in experiment["config_ids"]], n, rng or self.experiment_rng)

    def sample_experiment_config(self, experiment_id: str, rng: random.Random | None = None) -> str:
        return self.sample_experiment_configs(experiment_id, 1, rng)[0]

    # -- environments and deployments --------------------------------------------------------
    def default_environment(self) -> dict[str, Any]:
        return dict(self.read().execute("SELECT * FROM environments WHERE is_default = 1").fetchone())

    def environment(self, *, name: str | None = None, env_id: str | None = None) -> dict[str, Any]:
        if env_id:
            row = self.read().execute("SELECT * FROM environments WHERE id = ?", (env_id,)).fetchone()
        else:
            row = self.read().execute("SELECT * FROM environments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"environment {env_id or name} not found")
        return dict(row)

    def ensure_environment(self, name: str) -> dict[str, Any]:
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO environments VALUES (?, ?, 0)", (new_id("env"), name))
        return self.environment(name=name)

    def _deploy(self, db: sqlite3.Connection, project_id: str, env_ids: list[str],
                config_id: str | None, experiment_id: str | None) -> None:
        db.executemany("INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?)",
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
        rows = self.read().execute(
            "SELECT d.*, e.name AS environment_name, e.is_default FROM deployments d "
            "JOIN environments e ON e.id = d.environment_id WHERE d.project_id = ? ORDER BY e.name",
            (project_id,))
        return [dict(r) for r in rows]

    def deployment(self, project_id: str, environment: str | None) -> dict[str, Any]:
        env = self.environment(name=environment) if environment else self.default_environment()
        row = self.read().execute("SELECT * FROM deployments WHERE project_id = ? AND environment_id = ?",
                                  (project_id, env["id"])).fetchone()
        if row is None:
            raise NotFound(f"project {project_id} has no deployment in environment {env['name']}")
        return {**dict(row), "environment_name": env["name"]}

    # -- sessions ----------------------------------------------------------------------------
    @staticmethod
    def session_id_for(reference_id: str) -> str:
        """Sessions named by reference get an id derived from it: known before anything is stored."""
        return stable_id("sesh", "ref:" + reference_id)

    def session_for_reference(self, db: sqlite3.Connection, reference_id: str) -> str:
        db.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?)",
                   (self.session_id_for(reference_id), reference_id, time.time()))
        return db.execute("SELECT id FROM sessions WHERE reference_id = ?", (reference_id,)).fetchone()[0]

    # -- logs --------------------------------------------------------------------------------
    def write_logs(self, db: sqlite3.Connection, *, project_id: str, endpoint: str, logs: list[PendingLog],
                   inputs: dict[str, Any], messages: list[dict[str, Any]], metadata: Any, source: str | None,
                   usage: dict[str, int] | None, session_id: str | None, parent_id: str | None,
                   save: bool, experiment_id: str | None = None) -> None:
        """Store one log per sample. With ``save=False`` inputs, messages and outputs are dropped.
        ``experiment_id``: the experiment the samples' configs were drawn from (their feedback counts there).

        ``messages`` is the default for logs whose ``PendingLog.messages`` is None. Inputs and each
        distinct messages list are stored once, as payloads the logs point at: 100 samples of 1 MB
        of messages are 1 MB in the file, not 100.
        """
        now = time.time()
        inputs_ref = self._payload(db, inputs) if save else None
        refs: dict[int, str] = {}  # id() of a messages list -> its payload (samples of one config share one list)

        def messages_ref(log: PendingLog) -> str | None:
            chosen = messages if log.messages is None else log.messages
            if id(chosen) not in refs:
                refs[id(chosen)] = self._payload(db, chosen)
            return refs[id(chosen)]

        db.executemany(
            "INSERT INTO logs (id, project_id, config_id, session_id, parent_id, sample_index, endpoint,"
            " created_at, inputs_ref, messages_ref, output, finish_reason, error, metadata, source, usage, saved,"
            " experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(log.id, project_id, log.config_id, session_id, parent_id, log.sample_index, endpoint, now,
              inputs_ref, messages_ref(log) if save else None, log.output if save else None, log.finish_reason,
              json.dumps(log.error) if log.error else None, json.dumps(metadata),
              source, json.dumps(usage) if usage else None, int(save), experiment_id)
             for log in logs])

    @staticmethod
    def _payload(db: sqlite3.Connection, value: Any) -> str:
        """Store a JSON value once (content-addressed); its id."""
        text = json.dumps(value)
        payload_id = hashlib.sha256(text.encode()).hexdigest()
        db.execute("INSERT OR IGNORE INTO payloads VALUES (?, ?)", (payload_id, text))
        return payload_id

    # -- idempotency keys --------------------------------------------------------------------
    def completed_call(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """(request hash, response body) of the completed call stored under ``key``, if any."""
        row = self.read().execute("SELECT request_hash, response FROM idempotency WHERE key = ?", (key,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    @staticmethod
    def remember_call(db: sqlite3.Connection, key: str, request_hash: str, response: dict[str, Any]) -> None:
        """Store a completed call's response under its key, in the transaction of its logs. A key
        stored first by another process keeps its response (the in-flight wait is per process)."""
        db.execute("INSERT OR IGNORE INTO idempotency VALUES (?, ?, ?, ?)",
                   (key, request_hash, json.dumps(response), time.time()))

    # -- shared rate budgets (server/ratelimit.py) ---------------------------------------------
    def advance_bucket(self, bucket: str, not_before: float, cost: float) -> float:
        """Take the next slot on a shared timeline: slot = max(bucket's time, ``not_before``), and the
        bucket's time becomes slot + ``cost`` (seconds; may be negative to give time back). Returns the
        slot. One atomic statement, so every worker and thread sharing the database sees one timeline.
        """
        with self.write() as db:
            return db.execute(
                "INSERT INTO rate_buckets (bucket, tat) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE"
                " SET tat = MAX(rate_buckets.tat, ?) + ? RETURNING tat",
                (bucket, not_before + cost, not_before, cost)).fetchone()[0] - cost

    def buckets(self) -> dict[str, float]:
        """Every rate bucket's time (the end of its last reserved slot)."""
        return {r[0]: r[1] for r in self.read().execute("SELECT bucket, tat FROM rate_buckets ORDER BY bucket")}

    def count_logs(self, *, project_id: str | None = None, config_id: str | None = None) -> int:
        """How many logs a project (or a config) has."""
        column, value = ("project_id", project_id) if project_id is not None else ("config_id", config_id)
        return self.read().execute(f"SELECT COUNT(*) FROM logs WHERE {column} = ?", (value,)).fetchone()[0]

    def logs(self, project_id: str, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        self.project_by_id(project_id)
        db = self.read()
        total = db.execute("SELECT COUNT(*) FROM logs WHERE project_id = ?", (project_id,)).fetchone()[0]
        rows = db.execute(f"SELECT {LOG_COLUMNS} FROM logs {LOG_JOINS} WHERE logs.project_id = ? "
                          "ORDER BY logs.seq LIMIT ? OFFSET ?", (project_id, size, page * size))
        return self._with_feedback([dict(r) for r in rows]), total

    def log(self, log_id: str) -> dict[str, Any]:
        row = self.read().execute(f"SELECT {LOG_COLUMNS} FROM logs {LOG_JOINS} WHERE logs.id = ?",
                                  (log_id,)).fetchone()
        if row is None:
            raise NotFound(f"log {log_id} not found")
        return self._with_feedback([dict(row)])[0]

    def _with_feedback(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The log rows, each with ``feedback``: its feedback rows, oldest first."""
        found: dict[str, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
        for chunk in _chunks(list(found)):
            for item in self.read().execute(
                    f"SELECT * FROM feedback WHERE log_id IN ({', '.join('?' * len(chunk))}) ORDER BY seq", chunk):
                found[item["log_id"]].append(dict(item))
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
    def _log_experiments(db: sqlite3.Connection, log_ids: list[str]) -> dict[str, str | None]:
        """Log id -> the experiment it was sampled for (None: none).

        Raises:
            NotFound: naming the first of ``log_ids`` that no log has.
        """
        known: dict[str, str | None] = {}
        for chunk in _chunks(list(dict.fromkeys(log_ids))):
            known.update(db.execute(f"SELECT id, experiment_id FROM logs WHERE id IN ({', '.join('?' * len(chunk))})",
                                    chunk).fetchall())
        for log_id in log_ids:
            if log_id not in known:
                raise NotFound(f"log {log_id} not found")
        return known

    @staticmethod
    def _apply(db: sqlite3.Connection, change: FeedbackChange, experiment_id: str | None,
               now: float) -> dict[str, Any]:
        ident = feedback_id(change.log_id, change.type, change.value)
        row = {"id": ident, "log_id": change.log_id, "experiment_id": experiment_id, "type": change.type,
               "value": change.value or "", "user": change.user,
               "created_at": change.created_at if change.created_at is not None else now}
        if change.unset:
            removed = db.execute("SELECT * FROM feedback WHERE id = ?", (ident,)).fetchone()
            db.execute("DELETE FROM feedback WHERE id = ?", (ident,))
            return dict(removed) if removed else row
        db.execute("INSERT OR REPLACE INTO feedback (id, log_id, experiment_id, type, value, user, created_at)"
                   " VALUES (:id, :log_id, :experiment_id, :type, :value, :user, :created_at)", row)
        return row


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """``items`` in chunks small enough for SQLite's limit on ``?`` parameters."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
