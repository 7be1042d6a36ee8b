"""Preference pairs: read, check, tokenize, and collate chosen and rejected into one batch.

A pair example is {"prompt_ids", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask",
"label", "margin", "row"}; `label` is μ = P(chosen ≻ rejected) (1.0 when the data has none; 0.5 is a
tie) and `margin` the optional preference margin (0.0 when absent). Rankings, signed-label rows and
unpaired rows are converted to pairs first (data/converters.py).

`collate_pairs` puts chosen and rejected in one batch, so one forward pass scores both sides: padded,
or packed with each prompt computed once.

Pairs that cannot teach anything — chosen identical to rejected, or an empty side — are an error by
default; `invalid_pairs="drop"` drops them instead and reports how many were dropped.
"""

from __future__ import annotations

import functools
from collections import Counter

import torch

from posttrain.data.collate import TokenTargets, pad_sequences
from posttrain.data.converters import extract_prompt, prepare_records
from posttrain.data.formats import PREFERENCE, ROW_INDEX, is_conversational
from posttrain.data.mapping import map_examples
from posttrain.data.shared_prefix import pack_groups
from posttrain.data.tokenize import tokenize_preference
from posttrain.errors import ConfigError, DataError, data_error

INVALID_PAIR_POLICIES = ("error", "drop")
_IDENTICAL = "identical sides"


def skip_invalid(invalid_pairs: str, dropped: Counter, reason: str, error: Exception) -> bool:
    """An unusable row under the invalid_pairs policy: True (counted under `reason`) with drop, else `error` raised."""
    if invalid_pairs != "drop":
        raise error
    dropped[reason] += 1
    return True


def load_pairs(tokenizer, records: list[dict], source: str, *, max_length: int, truncation: bool,
               invalid_pairs: str = "error", ranking_pairs: str = "all", num_proc: int = 1) -> tuple[list[dict], Counter]:
    """Check the rows read from `source` as preference pairs and tokenize them; returns (examples,
    dropped counts by reason). Errors name `source` and the row. Ranking rows become every pair
    (`ranking_pairs="all"`) or best vs worst (`"best_worst"`, CPO's triplets)."""
    if invalid_pairs not in INVALID_PAIR_POLICIES:
        raise ConfigError(f"invalid_pairs must be one of {INVALID_PAIR_POLICIES}, got {invalid_pairs!r}")
    dropped: Counter = Counter()
    records = [{**record, ROW_INDEX: i} for i, record in enumerate(records)]  # errors name the file's row
    if invalid_pairs == "drop":
        records = _drop_invalid(records, dropped)
    try:
        rows, _ = prepare_records(records, [PREFERENCE], source, ranking_pairs)
    except DataError as e:
        if "is empty" in str(e):  # an empty side: say how to skip such pairs instead
            raise DataError(f"{e}; or set invalid_pairs=drop to skip pairs with an empty side") from None
        raise
    usable = []
    for i, row in enumerate(rows):
        index = row.pop(ROW_INDEX, i)
        row = extract_prompt(row)
        reason, problem = _pair_problem(row) or (None, None)
        if problem and skip_invalid(invalid_pairs, dropped, reason,
                                    data_error(source, index, "rejected", f"{problem}; fix the row, or set invalid_pairs=drop to skip such pairs")):
            continue
        usable.append({**row, ROW_INDEX: index})
    maker = functools.partial(pair_example, tokenizer, max_length=max_length, truncation=truncation, source=source)
    examples = map_examples(maker, usable, num_proc=num_proc) if usable else []
    if not examples:
        raise data_error(source, None, None, f"no usable preference pairs (dropped: {dict(dropped) or 'none'})")
    return examples, dropped


def pair_example(tokenizer, row: dict, *, row_index: int, max_length: int, truncation: bool, source: str) -> dict:
    """One checked pair tokenized, with its label, margin and the file's row number (which the row
    carries: `row_index`, its place among the usable rows, is not what errors should name)."""
    row = dict(row)
    index = row.pop(ROW_INDEX, row_index)
    example = tokenize_preference(tokenizer, row, max_length=max_length, truncation=truncation, source=source, row_index=index)
    label = row.get("label")
    example["label"] = 1.0 if label is None else float(label)
    example["margin"] = float(row.get("margin") or 0.0)
    example["row"] = index
    return example


