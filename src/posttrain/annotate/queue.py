"""Who labels what: each annotator's queue, labels written once, skip and undo.

An annotator is handed one item at a time (`next_item`), the same one until it is labelled or
skipped. Handing out an item claims one of its `overlap` slots; items already started are handed
out first, so items fill to their overlap before new ones open. A claim not labelled within
`lease_seconds` lapses and its slot goes to someone else (a browser left open over lunch must not
hold an item forever); the late submit is then refused with a line saying so.

Completions are shown in a fresh random order per assignment (position bias is the best-known
labelling bias); a label is stored in the item's own order.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from posttrain.annotate.store import assignments, completion_text, items, labels, prompt_text, reading, skips, writing

LEASE_SECONDS = 1800
MAX_COMMENT = 2000
_shuffle = random.SystemRandom()


class QueueError(Exception):
    """A request the queue refuses; `status` is the HTTP status the app answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Retry(Exception):
    """A row changed under a concurrent transaction (other databases than SQLite)."""


@dataclass
class Shown:
    """An item as one annotator sees it."""

    item_id: int
    version: int
    prompt: str
    completions: list[str]

    def as_json(self) -> dict:
        return {"item_id": self.item_id, "version": self.version, "prompt": self.prompt, "completions": self.completions}


def now() -> datetime:
    """UTC without a zone: what SQLite stores and returns, compared the same way on PostgreSQL."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _shown(conn, assignment) -> Shown:
    item = conn.execute(select(items).where(items.c.id == assignment.item_id)).mappings().one()
    order = assignment.display_order
    return Shown(item["id"], item["version"], prompt_text(item["prompt"]),
                 [completion_text(item["completions"][i]) for i in order])


def next_item(engine: Engine, annotator_id: int, overlap: int, lease_seconds: float = LEASE_SECONDS) -> Shown | None:
    """The annotator's open item, or a newly claimed one; None when nothing is left for them."""
    for attempt in range(20):  # a lost race for a slot (another database than SQLite) is retried
        if attempt:
            time.sleep(_shuffle.uniform(0, 0.01 * attempt))
        try:
            with writing(engine) as conn:
                mine = conn.execute(select(assignments).where(assignments.c.annotator_id == annotator_id,
                                                              assignments.c.state == "open").order_by(assignments.c.id)).first()
                if mine is not None:
                    conn.execute(update(assignments).where(assignments.c.id == mine.id).values(leased_at=now()))
                    return _shown(conn, mine)
                conn.execute(delete(assignments).where(assignments.c.state == "open", assignments.c.annotator_id != annotator_id,
                                                       assignments.c.leased_at < now() - timedelta(seconds=lease_seconds)))
                candidate = _candidate(conn, annotator_id, overlap)
                if candidate is None:
                    return None
                used = set(conn.execute(select(assignments.c.slot).where(assignments.c.item_id == candidate)).scalars())
                free = set(range(overlap)) - used
                if not free:  # filled since the query above (PostgreSQL reads each statement's own snapshot)
                    raise _Retry()
                slot = min(free)
                k = len(conn.execute(select(items.c.completions).where(items.c.id == candidate)).scalar_one())
                result = conn.execute(insert(assignments).values(
                    item_id=candidate, annotator_id=annotator_id, slot=slot, display_order=_shuffle.sample(range(k), k),
                    state="open", leased_at=now()))
                claimed = conn.execute(select(assignments).where(assignments.c.id == result.inserted_primary_key[0])).one()
                return _shown(conn, claimed)
        except (IntegrityError, _Retry):
            continue
    raise QueueError(503, "the queue is busy; try again")


def _candidate(conn, annotator_id: int, overlap: int) -> int | None:
    """The item to claim: one already started (the most claimed first, so items fill up before new
    ones open), else the first untouched one. Both read only what has been handed out (an index walk
    for the second), so the cost does not grow with the project's size."""
    not_mine = ~assignments.c.item_id.in_(select(assignments.c.item_id).where(assignments.c.annotator_id == annotator_id)
                                           .scalar_subquery())
    not_skipped = ~assignments.c.item_id.in_(_skipped_by(annotator_id))
    taken = func.count()
    started = conn.execute(select(assignments.c.item_id).where(not_mine, not_skipped).group_by(assignments.c.item_id)
                           .having(taken < overlap).order_by(taken.desc(), assignments.c.item_id).limit(1)).scalar()
    if started is not None:
        return started
    untouched = ~exists().where(assignments.c.item_id == items.c.id)
    return conn.execute(select(items.c.id).where(untouched, ~items.c.id.in_(_skipped_by(annotator_id)))
                        .order_by(items.c.id).limit(1)).scalar()


def _skipped_by(annotator_id: int):
    return select(skips.c.item_id).where(skips.c.annotator_id == annotator_id).scalar_subquery()


def check_ranking(ranking: list[int], k: int, mode: str) -> None:
    """A QueueError (422) unless `ranking` is a valid label for K completions in `mode`."""
    if len(ranking) != k or any(not isinstance(r, int) or isinstance(r, bool) for r in ranking):
        raise QueueError(422, f"ranking must list {k} integer ranks, one per completion, got {ranking!r}")
    if mode == "pairwise":
        if sorted(ranking) not in ([0, 1], [0, 0]):
            raise QueueError(422, f"a pairwise label is [0, 1] (A better), [1, 0] (B better) or [0, 0] (tie), got {ranking!r}")
    elif sorted(ranking) != list(range(k)):
        raise QueueError(422, f"a ranking is a permutation of 0..{k - 1} (0 = best), got {ranking!r}")


