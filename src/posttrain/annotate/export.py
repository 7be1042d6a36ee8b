"""Labels → the rows `rm` and `dpo` read, with each item's annotator agreement.

Only standing labels of an item's current version count (an undone label, or one given for an
earlier version of the item, is kept in the database but not exported).

Pairwise: a label is a verdict v ∈ {1 (first better), 0.5 (tie), 0}; an item's μ = mean v over
its labels, so ties give μ = 0.5 and a 2-to-1 split 2/3 (seed 002's μ ∈ {0, 0.5, 1}, averaged over
annotators). The row is oriented so `chosen` is the side with μ ≥ 0.5 and `label` = P(chosen ≻ rejected).
Agreement = the share of annotator pairs giving the same verdict (None with one label).

Ranking (K-wise): the item's ranking orders completions by their mean rank over annotators (Borda;
ties by position), and agreement is Kendall's W = 12 S / (m² (K³ − K)) over its m annotators
(1: identical rankings). Its preference rows are all C(K, 2) pairs, label = the share of
annotators ranking `chosen` above `rejected`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from posttrain.annotate.store import annotators, items, labels, reading


def pair_verdict(ranking: list[int]) -> float:
    """1.0 when the first completion ranks above the second, 0.0 below, 0.5 for a tie."""
    return 0.5 if ranking[0] == ranking[1] else float(ranking[0] < ranking[1])


def pairwise_agreement(verdicts: list[float]) -> float | None:
    n = len(verdicts)
    if n < 2:
        return None
    same = sum(c * (c - 1) for c in Counter(verdicts).values())
    return same / (n * (n - 1))


def kendalls_w(rankings: list[list[int]]) -> float | None:
    """Kendall's coefficient of concordance of m rankings of K items (0-based ranks, no ties)."""
    m, k = len(rankings), len(rankings[0])
    if m < 2 or k < 2:
        return None
    sums = [sum(r[j] for r in rankings) for j in range(k)]
    mean = m * (k - 1) / 2
    s = sum((total - mean) ** 2 for total in sums)
    return 12 * s / (m * m * (k ** 3 - k))


def mean_rank_order(rankings: list[list[int]]) -> list[int]:
    """The aggregate ranking (rank of each completion, 0 = best) by mean rank, ties by position."""
    k = len(rankings[0])
    mean = [sum(r[j] for r in rankings) / len(rankings) for j in range(k)]
    order = sorted(range(k), key=lambda j: (mean[j], j))
    ranks = [0] * k
    for rank, j in enumerate(order):
        ranks[j] = rank
    return ranks


def _oriented(prompt, first, second, mu: float, extra: dict) -> dict:
    if mu >= 0.5:
        return {"prompt": prompt, "chosen": first, "rejected": second, "label": mu, **extra}
    return {"prompt": prompt, "chosen": second, "rejected": first, "label": 1.0 - mu, **extra}


def standing_labels(engine: Engine) -> tuple[list[dict], dict[int, list[dict]]]:
    """(every item, its standing labels of the current version with the annotator's name)."""
    with reading(engine) as conn:
        all_items = [dict(row) for row in conn.execute(select(items).order_by(items.c.id)).mappings()]
        names = dict(conn.execute(select(annotators.c.id, annotators.c.name)).all())
        by_item: dict[int, list[dict]] = defaultdict(list)
        for row in conn.execute(select(labels).where(labels.c.undone_at.is_(None)).order_by(labels.c.id)).mappings():
            by_item[row["item_id"]].append({**row, "annotator": names[row["annotator_id"]]})
    current = {item["id"]: item["version"] for item in all_items}
    return all_items, {i: [lab for lab in labs if lab["item_version"] == current[i]] for i, labs in by_item.items()}


def export_rows(engine: Engine, mode: str, min_labels: int = 1) -> tuple[list[dict], list[dict], dict]:
    """(preference rows, ranking rows (ranking mode; [] for pairwise), summary)."""
    all_items, by_item = standing_labels(engine)
    preferences, rankings, agreements = [], [], []
    ties = 0
    for item in all_items:
        labs = by_item.get(item["id"], [])
        if len(labs) < max(min_labels, 1):
            continue
        extra = {"labels": len(labs), "annotators": [lab["annotator"] for lab in labs],
                 "comments": [lab["comment"] for lab in labs if lab["comment"]], "item_id": item["id"], "version": item["version"]}
        prompt, completions = item["prompt"], item["completions"]
        if mode == "pairwise":
            verdicts = [pair_verdict(lab["ranking"]) for lab in labs]
            agreement = pairwise_agreement(verdicts)
            ties += sum(v == 0.5 for v in verdicts)
            mu = sum(verdicts) / len(verdicts)
            preferences.append(_oriented(prompt, completions[0], completions[1], mu, {**extra, "agreement": agreement}))
        else:
            ranks = [lab["ranking"] for lab in labs]
            agreement = kendalls_w(ranks)
            rankings.append({"prompt": prompt, "completions": completions, "ranking": mean_rank_order(ranks),
                             **extra, "agreement": agreement})
            for i, j in combinations(range(len(completions)), 2):
                mu = sum(pair_verdict([r[i], r[j]]) for r in ranks) / len(ranks)
                preferences.append(_oriented(prompt, completions[i], completions[j], mu, {**extra, "agreement": agreement}))
        if agreement is not None:
            agreements.append(agreement)
    summary = {"items": len(all_items), "exported_items": len(rankings) if mode == "ranking" else len(preferences),
               "preference_rows": len(preferences), "labels": sum(len(v) for v in by_item.values()), "ties": ties,
               "agreement_mean": sum(agreements) / len(agreements) if agreements else None,
               "items_with_agreement": len(agreements)}
    return preferences, rankings, summary
