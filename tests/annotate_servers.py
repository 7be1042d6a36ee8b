"""An annotation project and its `posttrain annotate serve` subprocess, as a person starts them from the
shell, and direct reads of its SQLite file: the load and durability tests share them (the `annotate_servers`
fixture in conftest.py starts servers and kills them all at teardown)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from conftest import REPO, run_cli, write_jsonl

MISSING = [name for name in ("fastapi", "uvicorn", "sqlalchemy") if importlib.util.find_spec(name) is None]
needs_the_app = pytest.mark.skipif(bool(MISSING), reason=f"posttrain annotate needs {', '.join(MISSING)}: pip install 'posttrain[annotate]'")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_project(root: Path, items: int, annotators: list[str], overlap: int) -> tuple[Path, dict[str, str]]:
    """`annotate create` on `items` generated pairwise rows; (project dir, {name: token})."""
    rows = [{"prompt": f"Question {i}: what is {i} + {i}?", "completions": [f"It is {2 * i}.", f"Perhaps {2 * i + 1}."]}
            for i in range(items)]
    samples = write_jsonl(root / "samples.jsonl", rows)
    project = root / "project"
    done = run_cli("annotate", "create", f"project={project}", f"samples={samples}", f"annotators=[{','.join(annotators)}]",
                   "admins=[boss]", f"overlap={overlap}")
    assert done.returncode == 0, done.stderr
    return project, json.loads((project / "tokens.json").read_text())


class Server:
    """`annotate serve` in a subprocess (its output in a log file, so a full pipe never stalls it)."""

    def __init__(self, project: Path, port: int | None = None, *extra: str):
        self.project, self.port, self.extra = project, port or free_port(), extra
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        self.log_path = self.project.parent / f"serve-{self.port}-{time.monotonic_ns()}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        with open(self.log_path, "w") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "posttrain", "annotate", "serve", f"project={self.project}", "host=127.0.0.1",
                 f"port={self.port}", *self.extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited with {self.process.returncode}:\n{self.log()}"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as reply:
                    if json.load(reply) == {"ok": True}:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not answer /healthz within 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine loses power or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (uvicorn finishes the requests in flight), SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def database(project: Path):
    """The project's SQLite file, read directly (not through the app), closed afterwards."""
    with closing(sqlite3.connect(project / "annotations.sqlite")) as db:
        yield db


def standing_labels(db: sqlite3.Connection) -> list[tuple]:
    """(label id, submit_id, item id, annotator name) of every label not undone."""
    return db.execute("SELECT l.id, l.submit_id, l.item_id, a.name FROM labels l JOIN annotators a ON a.id = l.annotator_id "
                      "WHERE l.undone_at IS NULL").fetchall()


def check_overlap(db: sqlite3.Connection, overlap: int) -> None:
    """No item beyond its overlap (claims and standing labels of its current version), nobody twice on one item."""
    per_item = db.execute("SELECT item_id, COUNT(*), MAX(slot) FROM assignments GROUP BY item_id").fetchall()
    assert all(count <= overlap and top < overlap for _, count, top in per_item), per_item
    standing = db.execute("SELECT l.item_id, COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id "
                          "WHERE l.undone_at IS NULL AND l.item_version = i.version GROUP BY l.item_id").fetchall()
    assert all(count <= overlap for _, count in standing), [row for row in standing if row[1] > overlap]
    twice = db.execute("SELECT item_id, annotator_id FROM labels WHERE undone_at IS NULL "
                       "GROUP BY item_id, annotator_id HAVING COUNT(*) > 1").fetchall()
    assert not twice, f"(item, annotator) pairs with two standing labels: {twice}"
    assert not db.execute("SELECT submit_id FROM labels GROUP BY submit_id HAVING COUNT(*) > 1").fetchall()
