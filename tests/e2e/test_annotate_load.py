"""`posttrain annotate serve` under load: 20 people label at once for a fixed time (60 s, or
POSTTRAIN_LOAD_SECONDS), retrying, skipping and undoing now and then; afterwards the database holds
exactly the labels the server acknowledged, no item went beyond its overlap, and export agrees.
The throughput and per-endpoint latencies are printed (run pytest with -s) and written as JSON.

The server helpers here are shared with test_annotate_durability.py."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, run_cli, write_jsonl

from posttrain.annotate.scripted import ApiError, Client

MISSING = [name for name in ("fastapi", "uvicorn", "sqlalchemy") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"posttrain annotate needs {', '.join(MISSING)}: pip install 'posttrain[annotate]'")

LOAD_SECONDS = float(os.environ.get("POSTTRAIN_LOAD_SECONDS", "60"))
ANNOTATORS = [f"a{i:02d}" for i in range(20)]
OVERLAP = 3
ITEMS = 3000
RESEND, SKIP, UNDO = 0.05, 0.05, 0.05  # per-item odds of each thing a person does besides labelling
ENDPOINTS = ("next", "label", "skip", "undo")


# ---- a project and its server, as a person starts them from the shell ----

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


@pytest.fixture
def servers():
    """Start servers with `servers(project, ...)`; every one is killed at teardown, pass or fail."""
    started: list[Server] = []

    def start(project: Path, port: int | None = None, *extra: str) -> Server:
        started.append(Server(project, port, *extra).start())
        return started[-1]

    yield start
    for server in started:
        server.kill()


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


# ---- the simulated people ----

@dataclass
class Tally:
    """What the server acknowledged and how long it took; shared by the annotator threads (list/dict
    updates are atomic under the GIL, the lock guards the read-modify-writes)."""

    acknowledged: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # submit_id -> (label id, item, annotator)
    undone: set[int] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})  # no racing key inserts
    server_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, client: Client, endpoint: str, method: str, path: str, body: dict | None = None) -> dict | None:
        """The reply, or None after a 5xx (recorded: the test fails at the end, after its other checks)."""
        start = time.perf_counter()
        try:
            return client.call(method, path, body)
        except ApiError as exc:
            if exc.status < 500:
                raise
            self.server_errors.append(f"{method} {path}: {exc}")
            return None
        finally:
            self.latencies[endpoint].append(time.perf_counter() - start)


def label_for(item: dict, rng: random.Random) -> dict:
    return {"item_id": item["item_id"], "version": item["version"], "submit_id": uuid.uuid4().hex,
            "ranking": rng.choice([[0, 1], [1, 0], [0, 0]]), "comment": "load" if rng.random() < 0.1 else ""}


def annotate_until(client: Client, name: str, rng: random.Random, deadline: float, tally: Tally) -> None:
    """One person's loop: next -> label, now and then a resent submit, a skip or an undo."""
    while time.monotonic() < deadline:
        reply = tally.call(client, "next", "GET", "/api/next")
        if reply is None:
            continue
        item = reply["item"]
        if item is None:
            return  # this person's queue is empty
        if rng.random() < SKIP:
            tally.call(client, "skip", "POST", "/api/skip", {"item_id": item["item_id"]})
            continue
        submission = label_for(item, rng)
        reply = tally.call(client, "label", "POST", "/api/label", submission)
        if reply is None:
            continue
        label_id = reply["label_id"]
        with tally.lock:
            tally.acknowledged[submission["submit_id"]] = (label_id, item["item_id"], name)
        if rng.random() < RESEND:  # the reply was lost, say: the browser sends the same submission again
            again = tally.call(client, "label", "POST", "/api/label", submission)
            if again is not None and again["label_id"] != label_id:
                tally.problems.append(f"{name}: resent {submission['submit_id']} got label {again['label_id']}, not {label_id}")
        if rng.random() < UNDO:
            undone = tally.call(client, "undo", "POST", "/api/undo", {})
            if undone is not None:
                if undone["item_id"] != item["item_id"]:
                    tally.problems.append(f"{name}: undo withdrew item {undone['item_id']}, not the last labelled {item['item_id']}")
                with tally.lock:
                    tally.undone.add(label_id)


