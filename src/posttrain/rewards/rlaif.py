"""RLAIF: preference pairs labelled by an AI judge instead of people (seed 003 L2075-2079, L3219-3230).

"RLAIF utilizes an off-the-shelf LLM as a preference labeler": `label_pairs` asks a pairwise judge
(`judge.PairwiseJudge`, position swap on by default) which of two completions of a prompt is better,
and writes TRL preference rows that `posttrain rm`, `posttrain dpo` and the rest read.

    from posttrain.rewards.judge import pairwise_judge
    from posttrain.rewards.rlaif import label_pairs
    judge = pairwise_judge(model="Qwen/Qwen2.5-1.5B-Instruct", method="logprob")
    rows = label_pairs(judge, [{"prompt": p, "completions": [y1, y2]}, ...])
    rows.counts   # {'pairs': 2, 'labelled': 2, 'ties': 0, 'unjudged': 0}

A row gives its two completions as `completions` (a list of two) or as `completion_a` and
`completion_b`; strings or message lists. The judge's P(a ≻ b) decides the row:

- P > 0.5 + min_margin: chosen = a; P < 0.5 − min_margin: chosen = b;
- otherwise a tie (with hard verdicts and position swap: the two orders disagreed). `ties="drop"`
  (the default) leaves it out; `ties="keep"` keeps it with `label` 0.5 (our preference format's tie,
  seed 002 L73-78), which the Bradley–Terry loss and cDPO read and hard-label losses refuse;
- P is None (a verdict could not be parsed): always left out, counted as `unjudged`.

`soft_labels=true` writes `label` = P(chosen ≻ rejected) on every row (the judge's confidence, from
method=logprob) instead of hard labels. Other columns of a row are kept.
"""

from __future__ import annotations

from posttrain.errors import ConfigError, UserError
from posttrain.rewards.registry import check_choice

TIES = ("drop", "keep")


class LabelledPairs(list):
    """The preference rows (a plain list of dicts) with `counts`: pairs, labelled, ties, unjudged."""

    counts: dict[str, int]


def _sides(row: dict, index: int) -> tuple:
    if "completions" in row:
        completions = row["completions"]
        if not isinstance(completions, list) or len(completions) != 2:
            raise UserError(f"rlaif row {index}: 'completions' must hold exactly two completions, got "
                            f"{len(completions) if isinstance(completions, list) else type(completions).__name__}")
        return completions[0], completions[1]
    if "completion_a" in row and "completion_b" in row:
        return row["completion_a"], row["completion_b"]
    raise UserError(f"rlaif row {index}: expected 'prompt' with 'completions' (two) or 'completion_a' and "
                    f"'completion_b', got columns {sorted(row)}")


def label_pairs(judge, rows: list[dict], ties: str = "drop", min_margin: float = 0.0,
                soft_labels: bool = False) -> LabelledPairs:
    """TRL preference rows (`prompt`, `chosen`, `rejected`[, `label`]) from rows of two completions, judged pairwise."""
    check_choice("label_pairs", "ties", ties, TIES)
    if not 0 <= min_margin < 0.5:
        raise ConfigError(f"label_pairs: min_margin must be in [0, 0.5), got {min_margin}")
    for i, row in enumerate(rows):
        if "prompt" not in row:
            raise UserError(f"rlaif row {i}: no 'prompt' column (columns {sorted(row)})")
    sides = [_sides(row, i) for i, row in enumerate(rows)]
    preferences = judge.preferences([row["prompt"] for row in rows], [a for a, _ in sides], [b for _, b in sides])
    out = LabelledPairs()
    counts = {"pairs": len(rows), "labelled": 0, "ties": 0, "unjudged": 0}
    for row, (a, b), p in zip(rows, sides, preferences):
        if p is None:
            counts["unjudged"] += 1
            continue
        extra = {k: v for k, v in row.items() if k not in ("prompt", "completions", "completion_a", "completion_b")}
        if abs(p - 0.5) <= min_margin:
            counts["ties"] += 1
            if ties == "keep":
                out.append({**extra, "prompt": row["prompt"], "chosen": a, "rejected": b, "label": 0.5})
            continue
        chosen, rejected, confidence = (a, b, p) if p > 0.5 else (b, a, 1.0 - p)
        labelled = {**extra, "prompt": row["prompt"], "chosen": chosen, "rejected": rejected}
        if soft_labels:
            labelled["label"] = confidence
        out.append(labelled)
        counts["labelled"] += 1
    out.counts = counts
    return out