def submit_label(engine: Engine, annotator_id: int, mode: str, item_id: int, version: int, submit_id: str,
                 ranking: list[int], comment: str = "") -> int:
    """Store a label given in the annotator's display order; returns its id. A repeated submit_id
    returns the first label's id and writes nothing."""
    if not 1 <= len(submit_id) <= 64:
        raise QueueError(422, "submit_id must be 1 to 64 characters")
    if len(comment) > MAX_COMMENT:
        raise QueueError(422, f"the comment is {len(comment)} characters; the limit is {MAX_COMMENT}")
    try:
        with writing(engine) as conn:
            earlier = conn.execute(select(labels).where(labels.c.submit_id == submit_id)).first()
            if earlier is not None:
                if earlier.annotator_id != annotator_id or earlier.item_id != item_id:
                    raise QueueError(409, "this submit_id belongs to another label; send a fresh one")
                return earlier.id
            mine = conn.execute(select(assignments).where(assignments.c.item_id == item_id,
                                                          assignments.c.annotator_id == annotator_id)).first()
            if mine is None or mine.state != "open":
                raise QueueError(409, "this item is not in your queue any more (labelled already, or handed to someone "
                                      "else after a long pause); load the next item")
            item = conn.execute(select(items.c.version, items.c.completions).where(items.c.id == item_id)).one()
            if item.version != version:
                raise QueueError(409, f"this item changed since it was shown (now version {item.version}); reload it")
            k = len(item.completions)
            check_ranking(ranking, k, mode)
            own_order = [0] * k
            for position, index in enumerate(mine.display_order):
                own_order[index] = ranking[position]
            # Claim the assignment first: on PostgreSQL a concurrent submit for it waits on this row
            # and then finds it done, so one assignment never gets two labels.
            claimed = conn.execute(update(assignments).where(assignments.c.id == mine.id, assignments.c.state == "open")
                                   .values(state="done"))
            if claimed.rowcount != 1:
                raise _Retry()
            result = conn.execute(insert(labels).values(
                submit_id=submit_id, assignment_id=mine.id, item_id=item_id, annotator_id=annotator_id, item_version=version,
                ranking=own_order, comment=comment, created_at=now()))
            return result.inserted_primary_key[0]
    except (IntegrityError, _Retry):  # a concurrent submit won: the same submit_id (a retry) gets its label
        with reading(engine) as conn:
            earlier = conn.execute(select(labels).where(labels.c.submit_id == submit_id)).first()
        if earlier is None or earlier.annotator_id != annotator_id:
            raise QueueError(409, "this item was labelled by another request at the same moment; load the next item") from None
        return earlier.id


def skip_item(engine: Engine, annotator_id: int, item_id: int) -> None:
    """Leave an open item: its slot goes back to the pool, and this annotator never gets it again."""
    with writing(engine) as conn:
        gone = conn.execute(delete(assignments).where(assignments.c.item_id == item_id, assignments.c.annotator_id == annotator_id,
                                                      assignments.c.state == "open"))
        if gone.rowcount != 1:
            raise QueueError(409, "this item is not open in your queue; load the next item")
        conn.execute(insert(skips).values(item_id=item_id, annotator_id=annotator_id, skipped_at=now()))


def undo_last(engine: Engine, annotator_id: int) -> int:
    """Withdraw the annotator's newest label (kept, marked undone) and reopen its item for them."""
    with writing(engine) as conn:
        last = conn.execute(_undoable(annotator_id)).first()
        if last is None:
            raise QueueError(409, "nothing to undo")
        withdrawn = conn.execute(update(labels).where(labels.c.id == last.id, labels.c.undone_at.is_(None)).values(undone_at=now()))
        if withdrawn.rowcount != 1:
            raise QueueError(409, "that label was withdrawn by another request at the same moment")
        conn.execute(update(assignments).where(assignments.c.id == last.assignment_id).values(state="open", leased_at=now()))
        return last.item_id


def progress(engine: Engine, annotator_id: int, overlap: int) -> dict:
    """{'done': labels standing, 'left': items this annotator may still get (the open one too), 'total'}.

    left = items − those they labelled − those they skipped − those others filled to the overlap (three
    disjoint sets: a skip frees the slot, a filled item has no slot for them); each is counted from
    what has been handed out, not by scanning every item."""
    with reading(engine) as conn:
        done = conn.execute(select(func.count()).select_from(labels).where(
            labels.c.annotator_id == annotator_id, labels.c.undone_at.is_(None))).scalar_one()
        every = conn.execute(select(func.count()).select_from(items)).scalar_one()
        labelled = conn.execute(select(func.count()).select_from(assignments).where(
            assignments.c.annotator_id == annotator_id, assignments.c.state == "done")).scalar_one()
        skipped = conn.execute(select(func.count()).select_from(skips).where(skips.c.annotator_id == annotator_id)).scalar_one()
        filled = (select(assignments.c.item_id).where(assignments.c.annotator_id != annotator_id,
                                                       ~assignments.c.item_id.in_(_skipped_by(annotator_id)))
                  .group_by(assignments.c.item_id).having(func.count() >= overlap).subquery())
        full = conn.execute(select(func.count()).select_from(filled)).scalar_one()
    left = every - labelled - skipped - full
    return {"done": done, "left": left, "total": done + left}


def _undoable(annotator_id: int):
    """The annotator's newest standing label of its item's current version (an older version's label
    is history, not something to take back)."""
    return (select(labels).join(items, items.c.id == labels.c.item_id)
            .where(labels.c.annotator_id == annotator_id, labels.c.undone_at.is_(None),
                   labels.c.item_version == items.c.version, labels.c.assignment_id.is_not(None))
            .order_by(labels.c.id.desc()).limit(1))


def can_undo(engine: Engine, annotator_id: int) -> bool:
    with reading(engine) as conn:
        return conn.execute(_undoable(annotator_id)).first() is not None