def run_people(url: str, tokens: dict[str, str], names: list[str], seconds: float, tally: Tally) -> float:
    """Every person in a thread until the deadline; the wall time the traffic took."""
    clients = {name: Client(url, name, tokens[name]) for name in names}

    def person(index: int, name: str) -> None:
        try:
            annotate_until(clients[name], name, random.Random(1000 + index), deadline, tally)
        except BaseException as exc:  # noqa: BLE001 - a 4xx or a dropped connection: the test fails on it
            tally.problems.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=person, args=(i, name)) for i, name in enumerate(names)]
    start = time.monotonic()
    deadline = start + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(tally: Tally, wall: float, people: int) -> dict:
    requests = sum(len(v) for v in tally.latencies.values())
    summary = {"annotators": people, "seconds": round(wall, 1), "requests": requests,
               "requests_per_s": round(requests / wall, 1), "labels_acknowledged": len(tally.acknowledged),
               "undone": len(tally.undone), "server_errors": len(tally.server_errors)}
    for endpoint in ENDPOINTS:
        values = tally.latencies[endpoint]
        if values:
            summary[endpoint] = {"count": len(values), "p50_ms": round(percentile(values, 0.5) * 1000, 1),
                                 "p99_ms": round(percentile(values, 0.99) * 1000, 1)}
    return summary


def test_twenty_people_label_at_once_and_the_database_holds_exactly_what_was_acknowledged(tmp_path, servers):
    project, tokens = create_project(tmp_path, ITEMS, ANNOTATORS, OVERLAP)
    server = servers(project)
    tally = Tally()
    wall = run_people(server.url, tokens, ANNOTATORS, LOAD_SECONDS, tally)
    server.stop()

    summary = summarize(tally, wall, len(ANNOTATORS))
    (tmp_path / "annotate_load.json").write_text(json.dumps(summary, indent=1))
    endpoints = "; ".join(f"{e} n={summary[e]['count']} p50 {summary[e]['p50_ms']} ms p99 {summary[e]['p99_ms']} ms"
                          for e in ENDPOINTS if e in summary)
    print(f"\nannotate load: {summary['annotators']} annotators, {summary['seconds']} s: {summary['requests']} requests, "
          f"{summary['requests_per_s']} req/s; {endpoints}; labels acknowledged {summary['labels_acknowledged']}, "
          f"undone {summary['undone']}, 5xx {summary['server_errors']}", flush=True)

    assert not tally.problems, tally.problems[:10]  # a 4xx, a dropped connection, a resend or undo that went wrong
    with database(project) as db:
        rows = db.execute("SELECT l.id, l.submit_id, l.item_id, a.name FROM labels l "
                          "JOIN annotators a ON a.id = l.annotator_id").fetchall()
        in_db = {submit_id: (label_id, item_id, name) for label_id, submit_id, item_id, name in rows}
        # every acknowledged label is there with the id it was acknowledged with, and nothing else is
        assert {s: in_db.get(s) for s in tally.acknowledged} == tally.acknowledged
        assert set(in_db) == set(tally.acknowledged), "labels in the database that no reply acknowledged"
        acknowledged_ids = {label_id for label_id, _, _ in tally.acknowledged.values()}
        assert {row[0] for row in standing_labels(db)} == acknowledged_ids - tally.undone
        check_overlap(db, OVERLAP)
        labelled_items = db.execute("SELECT COUNT(DISTINCT l.item_id) FROM labels l JOIN items i ON i.id = l.item_id "
                                    "WHERE l.undone_at IS NULL AND l.item_version = i.version").fetchone()[0]
    exported = run_cli("annotate", "export", f"project={project}")
    assert exported.returncode == 0, exported.stderr
    assert len((project / "export" / "preferences.jsonl").read_text().splitlines()) == labelled_items

    if tally.server_errors:  # checked last, so that a 5xx does not hide how the other checks went
        pytest.fail(f"{len(tally.server_errors)} HTTP 5xx: {Counter(tally.server_errors).most_common(3)}\n{server.log()}")
    assert summary["requests_per_s"] > 0 and summary["labels_acknowledged"] > 0
    assert summary["next"]["p99_ms"] < 5000 and summary["label"]["p99_ms"] < 5000, summary
