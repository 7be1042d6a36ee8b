"""Detect and validate the data formats of DESIGN.md (TRL-compatible column names).

| format              | columns                                                                      |
|---------------------|------------------------------------------------------------------------------|
| `LANGUAGE_MODELING` | `text` (string) or `messages` (conversation)                                 |
| `PROMPT_COMPLETION` | `prompt`, `completion`                                                       |
| `PREFERENCE`        | `prompt` (optional: implicit prompt), `chosen`, `rejected`; optional `label` |
|                     | μ∈[0,1] = P(chosen ≻ rejected) (bool or float, 0.5 = tie), optional `margin` |
| `RANKING`           | `prompt`, `completions` (list of K ≥ 2), `ranking` (see below)               |
| `UNPAIRED`          | `prompt`, `completion`, `label` (bool: True = desirable)                     |
| `PROMPT_ONLY`       | `prompt`, plus any columns a reward function reads (`answer`, `tests`, ...)  |
| `SIGNED_PREFERENCE` | `prompt`, `y_minus`, `y_plus`, `b` ∈ {−1, +1} (seed 000, Definition 2)       |
| `AGENT_STEPS`       | `prompt` (the agent's context), `corrected`, `erroneous` (Agent DPO steps)   |
| `TRAJECTORY_PAIRS`  | `chosen_trajectory`, `rejected_trajectory`: lists of {observation, action,   |
|                     | next_observation} steps; optional `label`, `margin` (a step reward model's)  |

Ranking convention: `ranking[i]` is the RANK of `completions[i]`, 0 = best, so `ranking` is a
permutation of 0..K−1. Example: completions ["ok", "best", "bad"] with ranking [1, 0, 2].

Signed-label convention (seed 000, Def. 2): b = +1 means `y_plus` is preferred over `y_minus`;
b = −1 means `y_minus` is preferred. `SIGNED_PREFERENCE` is an input form only; `converters`
turns it into `PREFERENCE` rows.

`AGENT_STEPS` is an input form (`converters` turns it into `PREFERENCE` rows); `TRAJECTORY_PAIRS`
is what `posttrain rm` trains a step reward model on. Both are described in `agent_rows`.

Every text-like cell is either standard (a string) or conversational (a list of {"role", "content"}
messages); `is_conversational(value)` tells which. A column must use one form across all rows.
"""

from __future__ import annotations

import difflib

from posttrain.data.values import (  # noqa: F401  (is_conversational, ROLES: public here too)
    ROLES,
    check_conversation,
    check_text,
    is_conversational,
    is_number,
    type_name,
)
from posttrain.data.agent_rows import check_step_pair, check_trajectory_pair
from posttrain.errors import DataError, data_error

LANGUAGE_MODELING = "language_modeling"
PROMPT_COMPLETION = "prompt_completion"
PREFERENCE = "preference"
RANKING = "ranking"
UNPAIRED = "unpaired"
PROMPT_ONLY = "prompt_only"
SIGNED_PREFERENCE = "signed_preference"
AGENT_STEPS = "agent_steps"
TRAJECTORY_PAIRS = "trajectory_pairs"

FORMATS = (LANGUAGE_MODELING, PROMPT_COMPLETION, PREFERENCE, RANKING, UNPAIRED, PROMPT_ONLY, SIGNED_PREFERENCE,
           AGENT_STEPS, TRAJECTORY_PAIRS)

# A loader's own column: each row's index in its file, added before validation and carried through
# conversions so an error names the file's row. Never the user's, so never listed back to them.
ROW_INDEX = "__row__"

# Required columns per format (LANGUAGE_MODELING needs `text` OR `messages`; PREFERENCE's prompt is optional).
REQUIRED_COLUMNS = {
    LANGUAGE_MODELING: ("text",),
    PROMPT_COMPLETION: ("prompt", "completion"),
    PREFERENCE: ("chosen", "rejected"),
    RANKING: ("prompt", "completions", "ranking"),
    UNPAIRED: ("prompt", "completion", "label"),
    PROMPT_ONLY: ("prompt",),
    SIGNED_PREFERENCE: ("prompt", "y_minus", "y_plus", "b"),
    AGENT_STEPS: ("prompt", "corrected", "erroneous"),
    TRAJECTORY_PAIRS: ("chosen_trajectory", "rejected_trajectory"),
}

