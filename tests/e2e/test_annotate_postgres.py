"""The annotation app on a team database: a real PostgreSQL server (pgserver's binaries, started in a
temp dir), where the queue's guarantees rest on unique constraints and row locks, not on SQLite's
single writer."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import write_jsonl
from posttrain.cli import main

pytest.importorskip("fastapi", reason="posttrain[annotate] is not installed (fastapi, uvicorn, sqlalchemy)")
pgserver = pytest.importorskip("pgserver", reason="pgserver (a pip-installed PostgreSQL) is not installed")
pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL driver) is not installed")

PEOPLE = [f"p{i}" for i in range(6)]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


def test_concurrent_people_on_postgres_fill_every_item_to_its_overlap_and_no_further(postgres_url, tmp_path, capfd):
    from sqlalchemy import func, select

    from posttrain.annotate.app import make_app
    from posttrain.annotate.scripted import Client, label_queue
    from posttrain.annotate.server import background_server
    from posttrain.annotate.store import assignments, labels, open_engine

    samples = write_jsonl(tmp_path / "s.jsonl", [{"prompt": f"p{i}", "completions": [f"long answer {i}", f"short {i}"]}
                                                 for i in range(40)])
    project = tmp_path / "project"
    assert main(["annotate", "create", f"project={project}", f"database={postgres_url}", f"samples={samples}",
                 f"annotators=[{','.join(PEOPLE)}]", "admins=[]", "overlap=2"]) == 0
    tokens = json.loads((project / "tokens.json").read_text())
    engine = open_engine(postgres_url)
    given: dict[str, int] = {}
    with background_server(make_app(engine)) as url:
        def work(name):
            given[name] = label_queue(Client(url, name, tokens[name]), lambda _id, texts: [len(t) for t in texts], "pairwise")

        threads = [threading.Thread(target=work, args=(name,)) for name in PEOPLE]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(given.values()) == 80  # 40 items x overlap 2, all handed out, none twice
    with engine.connect() as conn:
        per_item = conn.execute(select(labels.c.item_id, func.count()).group_by(labels.c.item_id)).all()
        per_pair = conn.execute(select(func.count()).select_from(labels).group_by(labels.c.item_id, labels.c.annotator_id)
                                .having(func.count() > 1)).all()
        slots = conn.execute(select(func.max(assignments.c.slot))).scalar_one()
    assert len(per_item) == 40 and {n for _, n in per_item} == {2} and per_pair == [] and slots == 1
    capfd.readouterr()
    assert main(["annotate", "export", f"project={project}", f"database={postgres_url}", f"output={tmp_path / 'out'}"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["chosen"].startswith("long") and r["label"] == 1.0 and r["agreement"] == 1.0 for r in rows)


def test_two_submits_racing_for_one_item_write_one_label(postgres_url, tmp_path):
    from sqlalchemy import create_engine, func, select, text

    from posttrain.annotate import queue
    from posttrain.annotate.items import add_items, create_project, item_rows
    from posttrain.annotate.store import labels, open_engine

    with create_engine(postgres_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("CREATE DATABASE race"))  # this test's own project on the same server
    engine = open_engine(postgres_url.replace("/postgres?", "/race?"))
    create_project(engine, "race", "pairwise", 1, "", {"ana": "annotator"})
    add_items(engine, item_rows([{"prompt": "p", "completions": ["a", "b"]}], "race", "pairwise"))
    shown = queue.next_item(engine, 1, overlap=1)
    barrier, outcomes = threading.Barrier(8), []

    def submit(i):
        barrier.wait()
        try:
            outcomes.append(queue.submit_label(engine, 1, "pairwise", shown.item_id, shown.version, f"s{i % 2}", [0, 1]))
        except queue.QueueError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(labels)).scalar_one() == 1
    label_ids = {o for o in outcomes if o != 409}
    assert len(label_ids) == 1  # every retry of the winning submit_id got its label; the other id got 409
