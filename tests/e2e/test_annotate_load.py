"""`posttrain annotate serve` under load: 20 people label at once for a fixed time (20 s in CI: over 2000
requests; POSTTRAIN_LOAD_SECONDS=60 for the measurement quoted in the README and docs/annotate.md),
retrying, skipping and undoing now and then; afterwards the database holds exactly the labels the server
acknowledged, no item went beyond its overlap, and export agrees.
The throughput and per-endpoint latencies are printed (run pytest with -s) and written as JSON."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from annotate_servers import check_overlap, create_project, database, needs_the_app, standing_labels
from conftest import run_cli

from posttrain.annotate.scripted import ApiError, Client

pytestmark = needs_the_app

LOAD_SECONDS = float(os.environ.get("POSTTRAIN_LOAD_SECONDS", "20"))
ANNOTATORS = [f"a{i:02d}" for i in range(20)]
OVERLAP = 3
ITEMS = 3000
RESEND, SKIP, UNDO = 0.05, 0.05, 0.05  # per-item odds of each thing a person does besides labelling
ENDPOINTS = ("next", "label", "skip", "undo")


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


def test_twenty_people_label_at_once_and_the_database_holds_exactly_what_was_acknowledged(tmp_path, annotate_servers):
    project, tokens = create_project(tmp_path, ITEMS, ANNOTATORS, OVERLAP)
    server = annotate_servers(project)
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
