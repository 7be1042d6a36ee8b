"""Convert rows between the data formats (pure functions on lists of dict rows).

Every converter keeps the columns it does not consume (`answer`, `id`, ...) on each row it makes.

- `rankings_to_pairs`   K-wise rankings -> all C(K,2) preference pairs, each tagged `group` = source row index.
- `rankings_to_best_worst` K-wise rankings -> one pair per row, best vs worst, the middle dropped (CPO's triplets).
- `pairs_to_unpaired`   preference pairs -> 2 unpaired rows each (chosen: label True, rejected: label False).
- `unpaired_to_pairs`   unpaired rows -> preference pairs, desirable vs undesirable of the SAME prompt.
- `signed_to_pairs`     seed 000's (x, y⁻, y⁺, b) rows -> preference pairs; `pairs_to_signed` is the inverse.
- `step_pairs_to_pairs` Agent DPO rows (prompt, corrected, erroneous) -> preference pairs (see `agent_rows`).
- `extract_prompt`      implicit-prompt preference row -> explicit `prompt` + the differing suffixes.
- `prepare_records`     validate, and convert to a wanted format when the data are in a convertible one.

Soft preference labels: a preference row's optional `label` μ is P(chosen ≻ rejected). Converters that
need a hard direction (`pairs_to_unpaired`, `pairs_to_signed`) read μ > 0.5 (or True, or no label) as
"chosen wins", μ < 0.5 (or False) as "rejected wins", and DROP ties (μ = 0.5), which carry no direction.
"""

from __future__ import annotations

import json
from itertools import combinations

from posttrain.data import formats as F
from posttrain.data.agent_rows import step_pairs_to_pairs
from posttrain.errors import data_error


def rankings_to_pairs(rows: list[dict]) -> list[dict]:
    """All C(K,2) (chosen, rejected) pairs of each ranking row, best-ranked first; `group` = source row index.

    `ranking[i]` is the rank of `completions[i]` (0 = best). Pairs of one row come out consecutively,
    ordered by (rank of chosen, rank of rejected). An existing `group` column is overwritten.
    """
    out = []
    for g, row in enumerate(rows):
        extra = _extra(row, ("completions", "ranking"))
        best_first = [c for _, c in sorted(zip(row["ranking"], row["completions"]), key=lambda t: t[0])]
        for a, b in combinations(range(len(best_first)), 2):
            out.append({**extra, "prompt": row["prompt"], "chosen": best_first[a], "rejected": best_first[b], "group": g})
    return out


def rankings_to_best_worst(rows: list[dict]) -> list[dict]:
    """One (chosen, rejected) pair per ranking row: the best-ranked completion against the worst, every
    middle one dropped (CPO's triplets, Xu et al. 2024; seed 003 L3388-3398: of three translations the
    best is chosen, the worst rejected, the middle discarded). `group` = source row index."""
    out = []
    for g, row in enumerate(rows):
        extra = _extra(row, ("completions", "ranking"))
        by_rank = dict(zip(row["ranking"], row["completions"]))
        out.append({**extra, "prompt": row["prompt"], "chosen": by_rank[min(by_rank)], "rejected": by_rank[max(by_rank)], "group": g})
    return out


def pairs_to_unpaired(rows: list[dict]) -> list[dict]:
    """Two unpaired rows per pair: (prompt, chosen, label=True) then (prompt, rejected, label=False).

    Implicit-prompt pairs get their prompt extracted first. A soft `label` μ < 0.5 swaps the roles;
    ties (μ = 0.5) are dropped. `margin` is dropped (it describes the pair, not a completion).
    """
    out = []
    for row in rows:
        direction = _direction(row)
        if direction == 0:
            continue
        row = extract_prompt(row)
        winner, loser = (row["chosen"], row["rejected"]) if direction > 0 else (row["rejected"], row["chosen"])
        extra = _extra(row, ("chosen", "rejected", "label", "margin"))
        out.append({**extra, "prompt": row["prompt"], "completion": winner, "label": True})
        out.append({**extra, "prompt": row["prompt"], "completion": loser, "label": False})
    return out


def unpaired_to_pairs(rows: list[dict]) -> list[dict]:
    """Pair desirable with undesirable completions of the same prompt.

    For a prompt with desirable completions D and undesirable U, it makes max(|D|, |U|) pairs,
    (D[k mod |D|], U[k mod |U|]) for k = 0, 1, ..., so every completion is used at least once and the
    shorter list is reused. Prompts lacking a desirable or an undesirable completion are DROPPED.
    Prompts are compared by value; output follows the first appearance of each prompt, and `group`
    numbers the prompts kept (0, 1, ...). Extra columns come from the desirable row.
    """
    groups: dict[str, tuple[list, list]] = {}
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)
        good, bad = groups.setdefault(key, ([], []))
        (good if row["label"] else bad).append(row)
    out = []
    group = 0
    for good, bad in groups.values():
        if not good or not bad:
            continue
        for k in range(max(len(good), len(bad))):
            g, b = good[k % len(good)], bad[k % len(bad)]
            extra = _extra(g, ("completion", "label"))
            out.append({**extra, "prompt": g["prompt"], "chosen": g["completion"], "rejected": b["completion"],
                        "group": group})
        group += 1
    return out