DESCRIPTIONS = {
    LANGUAGE_MODELING: "language-modeling rows ('text' or 'messages')",
    PROMPT_COMPLETION: "prompt-completion rows ('prompt', 'completion')",
    PREFERENCE: "preference rows ('prompt', 'chosen', 'rejected')",
    RANKING: "ranking rows ('prompt', 'completions', 'ranking')",
    UNPAIRED: "unpaired rows ('prompt', 'completion', 'label')",
    PROMPT_ONLY: "prompt-only rows ('prompt' plus reward columns)",
    SIGNED_PREFERENCE: "signed-preference rows ('prompt', 'y_minus', 'y_plus', 'b')",
    AGENT_STEPS: "Agent DPO step rows ('prompt', 'corrected', 'erroneous')",
    TRAJECTORY_PAIRS: "trajectory pairs ('chosen_trajectory', 'rejected_trajectory')",
}

KNOWN_COLUMNS = sorted({c for cols in REQUIRED_COLUMNS.values() for c in cols} | {"messages", "margin"})

# Names people use for our columns, for "rename it" hints.
_ALIASES = {
    "prompt": ("instruction", "input", "question", "query", "context", "x"),
    "completion": ("response", "output", "target", "answer", "y"),
    "chosen": ("preferred", "winner", "positive", "accepted", "y_w", "chosen_response"),
    "rejected": ("dispreferred", "loser", "negative", "y_l", "rejected_response"),
    "messages": ("conversations", "conversation", "dialog", "dialogue", "chat"),
    "text": ("content", "document", "sentence"),
    "completions": ("responses", "outputs", "candidates"),
    "ranking": ("rankings", "ranks", "rank", "order"),
    "label": ("labels", "desirable", "preference"),
}


def detect_row_format(row: dict) -> str | None:
    """The format one row's columns indicate, or None when no known column is present."""
    keys = row.keys()
    if "chosen_trajectory" in keys or "rejected_trajectory" in keys:
        return TRAJECTORY_PAIRS
    if "corrected" in keys or "erroneous" in keys:
        return AGENT_STEPS
    if "completions" in keys or "ranking" in keys:
        return RANKING
    if "y_plus" in keys or "y_minus" in keys:
        return SIGNED_PREFERENCE
    if "chosen" in keys or "rejected" in keys:
        return PREFERENCE
    if "completion" in keys:
        return UNPAIRED if "label" in keys else PROMPT_COMPLETION
    if "messages" in keys or "text" in keys:
        return LANGUAGE_MODELING
    if "prompt" in keys:
        return PROMPT_ONLY
    return None


def detect_format(records: list[dict], source) -> str:
    """The format of all rows; DataError if there are none, if row 0 has no known column, or rows disagree."""
    if not records:
        raise data_error(source, None, None, "no rows; expected at least one")
    first = records[0]
    _check_is_row(first, source, 0)
    fmt = detect_row_format(first)
    if fmt is None:
        raise data_error(source, 0, None, f"no known column: {_unknown_columns_hint(first)}")
    for i, row in enumerate(records[1:], start=1):
        _check_is_row(row, source, i)
        other = detect_row_format(row)
        if other != fmt:
            missing = _missing_columns(fmt, row)
            if missing:
                raise _missing_error(source, i, missing[0], row, f"rows are {DESCRIPTIONS[fmt]} like row 0")
            raise data_error(
                source, i, None,
                f"columns {sorted(user_columns(row))} make this row {DESCRIPTIONS.get(other, 'unrecognized')}, but row 0 is "
                f"{DESCRIPTIONS[fmt]}; use one format for the whole file",
            )
    return fmt


def validate(records: list[dict], expected_formats: list[str] | str, source) -> str:
    """Check every row fits one of `expected_formats` and return the detected format.

    A dataset with a `prompt` column is accepted as PROMPT_ONLY whenever PROMPT_ONLY is expected
    (online methods read only the prompt and the reward columns). Raises DataError naming source,
    row and column on the first problem.
    """
    expected = [expected_formats] if isinstance(expected_formats, str) else list(expected_formats)
    for e in expected:
        if e not in FORMATS:
            raise ValueError(f"unknown format {e!r}; expected one of {FORMATS}")
    fmt = detect_format(records, source)
    if fmt not in expected:
        if PROMPT_ONLY in expected and all("prompt" in row for row in records):
            fmt = PROMPT_ONLY
        else:
            raise _wrong_format_error(records, fmt, expected, source)
    kinds: dict[str, str] = {}
    check = _CHECKS[fmt]
    for i, row in enumerate(records):
        row_kinds = check(row, source, i)
        for column, kind in row_kinds.items():
            if kinds.setdefault(column, kind) != kind:
                raise data_error(
                    source, i, column,
                    f"is {kind} here but {kinds[column]} in earlier rows; use one form (all strings or all "
                    f"message lists) for the whole column",
                )
    return fmt


# ------------------------------------------------------------------------------------ per-format checks


