"""The annotation database: one project per database (SQLite file by default, any SQLAlchemy URL).

Tables: `project` (one row: mode, K, overlap, guidelines), `items` (prompt, completions, hidden
columns, version), `annotators` (name, role, token hash), `sessions` (login cookie → annotator,
with its CSRF token), `assignments` (an item in an annotator's queue: slot, display order,
open/done), `skips`, and `labels` (who, when, the item's version, the ranking in the item's own
order, comment, the submit id that makes a retried submit a no-op, and when it was undone).

Correctness under concurrency rests on unique constraints, so it holds on any database:
(item, slot) with slot < overlap means no item is handed out beyond its overlap; (item, annotator)
means nobody gets an item twice; `labels.submit_id` means a label is written once. On SQLite every
transaction is BEGIN IMMEDIATE (writers queue on the busy timeout instead of failing) and each
commit is fsynced (synchronous=FULL): a label acknowledged to the browser survives a killed server.
"""

from __future__ import annotations

import json
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import (JSON, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        create_engine, event)
from sqlalchemy.engine import Connection, Engine

from posttrain.errors import ConfigError

DATABASE_FILE = "annotations.sqlite"
TOKENS_FILE = "tokens.json"
MODES = ("pairwise", "ranking")
ROLES = ("annotator", "admin")

metadata = MetaData()

project = Table(
    "project", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("k", Integer, nullable=False),
    Column("overlap", Integer, nullable=False),
    Column("guidelines", Text, nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),  # the row's `id`, else a hash of its content
    Column("prompt", JSON, nullable=False),
    Column("completions", JSON, nullable=False),
    Column("hidden", JSON, nullable=False),  # the row's other columns: kept for export and scripted labels, never shown
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

annotators = Table(
    "annotators", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False),
)

sessions = Table(
    "sessions", metadata,
    Column("id", String(64), primary_key=True),
    Column("annotator_id", Integer, ForeignKey("annotators.id"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

assignments = Table(
    "assignments", metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("annotator_id", Integer, ForeignKey("annotators.id"), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("display_order", JSON, nullable=False),  # display position i shows completions[display_order[i]]
    Column("state", String(10), nullable=False),  # open | done
    Column("leased_at", DateTime(), nullable=False),
    UniqueConstraint("item_id", "slot"),
    UniqueConstraint("item_id", "annotator_id"),
)

skips = Table(
    "skips", metadata,
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("annotator_id", Integer, ForeignKey("annotators.id"), primary_key=True),
    Column("skipped_at", DateTime(), nullable=False),
)

labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True),
    Column("submit_id", String(64), nullable=False, unique=True),
    # None once the assignment is gone (skipped or lapsed after an undo or a new version): the label stays
    Column("assignment_id", Integer, ForeignKey("assignments.id", ondelete="SET NULL"), nullable=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("annotator_id", Integer, ForeignKey("annotators.id"), nullable=False),
    Column("item_version", Integer, nullable=False),
    Column("ranking", JSON, nullable=False),  # rank of each completion in the item's own order, 0 = best
    Column("comment", Text, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("undone_at", DateTime(), nullable=True),
)


def database_url(project_dir: str, database: str | None = None) -> str:
    """`database` when given (any SQLAlchemy URL), else the SQLite file in `project_dir`."""
    if database:
        return database
    return f"sqlite:///{Path(project_dir).resolve() / DATABASE_FILE}"


_write_locks: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()
READ_ONLY = "posttrain_read_only"


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite the server's threads queue on a lock first: SQLite admits one
    writer at a time, and a lock hands over at once where its busy timeout polls (p99 in seconds)."""
    lock = _write_locks.get(engine)
    if lock is None:
        with engine.begin() as conn:
            yield conn
        return
    with lock, engine.begin() as conn:
        yield conn


def reading(engine: Engine) -> Connection:
    """A read-only connection: on SQLite a deferred transaction, which WAL runs beside the writer."""
    return engine.execution_options(**{READ_ONLY: True}).connect()


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's events below issue BEGIN themselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the reply
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY under a
        # concurrent writer; IMMEDIATE takes the write lock first, so writers wait their turn.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def open_engine(url: str, must_exist: bool = True) -> Engine:
    """An engine on `url`; for SQLite a ConfigError when the file is missing and `must_exist`."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if must_exist and not path.is_file():
            raise ConfigError(f"no annotation project at {path.parent} ({path.name} not found); "
                              "create one with `posttrain annotate create project=DIR ...`")
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=32, max_overflow=32)
        _sqlite_pragmas(engine)
        _write_locks[engine] = threading.Lock()
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # a malformed URL or a driver that is not installed
        raise ConfigError(f"database={url!r} cannot be opened: {exc}; give a SQLAlchemy URL such as "
                          "postgresql+psycopg://user:pass@host/db, or leave it unset for the project's SQLite file") from None


def read_project(engine: Engine) -> dict:
    """The project row as a dict; a ConfigError when the database holds no project."""
    from sqlalchemy import inspect, select

    if not inspect(engine).has_table("project"):
        raise ConfigError(f"{engine.url.render_as_string(hide_password=True)} holds no annotation project; "
                          "create one with `posttrain annotate create`")
    with reading(engine) as conn:
        row = conn.execute(select(project)).mappings().first()
    if row is None:
        raise ConfigError("the annotation database has no project row; re-create it with `posttrain annotate create`")
    return dict(row)


def prompt_text(prompt) -> str:
    """A prompt as the page shows it: a string as is, a conversation as its turns."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"**{turn.get('role', '')}:** {turn.get('content', '')}" for turn in prompt)


def completion_text(completion) -> str:
    """A completion as text: a string as is, a conversational completion as its messages' content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "\n\n".join(str(turn.get("content", "")) for turn in completion)
    return json.dumps(completion)