def signed_to_pairs(rows: list[dict]) -> list[dict]:
    """Seed 000 Def. 2 rows (prompt, y_minus, y_plus, b) -> (prompt, chosen, rejected).

    b = +1: y_plus is preferred (chosen = y_plus, rejected = y_minus);
    b = -1: y_minus is preferred (chosen = y_minus, rejected = y_plus).
    """
    out = []
    for row in rows:
        extra = _extra(row, ("y_minus", "y_plus", "b"))
        if row["b"] > 0:
            chosen, rejected = row["y_plus"], row["y_minus"]
        else:
            chosen, rejected = row["y_minus"], row["y_plus"]
        out.append({**extra, "prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return out


def pairs_to_signed(rows: list[dict]) -> list[dict]:
    """Preference rows -> (prompt, y_minus, y_plus, b): y_plus = chosen, y_minus = rejected, b = +1.

    A soft `label` μ < 0.5 gives b = -1 instead; ties (μ = 0.5) are dropped; `label` is consumed.
    `signed_to_pairs(pairs_to_signed(rows))` gives back the pairs (without `label`).
    """
    out = []
    for row in rows:
        direction = _direction(row)
        if direction == 0:
            continue
        row = extract_prompt(row)
        extra = _extra(row, ("chosen", "rejected", "label"))
        out.append({**extra, "prompt": row["prompt"], "y_minus": row["rejected"], "y_plus": row["chosen"],
                    "b": 1 if direction > 0 else -1})
    return out


def extract_prompt(row: dict) -> dict:
    """Make an implicit-prompt preference row explicit; rows that have a `prompt` come back unchanged.

    Conversational: the prompt is the longest common prefix of messages of `chosen` and `rejected`
    (cut before the first assistant message of the differing part). Standard strings: the longest common
    character prefix, cut back to its last whitespace so no word is split (the completions keep the
    leading space, TRL's convention); "" when there is none.
    """
    if "prompt" in row:
        return row
    chosen, rejected = row["chosen"], row["rejected"]
    if F.is_conversational(chosen) and F.is_conversational(rejected):
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        while n > 0 and chosen[n - 1].get("role") == "assistant":  # the prompt ends before an assistant turn
            n -= 1
        return {**row, "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    n = max((k for k in range(n) if chosen[k].isspace()), default=0)  # start completions at a space
    return {**row, "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


# ------------------------------------------------------------------------------ validate + convert

_CONVERTERS = {
    (F.RANKING, F.PREFERENCE): [rankings_to_pairs],
    (F.RANKING, F.UNPAIRED): [rankings_to_pairs, pairs_to_unpaired],
    (F.PREFERENCE, F.UNPAIRED): [pairs_to_unpaired],
    (F.UNPAIRED, F.PREFERENCE): [unpaired_to_pairs],
    (F.SIGNED_PREFERENCE, F.PREFERENCE): [signed_to_pairs],
    (F.SIGNED_PREFERENCE, F.UNPAIRED): [signed_to_pairs, pairs_to_unpaired],
    (F.AGENT_STEPS, F.PREFERENCE): [step_pairs_to_pairs],
    (F.AGENT_STEPS, F.UNPAIRED): [step_pairs_to_pairs, pairs_to_unpaired],
}


# How a ranking becomes pairs: every C(K,2) pair, or best vs worst only (CPO's triplets).
RANKING_PAIRS = {"all": rankings_to_pairs, "best_worst": rankings_to_best_worst}


def convert(rows: list[dict], from_format: str, to_format: str, ranking_pairs: str = "all") -> list[dict]:
    """Convert validated rows of `from_format` into `to_format` (see the module docstring for the rules)."""
    if from_format == to_format:
        return rows
    if (from_format, to_format) not in _CONVERTERS:
        raise ValueError(f"no conversion from {from_format} to {to_format}")
    for step in _CONVERTERS[(from_format, to_format)]:
        rows = (RANKING_PAIRS[ranking_pairs] if step is rankings_to_pairs else step)(rows)
    return rows


def prepare_records(records: list[dict], expected_formats: list[str] | str, source,
                    ranking_pairs: str = "all") -> tuple[list[dict], str]:
    """Validate `records`; if their format is not expected but converts to one that is, convert them.

    Returns (rows, format). Expected formats are tried in the order given. Raises DataError like
    `formats.validate`, or when a conversion leaves no rows (e.g. unpaired data with no prompt that
    has both a desirable and an undesirable completion).
    """
    expected = [expected_formats] if isinstance(expected_formats, str) else list(expected_formats)
    fmt = F.detect_format(records, source)
    if fmt not in expected and not (F.PROMPT_ONLY in expected and all("prompt" in r for r in records)):
        for target in expected:
            if (fmt, target) in _CONVERTERS:
                F.validate(records, fmt, source)
                rows = convert(records, fmt, target, ranking_pairs)
                if not rows:
                    raise data_error(
                        source, None, None,
                        f"converting {F.DESCRIPTIONS[fmt]} to {F.DESCRIPTIONS[target]} left no rows "
                        "(pairs need a prompt with both a desirable and an undesirable completion; ties are dropped)",
                    )
                return rows, target
    return records, F.validate(records, expected, source)


def _direction(row: dict) -> int:
    """+1 when chosen wins, -1 when rejected wins, 0 for a tie, from the optional soft `label` μ."""
    label = row.get("label")
    if label is None:
        return 1
    if isinstance(label, bool):
        return 1 if label else -1
    return 1 if label > 0.5 else (-1 if label < 0.5 else 0)


def _extra(row: dict, consumed) -> dict:
    return {k: v for k, v in row.items() if k not in consumed}
