"""`posttrain annotate serve` keeps its promises when things go wrong: a server killed mid-traffic loses
no acknowledged label and its people carry on where they were; a submit sent twice at once is one
label; a race for the last slots never goes beyond the overlap; a lapsed lease hands the item on."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

import annotate_servers as kit
from posttrain.annotate.scripted import ApiError, Client

pytestmark = kit.needs_the_app

GONE = (OSError, http.client.HTTPException)  # what urllib raises when the server dies under a request


def submission_for(item: dict, ranking=(0, 1)) -> dict:
    return {"item_id": item["item_id"], "version": item["version"], "submit_id": uuid.uuid4().hex, "ranking": list(ranking)}


def in_threads(work, args_list: list[tuple]) -> list[BaseException]:
    """Run `work(*args)` in one thread per args; the exceptions they raised."""
    errors: list[BaseException] = []

    def guarded(*args):
        try:
            work(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails on it
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def label_all(client: Client, acknowledged: dict[str, int]) -> None:
    """next -> label until this person's queue is empty."""
    while (item := client.call("GET", "/api/next")["item"]) is not None:
        submission = submission_for(item)
        acknowledged[submission["submit_id"]] = client.call("POST", "/api/label", submission)["label_id"]


# ---- (i) SIGKILL mid-traffic ----

@dataclass
class Person:
    name: str
    client: Client
    holds: bool  # stops with an item open (reading it) when asked, instead of labelling on until the kill
    open_item: dict | None = None  # shown by /api/next, no label for it acknowledged yet
    in_flight: dict | None = None  # a label sent whose reply never came
    holding: threading.Event = field(default_factory=threading.Event)


def label_until_the_server_dies(person: Person, acknowledged: dict[str, int], hold: threading.Event) -> None:
    while True:
        try:
            item = person.client.call("GET", "/api/next")["item"]
        except GONE:
            return
        person.open_item = item
        if item is None:
            return
        if person.holds and hold.is_set():
            person.holding.set()
            return
        submission = person.in_flight = submission_for(item)
        try:
            label_id = person.client.call("POST", "/api/label", submission)["label_id"]
        except GONE:
            return
        acknowledged[submission["submit_id"]] = label_id
        person.open_item = person.in_flight = None


def test_a_killed_server_loses_no_acknowledged_label_and_everyone_resumes(tmp_path, annotate_servers):
    items, overlap = 150, 2
    names = ["a0", "a1", "a2", "a3"]
    project, tokens = kit.create_project(tmp_path, items, names, overlap)
    server = annotate_servers(project)
    people = [Person(name, Client(server.url, name, tokens[name]), holds=name in ("a0", "a1")) for name in names]
    acknowledged: dict[str, int] = {}
    hold = threading.Event()
    labelling = threading.Thread(target=lambda: errors.extend(in_threads(
        label_until_the_server_dies, [(p, acknowledged, hold) for p in people])))
    errors: list[BaseException] = []
    labelling.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(acknowledged) < items * overlap / 2:  # a fast machine: stop halfway
        time.sleep(0.05)
    hold.set()  # a0 and a1 stop on an open item; a2 and a3 keep labelling through the kill
    assert all(p.holding.wait(10) for p in people if p.holds), errors
    assert labelling.is_alive(), f"traffic ended before the kill: {errors}"
    server.kill()
    labelling.join(timeout=60)
    assert not errors, errors

    with kit.database(project) as db:
        survived = {submit_id: label_id for label_id, submit_id, _, _ in kit.standing_labels(db)}
    assert {s: survived.get(s) for s in acknowledged} == acknowledged, "an acknowledged label was lost"
    assert len(survived) < items * overlap, "the queue was finished before the kill: nothing was tested"

    server = annotate_servers(project, server.port)  # the same address: the browsers keep their cookies
    for person in people:  # the same Client objects, no new login: sessions live in the database
        if person.in_flight is not None:  # its fate unknown, the page sends it again with the same submit_id
            submit_id = person.in_flight["submit_id"]
            label_id = person.client.call("POST", "/api/label", person.in_flight)["label_id"]
            assert survived.get(submit_id, label_id) == label_id
            acknowledged[submit_id], person.open_item = label_id, None
        if person.open_item is not None:
            assert person.client.call("GET", "/api/next")["item"]["item_id"] == person.open_item["item_id"], person.name
    assert all(p.open_item is not None for p in people if p.holds)

    assert not in_threads(label_all, [(p.client, acknowledged) for p in people])
    progress = people[0].client.call("GET", "/api/next")
    assert progress["item"] is None and progress["progress"]["left"] == 0
    server.stop()
    with kit.database(project) as db:
        labels = {submit_id: label_id for label_id, submit_id, _, _ in kit.standing_labels(db)}
        assert labels == acknowledged and len(labels) == items * overlap
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == items * overlap  # nothing written twice
        assert db.execute("SELECT COUNT(*) FROM assignments WHERE state = 'done'").fetchone()[0] == items * overlap
        kit.check_overlap(db, overlap)


