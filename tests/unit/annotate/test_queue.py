"""The annotation queue in process, on a SQLite file: display order and label order, which rankings are
labels, skip, undo, item versions and progress."""

from __future__ import annotations

from itertools import permutations

import pytest

pytest.importorskip("sqlalchemy", reason="posttrain[annotate] is not installed (fastapi, uvicorn, sqlalchemy)")

from sqlalchemy import select

from posttrain.annotate import queue
from posttrain.annotate.items import add_items, create_project, item_rows
from posttrain.annotate.store import annotators, assignments, database_url, labels, open_engine

PEOPLE = ("ann", "ben", "cat")


@pytest.fixture
def project(tmp_path):
    """project(rows, mode, overlap) -> (engine, {name: annotator id}); engines disposed at teardown."""
    engines = []

    def make(rows: list[dict], mode: str = "pairwise", overlap: int = 1):
        folder = tmp_path / f"project{len(engines)}"
        folder.mkdir()
        engine = open_engine(database_url(str(folder)), must_exist=False)
        engines.append(engine)
        create_project(engine, "test", mode, overlap, "", {name: "annotator" for name in PEOPLE})
        add_items(engine, item_rows(rows, "rows", mode))
        with engine.connect() as conn:
            return engine, dict(conn.execute(select(annotators.c.name, annotators.c.id)).all())

    yield make
    for engine in engines:
        engine.dispose()


def pairs(n: int) -> list[dict]:
    return [{"id": f"q{i}", "prompt": f"prompt {i}", "completions": [f"first {i}", f"second {i}"]} for i in range(n)]


def display_order(engine, item_id: int, annotator_id: int) -> list[int]:
    with engine.connect() as conn:
        return conn.execute(select(assignments.c.display_order).where(
            assignments.c.item_id == item_id, assignments.c.annotator_id == annotator_id)).scalar_one()


def stored_label(engine, label_id: int):
    with engine.connect() as conn:
        return conn.execute(select(labels).where(labels.c.id == label_id)).one()


def test_pairwise_labels_map_back_from_display_order_to_the_items_order(project):
    engine, ids = project(pairs(40))
    seen = set()
    for _ in range(40):
        shown = queue.next_item(engine, ids["ann"], 1)
        order = display_order(engine, shown.item_id, ids["ann"])
        i = shown.item_id - 1
        assert shown.completions == [[f"first {i}", f"second {i}"][j] for j in order]
        label_id = queue.submit_label(engine, ids["ann"], "pairwise", shown.item_id, shown.version, f"s{i}", [0, 1])
        # "the first one shown is better": the completion shown first gets rank 0 in the item's own order
        expected = [0, 1] if order == [0, 1] else [1, 0]
        assert stored_label(engine, label_id).ranking == expected
        seen.add(tuple(order))
    assert seen == {(0, 1), (1, 0)}  # each order is drawn at random (both missing: 2 ** -39)


def test_ranking_display_order_is_a_permutation_and_ranks_map_back(project):
    rows = [{"prompt": f"p{i}", "completions": [f"c{i}-{j}" for j in range(4)]} for i in range(10)]
    engine, ids = project(rows, mode="ranking")
    for n in range(10):
        shown = queue.next_item(engine, ids["ben"], 1)
        order = display_order(engine, shown.item_id, ids["ben"])
        assert sorted(order) == [0, 1, 2, 3]
        assert shown.completions == [f"c{shown.item_id - 1}-{j}" for j in order]
        display_ranks = [2, 0, 3, 1]
        label_id = queue.submit_label(engine, ids["ben"], "ranking", shown.item_id, shown.version, f"s{n}", display_ranks)
        own = stored_label(engine, label_id).ranking
        assert [own[j] for j in order] == display_ranks  # completion order[p] was shown at p and got display_ranks[p]


@pytest.mark.parametrize("ranking", [[0, 1], [1, 0], [0, 0]])
def test_pairwise_accepts_a_better_b_better_and_tie(ranking):
    queue.check_ranking(ranking, 2, "pairwise")


@pytest.mark.parametrize("ranking", [[1, 1], [0, 2], [0], [0, 1, 2], [True, False], [0.0, 1]])
def test_pairwise_refuses_anything_else(ranking):
    with pytest.raises(queue.QueueError) as refused:
        queue.check_ranking(ranking, 2, "pairwise")
    assert refused.value.status == 422


def test_ranking_accepts_exactly_the_permutations():
    for ranking in permutations(range(3)):
        queue.check_ranking(list(ranking), 3, "ranking")
    for bad in ([0, 0, 1], [1, 2, 3], [0, 1], [0, 1, 2, 3], [-1, 0, 1]):
        with pytest.raises(queue.QueueError):
            queue.check_ranking(bad, 3, "ranking")


def test_a_skipped_item_never_comes_back_to_its_skipper_but_goes_to_others(project):
    engine, ids = project(pairs(3))
    skipped = queue.next_item(engine, ids["ann"], 1).item_id
    queue.skip_item(engine, ids["ann"], skipped)
    got = []
    while (shown := queue.next_item(engine, ids["ann"], 1)) is not None:
        got.append(shown.item_id)
        queue.submit_label(engine, ids["ann"], "pairwise", shown.item_id, shown.version, f"a{shown.item_id}", [0, 1])
    assert skipped not in got and len(got) == 2
    assert queue.next_item(engine, ids["ben"], 1).item_id == skipped  # its slot went back to the pool
    with pytest.raises(queue.QueueError) as refused:  # nothing open to skip
        queue.skip_item(engine, ids["ann"], skipped)
    assert refused.value.status == 409


