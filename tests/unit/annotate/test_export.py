"""Export against hand-computed values: pairwise μ and agreement, Kendall's W, the mean-rank order and
the C(K, 2) preference rows of a ranking; labels go in through the queue, as the app writes them."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy", reason="posttrain[annotate] is not installed (fastapi, uvicorn, sqlalchemy)")

from sqlalchemy import select

from posttrain.annotate import queue
from posttrain.annotate.export import export_rows, kendalls_w, mean_rank_order, pairwise_agreement
from posttrain.annotate.items import add_items, create_project, item_rows
from posttrain.annotate.store import annotators, assignments, database_url, open_engine

PEOPLE = ("ann", "ben", "cat")


@pytest.fixture
def labelled(tmp_path):
    """labelled(completions, own_rankings, mode) -> export_rows(...): one item, labelled by ann, ben, cat
    in turn with the given rankings (in the item's own order)."""
    engines = []

    def make(completions: list[str], own_rankings: list[list[int]], mode: str = "pairwise"):
        folder = tmp_path / f"project{len(engines)}"
        folder.mkdir()
        engine = open_engine(database_url(str(folder)), must_exist=False)
        engines.append(engine)
        create_project(engine, "test", mode, len(PEOPLE), "", {name: "annotator" for name in PEOPLE})
        add_items(engine, item_rows([{"prompt": "Which is better?", "completions": completions}], "rows", mode))
        with engine.connect() as conn:
            ids = dict(conn.execute(select(annotators.c.name, annotators.c.id)).all())
        for name, own in zip(PEOPLE, own_rankings):
            label_in_own_order(engine, ids[name], mode, own)
        return export_rows(engine, mode)

    yield make
    for engine in engines:
        engine.dispose()


def label_in_own_order(engine, annotator_id: int, mode: str, own: list[int], overlap: int = len(PEOPLE)) -> int:
    """Submit `own` (ranks in the item's order) as the page would: translated into this person's display order."""
    shown = queue.next_item(engine, annotator_id, overlap)
    with engine.connect() as conn:
        order = conn.execute(select(assignments.c.display_order).where(
            assignments.c.item_id == shown.item_id, assignments.c.annotator_id == annotator_id)).scalar_one()
    display = [own[order[p]] for p in range(len(own))]
    return queue.submit_label(engine, annotator_id, mode, shown.item_id, shown.version, f"{annotator_id}-{shown.item_id}", display)


FIRST, SECOND, TIE = [0, 1], [1, 0], [0, 0]


def test_two_votes_to_one_give_two_thirds_and_one_agreeing_pair_in_three(labelled):
    preferences, rankings, summary = labelled(["one", "two"], [FIRST, FIRST, SECOND])
    (row,) = preferences
    assert (row["chosen"], row["rejected"]) == ("one", "two")
    assert row["label"] == pytest.approx(2 / 3)  # μ = (1 + 1 + 0) / 3
    assert row["agreement"] == pytest.approx(1 / 3)  # pairs (ann, ben) agree, (ann, cat) and (ben, cat) do not
    assert row["annotators"] == list(PEOPLE) and rankings == [] and summary["exported_items"] == 1


def test_a_majority_for_the_second_puts_it_first(labelled):
    (row,), _, _ = labelled(["one", "two"], [SECOND, FIRST, SECOND])
    assert (row["chosen"], row["rejected"], row["label"]) == ("two", "one", pytest.approx(2 / 3))


def test_a_tie_vote_is_one_half(labelled):
    (row,), _, summary = labelled(["one", "two"], [TIE])
    assert row["label"] == 0.5 and row["agreement"] is None  # one label: no pair to agree
    assert summary["ties"] == 1
    (split,), _, _ = labelled(["one", "two"], [FIRST, SECOND])
    assert split["label"] == 0.5 and split["agreement"] == 0.0


def test_kendalls_w_hand_computed():
    assert kendalls_w([[0, 1, 2]] * 3) == pytest.approx(1.0)
    # reversed, K=3: rank sums (0+2, 1+1, 2+0) = (2, 2, 2) all equal the mean m(K-1)/2 = 2, so S = 0
    assert kendalls_w([[0, 1, 2], [2, 1, 0]]) == pytest.approx(0.0)
    # m=3, K=3, ranks [0,1,2], [0,1,2], [1,0,2]: sums (1, 2, 6), mean 3, S = 4 + 1 + 9 = 14,
    # W = 12 S / (m² (K³ − K)) = 168 / (9 · 24) = 7/9
    assert kendalls_w([[0, 1, 2], [0, 1, 2], [1, 0, 2]]) == pytest.approx(7 / 9)
    assert kendalls_w([[0, 1, 2]]) is None  # one ranking: nothing to agree with


def test_pairwise_agreement_hand_computed():
    assert pairwise_agreement([1.0, 1.0, 0.0]) == pytest.approx(1 / 3)
    assert pairwise_agreement([0.5, 0.5, 0.5, 1.0]) == pytest.approx(0.5)  # 3 of the 6 pairs are the ties
    assert pairwise_agreement([1.0]) is None


def test_mean_rank_order():
    assert mean_rank_order([[0, 1, 2], [0, 1, 2], [1, 0, 2]]) == [0, 1, 2]  # means (1/3, 2/3, 2)
    assert mean_rank_order([[0, 1, 2], [1, 0, 2]]) == [0, 1, 2]  # means (0.5, 0.5, 2): a tie goes by position
    assert mean_rank_order([[2, 0, 1], [2, 1, 0]]) == [2, 0, 1]  # means (2, 0.5, 0.5)


def test_a_ranking_item_exports_its_mean_order_kendalls_w_and_every_pair(labelled):
    preferences, rankings, summary = labelled(["x", "y", "z"], [[0, 1, 2], [0, 1, 2], [1, 0, 2]], mode="ranking")
    (ranking,) = rankings
    assert ranking["ranking"] == [0, 1, 2] and ranking["agreement"] == pytest.approx(7 / 9)
    # C(3, 2) = 3 rows, label = the share of the 3 people ranking chosen above rejected
    assert [(p["chosen"], p["rejected"], p["label"]) for p in preferences] == [
        ("x", "y", pytest.approx(2 / 3)), ("x", "z", 1.0), ("y", "z", 1.0)]
    assert summary["preference_rows"] == 3 and summary["exported_items"] == 1


def test_a_ranking_pair_the_majority_reverses_is_oriented_to_the_winner(labelled):
    preferences, _, _ = labelled(["x", "y", "z"], [[2, 1, 0], [2, 0, 1], [0, 1, 2]], mode="ranking")
    # x above y: only cat, so y is chosen with 2/3; x above z: cat only; y above z: ben and cat
    assert [(p["chosen"], p["rejected"], p["label"]) for p in preferences] == [
        ("y", "x", pytest.approx(2 / 3)), ("z", "x", pytest.approx(2 / 3)), ("y", "z", pytest.approx(2 / 3))]
    assert preferences[0]["agreement"] == pytest.approx(kendalls_w([[2, 1, 0], [2, 0, 1], [0, 1, 2]]))


def test_undone_labels_are_not_exported(tmp_path):
    engine = open_engine(database_url(str(tmp_path)), must_exist=False)
    create_project(engine, "test", "pairwise", 2, "", {"ann": "annotator", "ben": "annotator"})
    add_items(engine, item_rows([{"prompt": "p", "completions": ["one", "two"]}], "rows", "pairwise"))
    label_in_own_order(engine, 1, "pairwise", FIRST, overlap=2)  # ids 1 and 2: ann and ben, in creation order
    label_in_own_order(engine, 2, "pairwise", SECOND, overlap=2)
    queue.undo_last(engine, 2)
    (row,), _, summary = export_rows(engine, "pairwise")
    assert row["label"] == 1.0 and row["labels"] == 1 and summary["labels"] == 1
    engine.dispose()