# ---- (ii) the same submission twice at the same moment ----

def send_five_times(tab: Client, submission: dict, start: threading.Barrier, replies: list[int]) -> None:
    start.wait()  # both tabs send at the same moment
    for _ in range(5):
        replies.append(tab.call("POST", "/api/label", submission)["label_id"])


def test_one_submission_sent_twice_at_once_is_one_label(tmp_path, annotate_servers):
    items = 10
    project, tokens = kit.create_project(tmp_path, items, ["ann"], 1)
    server = annotate_servers(project)
    tabs = [Client(server.url, "ann", tokens["ann"]) for _ in range(2)]  # two tabs: two sessions, one person
    for _ in range(items):
        submission = submission_for(tabs[0].call("GET", "/api/next")["item"])
        replies: list[int] = []
        start = threading.Barrier(2)
        assert not in_threads(send_five_times, [(tab, submission, start, replies) for tab in tabs])
        assert len(replies) == 10 and len(set(replies)) == 1, replies
        with pytest.raises(ApiError) as refused:  # a fresh submit_id for the same item is a second label: refused
            tabs[1].call("POST", "/api/label", {**submission, "submit_id": uuid.uuid4().hex})
        assert refused.value.status == 409
    server.stop()
    with kit.database(project) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT submit_id), COUNT(DISTINCT item_id) FROM labels").fetchone() == (items,) * 3


# ---- (iii) eight people race for the slots of twenty items ----

def test_a_race_for_slots_never_goes_beyond_the_overlap(tmp_path, annotate_servers):
    items, overlap = 20, 2
    names = [f"r{i}" for i in range(8)]
    project, tokens = kit.create_project(tmp_path, items, names, overlap)
    server = annotate_servers(project)
    clients = [Client(server.url, name, tokens[name]) for name in names]
    acknowledged: dict[str, int] = {}
    start = threading.Barrier(len(clients))

    def race(client: Client) -> None:
        start.wait()
        label_all(client, acknowledged)

    assert not in_threads(race, [(c,) for c in clients])
    server.stop()
    with kit.database(project) as db:
        kit.check_overlap(db, overlap)
        per_item = db.execute("SELECT item_id, COUNT(DISTINCT annotator_id) FROM labels WHERE undone_at IS NULL "
                              "GROUP BY item_id").fetchall()
        assert sorted(per_item) == [(i, overlap) for i in range(1, items + 1)]  # every item filled, by different people
        assert {s: i for i, s, _, _ in kit.standing_labels(db)} == acknowledged


# ---- (iv) a lapsed lease ----

def test_a_lapsed_lease_hands_the_item_on_and_refuses_the_late_label(tmp_path, annotate_servers):
    project, tokens = kit.create_project(tmp_path, 1, ["a", "b"], 1)
    server = annotate_servers(project, None, "lease_minutes=0.01")  # 0.6 s
    a, b = (Client(server.url, name, tokens[name]) for name in ("a", "b"))
    late = a.call("GET", "/api/next")["item"]
    time.sleep(1)  # a's browser sits idle past the lease
    handed_on = b.call("GET", "/api/next")["item"]
    assert handed_on is not None and handed_on["item_id"] == late["item_id"]
    with pytest.raises(ApiError) as refused:
        a.call("POST", "/api/label", submission_for(late))
    assert refused.value.status == 409 and "handed to someone else" in str(refused.value)
    b_label = b.call("POST", "/api/label", submission_for(handed_on))["label_id"]
    server.stop()
    with kit.database(project) as db:
        assert [(i, name) for i, _, _, name in kit.standing_labels(db)] == [(b_label, "b")]