def _check_language_modeling(row, source, i):
    if "messages" in row:
        return {"messages": check_conversation(row["messages"], source, i, "messages")}
    check_text(row.get("text"), source, i, "text", allow_empty=False, allow_conversation=False)
    return {"text": "standard"}


def _check_prompt_completion(row, source, i):
    _require(row, ("prompt", "completion"), source, i, PROMPT_COMPLETION)
    kinds = {
        "prompt": check_text(row["prompt"], source, i, "prompt", allow_empty=True),
        "completion": check_text(row["completion"], source, i, "completion", allow_empty=False, needs_assistant=True),
    }
    _same_kind(kinds, source, i)
    return kinds


def _check_preference(row, source, i):
    _require(row, ("chosen", "rejected"), source, i, PREFERENCE)
    kinds = {}
    if "prompt" in row:
        kinds["prompt"] = check_text(row["prompt"], source, i, "prompt", allow_empty=True)
    for column in ("chosen", "rejected"):
        kinds[column] = check_text(row[column], source, i, column, allow_empty=False, needs_assistant=True)
    _same_kind(kinds, source, i)
    label = row.get("label")
    if label is not None and not isinstance(label, bool):
        if not is_number(label) or not 0.0 <= label <= 1.0:
            raise data_error(
                source, i, "label",
                f"expected P(chosen ≻ rejected) as a bool or a number in [0, 1] (0.5 = tie), got {label!r}",
            )
    margin = row.get("margin")
    if margin is not None and not is_number(margin):
        raise data_error(source, i, "margin", f"expected a finite number, got {type_name(margin)} {margin!r}")
    return kinds


def _check_ranking(row, source, i):
    _require(row, ("prompt", "completions", "ranking"), source, i, RANKING)
    kinds = {"prompt": check_text(row["prompt"], source, i, "prompt", allow_empty=True)}
    completions = row["completions"]
    if not isinstance(completions, list) or len(completions) < 2:
        got = f"{len(completions)} item(s)" if isinstance(completions, list) else type_name(completions)
        raise data_error(source, i, "completions", f"expected a list of K >= 2 completions, got {got}")
    for k, completion in enumerate(completions):
        kind = check_text(completion, source, i, f"completions[{k}]", allow_empty=False, needs_assistant=True)
        if kinds.setdefault("completions", kind) != kind:
            raise data_error(source, i, f"completions[{k}]", "mixes strings and message lists; use one form")
    _same_kind(kinds, source, i)
    ranking = row["ranking"]
    k = len(completions)
    ok = (
        isinstance(ranking, list)
        and all(isinstance(r, int) and not isinstance(r, bool) for r in ranking)
        and sorted(ranking) == list(range(k))
    )
    if not ok:
        raise data_error(
            source, i, "ranking",
            f"expected a permutation of 0..{k - 1} (ranking[i] is the rank of completions[i], 0 = best, "
            f"each rank used once), got {ranking!r}",
        )
    return kinds


def _check_unpaired(row, source, i):
    _require(row, ("prompt", "completion", "label"), source, i, UNPAIRED)
    kinds = _check_prompt_completion(row, source, i)
    label = row["label"]
    if not (isinstance(label, bool) or (isinstance(label, int) and label in (0, 1))):
        raise data_error(
            source, i, "label", f"expected a bool (true = desirable, false = undesirable), got {label!r}"
        )
    return kinds


def _check_prompt_only(row, source, i):
    _require(row, ("prompt",), source, i, PROMPT_ONLY)
    return {"prompt": check_text(row["prompt"], source, i, "prompt", allow_empty=False)}


def _check_signed(row, source, i):
    _require(row, ("prompt", "y_minus", "y_plus", "b"), source, i, SIGNED_PREFERENCE)
    kinds = {"prompt": check_text(row["prompt"], source, i, "prompt", allow_empty=True)}
    for column in ("y_minus", "y_plus"):
        kinds[column] = check_text(row[column], source, i, column, allow_empty=False, needs_assistant=True)
    _same_kind(kinds, source, i)
    b = row["b"]
    if isinstance(b, bool) or not is_number(b) or b not in (-1, 1):
        raise data_error(
            source, i, "b", f"expected -1 or +1 (+1: y_plus preferred, -1: y_minus preferred), got {b!r}"
        )
    return kinds


_CHECKS = {
    LANGUAGE_MODELING: _check_language_modeling,
    PROMPT_COMPLETION: _check_prompt_completion,
    PREFERENCE: _check_preference,
    RANKING: _check_ranking,
    UNPAIRED: _check_unpaired,
    PROMPT_ONLY: _check_prompt_only,
    SIGNED_PREFERENCE: _check_signed,
    AGENT_STEPS: check_step_pair,
    TRAJECTORY_PAIRS: check_trajectory_pair,
}