def test_undo_withdraws_the_last_label_keeps_it_and_reopens_its_item(project):
    engine, ids = project(pairs(3))
    given = []
    for n in range(2):
        shown = queue.next_item(engine, ids["ann"], 1)
        given.append((shown.item_id, queue.submit_label(engine, ids["ann"], "pairwise", shown.item_id, shown.version, f"u{n}", [0, 1])))
    assert queue.undo_last(engine, ids["ann"]) == given[-1][0]
    first, last = stored_label(engine, given[0][1]), stored_label(engine, given[1][1])
    assert first.undone_at is None and last.undone_at is not None  # withdrawn, not deleted
    assert queue.next_item(engine, ids["ann"], 1).item_id == given[-1][0]
    assert queue.progress(engine, ids["ann"], 1)["done"] == 1


def test_undo_with_nothing_to_undo_is_refused(project):
    engine, ids = project(pairs(1))
    with pytest.raises(queue.QueueError) as refused:
        queue.undo_last(engine, ids["ann"])
    assert refused.value.status == 409 and "nothing to undo" in str(refused.value)
    assert not queue.can_undo(engine, ids["ann"])


def test_a_changed_item_is_a_new_version_and_a_stale_submit_is_refused(project):
    engine, ids = project(pairs(1))
    labelled = queue.next_item(engine, ids["ann"], 2)
    old_label = queue.submit_label(engine, ids["ann"], "pairwise", labelled.item_id, 1, "old", [0, 1])
    shown = queue.next_item(engine, ids["ben"], 2)
    assert add_items(engine, item_rows([{"id": "q0", "prompt": "prompt 0", "completions": ["first 0", "better 0"]}],
                                       "rows", "pairwise")) == {"added": 0, "updated": 1, "unchanged": 0}
    with pytest.raises(queue.QueueError) as refused:
        queue.submit_label(engine, ids["ben"], "pairwise", shown.item_id, shown.version, "stale", [0, 1])
    assert refused.value.status == 409 and "changed" in str(refused.value)
    again = queue.next_item(engine, ids["ben"], 2)
    assert (again.item_id, again.version) == (shown.item_id, 2) and "better 0" in again.completions
    queue.submit_label(engine, ids["ben"], "pairwise", again.item_id, 2, "fresh", [0, 1])
    # the one who labelled version 1 gets the item back; their old label stays, marked with its version
    assert queue.next_item(engine, ids["ann"], 2).version == 2
    assert stored_label(engine, old_label).item_version == 1 and stored_label(engine, old_label).undone_at is None


def test_progress_counts_done_and_what_each_person_may_still_get(project):
    engine, ids = project(pairs(3))
    ann, ben = ids["ann"], ids["ben"]
    assert queue.progress(engine, ann, 1) == {"done": 0, "left": 3, "total": 3}
    first = queue.next_item(engine, ann, 1)
    assert queue.progress(engine, ann, 1)["left"] == 3  # the open item still counts as left for ann...
    assert queue.progress(engine, ben, 1)["left"] == 2  # ...and is gone for ben (overlap 1)
    queue.submit_label(engine, ann, "pairwise", first.item_id, first.version, "p1", [1, 0])
    assert queue.progress(engine, ann, 1) == {"done": 1, "left": 2, "total": 3}
    queue.skip_item(engine, ann, queue.next_item(engine, ann, 1).item_id)
    assert queue.progress(engine, ann, 1) == {"done": 1, "left": 1, "total": 2}
    assert queue.progress(engine, ben, 1) == {"done": 0, "left": 2, "total": 2}


# An open assignment can carry a label already (withdrawn by undo, or of an earlier item version);
# deleting it (skip, a lapsed lease) keeps that label and clears its link (ON DELETE SET NULL).


def test_an_item_reopened_by_undo_can_be_skipped(project):
    engine, ids = project(pairs(2))
    shown = queue.next_item(engine, ids["ann"], 1)
    queue.submit_label(engine, ids["ann"], "pairwise", shown.item_id, shown.version, "x", [0, 1])
    queue.undo_last(engine, ids["ann"])
    queue.skip_item(engine, ids["ann"], queue.next_item(engine, ids["ann"], 1).item_id)
    assert queue.next_item(engine, ids["ben"], 1).item_id == shown.item_id


def test_a_lapsed_lease_on_an_item_reopened_by_undo_does_not_block_the_others(project):
    engine, ids = project(pairs(2))
    shown = queue.next_item(engine, ids["ann"], 1)
    queue.submit_label(engine, ids["ann"], "pairwise", shown.item_id, shown.version, "x", [0, 1])
    queue.undo_last(engine, ids["ann"])  # ann's item is open again; ann goes to lunch
    assert queue.next_item(engine, ids["ben"], 1, lease_seconds=0) is not None