def _pair_problem(row: dict) -> tuple[str, str] | None:
    """(short reason, message) when a prompt-extracted pair is unusable, else None."""
    chosen, rejected = row["chosen"], row["rejected"]
    if chosen == rejected:
        return _IDENTICAL, "chosen and rejected are identical, so the pair carries no preference"
    for side in (chosen, rejected):
        if is_conversational(side) and side and side[0].get("role") != "assistant":
            role = side[0].get("role")
            return "different prompts", (f"chosen and rejected have different prompts (they first differ at a '{role}' message, "
                    "not at the assistant's reply); give both the same prompt or an explicit 'prompt' column")
    return None


def _drop_invalid(records: list[dict], dropped: Counter) -> list[dict]:
    """Under invalid_pairs=drop: remove rows with an empty side or identical sides, counted."""
    kept = []
    for record in records:
        if "chosen" in record and "rejected" in record:
            if _is_empty(record["chosen"]) or _is_empty(record["rejected"]):
                dropped["empty side"] += 1
                continue
            if record["chosen"] == record["rejected"]:
                dropped[_IDENTICAL] += 1
                continue
        kept.append(record)
    return kept


def _is_empty(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not any(isinstance(m, dict) and str(m.get("content") or "").strip() for m in value)
    return value is None


def collate_pairs(examples: list[dict], pad_token_id: int, packed: bool = False) -> dict:
    """The batch's 2B sequences, chosen_0 .. chosen_{B-1} then rejected_0 .. rejected_{B-1}, with
    label and margin (B), plus ref_chosen_logps / ref_rejected_logps when the examples carry them.

    Padded (default): input_ids, attention_mask, target_mask of shape 2B x W, right padded.
    Packed: each pair as its prompt once, then the rest of chosen and of rejected
    (data/shared_prefix.py, models/shared_prefix_attention.py: attention per sequence, no padding, the prompt computed once), with
    `targets` saying which position predicts which target token of which sequence.
    """
    sequences, masks = [], []
    for side in ("chosen", "rejected"):
        for ex in examples:
            sequences.append(ex["prompt_ids"] + ex[f"{side}_ids"])
            masks.append([0] * len(ex["prompt_ids"]) + list(ex[f"{side}_mask"]))
    batch = _packed(sequences, masks, pad_token_id) if packed else _padded(sequences, masks, pad_token_id)
    batch.update(
        label=torch.tensor([ex["label"] for ex in examples], dtype=torch.float32),
        margin=torch.tensor([ex["margin"] for ex in examples], dtype=torch.float32),
        num_pairs=len(examples),
        num_tokens=sum(map(len, sequences)),
    )
    if all("ref_chosen_logps" in ex for ex in examples):
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            batch[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
    return batch


def _padded(sequences: list[list[int]], masks: list[list[int]], pad_token_id: int) -> dict:
    input_ids, attention_mask, target_mask = pad_sequences(sequences, masks, pad_token_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "target_mask": target_mask}


def _packed(sequences: list[list[int]], masks: list[list[int]], pad_token_id: int) -> dict:
    pairs = len(sequences) // 2
    order = [s for i in range(pairs) for s in (i, pairs + i)]  # groups: (chosen_i, rejected_i)
    layout = pack_groups([[sequences[i], sequences[pairs + i]] for i in range(pairs)], pad_token_id)
    rows, cols, ids, owner = [], [], [], []
    for packed_index, s in enumerate(order):
        seq, mask = sequences[s], masks[s]
        where, row = layout["token_cols"][packed_index], int(layout["rows"][packed_index])
        for t in range(1, len(seq)):
            if mask[t]:  # token t is predicted by the hidden state of token t - 1 of the same sequence
                rows.append(row)
                cols.append(where[t - 1])
                ids.append(seq[t])
                owner.append(s)
    targets = TokenTargets(*(torch.tensor(v, dtype=torch.long) for v in (rows, cols, ids, owner)), len(sequences))
    return {"input_ids": layout["input_ids"], "attention_mask": layout["attention_mask"],
            "position_ids": layout["position_ids"], "prefix_groups": layout["prefix_groups"], "targets": targets}