# ---------------------------------------------------------------------------------------- cell checks


def _same_kind(kinds: dict, source, i) -> None:
    forms = set(kinds.values())
    if len(forms) > 1:
        standard = [c for c, k in kinds.items() if k == "standard"]
        conversational = [c for c, k in kinds.items() if k == "conversational"]
        raise data_error(
            source, i, standard[0],
            f"is a string but {', '.join(repr(c) for c in conversational)} is a message list; "
            "use strings everywhere or message lists everywhere in a row",
        )


def _require(row, columns, source, i, fmt) -> None:
    for column in columns:
        if column not in row:
            raise _missing_error(source, i, column, row, f"expected {DESCRIPTIONS[fmt]}")


def _check_is_row(row, source, i) -> None:
    if not isinstance(row, dict):
        raise data_error(source, i, None, f"expected an object with named columns, got {type_name(row)}")


# ------------------------------------------------------------------------------------------- hints


def user_columns(row: dict) -> list[str]:
    """The row's column names as its file has them (a loader's ROW_INDEX left out)."""
    return [name for name in row if isinstance(name, str) and name != ROW_INDEX]


def _missing_columns(fmt: str, row: dict) -> list[str]:
    if fmt == LANGUAGE_MODELING:
        return [] if ("text" in row or "messages" in row) else ["text"]
    return [c for c in REQUIRED_COLUMNS[fmt] if c not in row]


def _closest(column: str, present: list[str]) -> str:
    """' (found X — did you mean Y?)' style hint for a missing column, or ''."""
    for alias in _ALIASES.get(column, ()):
        if alias in present:
            return f" (found {alias!r} — rename it to {column!r})"
    close = difflib.get_close_matches(column, present, n=1, cutoff=0.6)
    if close:
        return f" (found {close[0]!r} — did you mean {column!r}?)"
    return f" (found columns: {', '.join(sorted(present)) or 'none'})"


def _missing_error(source, i, column, row, context: str) -> DataError:
    return data_error(source, i, column, f"missing column {column!r}{_closest(column, user_columns(row))}; {context}")


def _unknown_columns_hint(row: dict) -> str:
    hints = []
    for name in user_columns(row):
        for known, aliases in _ALIASES.items():
            if name in aliases:
                hints.append(f"rename {name!r} to {known!r}")
                break
        else:
            close = difflib.get_close_matches(name, KNOWN_COLUMNS, n=1, cutoff=0.6)
            if close:
                hints.append(f"{name!r} — did you mean {close[0]!r}?")
    found = ", ".join(repr(c) for c in user_columns(row)) or "none"
    text = f"found {found}; expected one of the formats: " + "; ".join(DESCRIPTIONS[f] for f in FORMATS)
    return text + (f" ({'; '.join(hints)})" if hints else "")


# (from, to) -> name of the converter in posttrain.data.converters
CONVERSIONS = {
    (RANKING, PREFERENCE): "rankings_to_pairs",
    (RANKING, UNPAIRED): "rankings_to_pairs + pairs_to_unpaired",
    (PREFERENCE, UNPAIRED): "pairs_to_unpaired",
    (UNPAIRED, PREFERENCE): "unpaired_to_pairs",
    (SIGNED_PREFERENCE, PREFERENCE): "signed_to_pairs",
    (SIGNED_PREFERENCE, UNPAIRED): "signed_to_pairs + pairs_to_unpaired",
    (AGENT_STEPS, PREFERENCE): "step_pairs_to_pairs",
    (AGENT_STEPS, UNPAIRED): "step_pairs_to_pairs + pairs_to_unpaired",
}


def _wrong_format_error(records, fmt, expected, source) -> DataError:
    wanted = " or ".join(DESCRIPTIONS[e] for e in expected)
    row = records[0]
    for e in expected:
        missing = _missing_columns(e, row)
        present = user_columns(row)
        for m in missing:  # a typo or an alias of a needed column: name it
            if difflib.get_close_matches(m, present, n=1, cutoff=0.6) or any(a in row for a in _ALIASES.get(m, ())):
                return _missing_error(source, 0, m, row, f"expected {wanted}")
    convert = [CONVERSIONS[(fmt, e)] for e in expected if (fmt, e) in CONVERSIONS]
    hint = f"; convert them with posttrain.data.{convert[0]}" if convert else ""
    first_missing = _missing_columns(expected[0], row)
    column = first_missing[0] if first_missing else None
    return data_error(
        source, 0, column, f"the rows are {DESCRIPTIONS[fmt]} but this method needs {wanted}{hint}"
    )
