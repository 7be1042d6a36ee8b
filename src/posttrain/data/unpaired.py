"""Unpaired feedback (KTO): read, tokenize, give each example a mismatched completion, collate.

An example is {"prompt_ids", "completion_ids", "completion_mask", "label" (bool: desirable),
"row", "kl_completion_ids", "kl_completion_mask"}. The full sequence is prompt_ids +
completion_ids; completion_mask (as long as completion_ids) marks its target tokens.

Preference pairs, rankings and signed rows are converted to unpaired rows first (a pair gives its
chosen completion as desirable and its rejected one as undesirable; data/converters.py).

The mismatched pair (x_i, y'_i) that estimates KTO's reference point z₀ uses the completion of
another example j ≠ i. The pairing is fixed once per data set from a seed (`assign_kl_completions`):
one random cycle through all examples, so every completion serves exactly once as some example's
y', and never with its own prompt when a swap can avoid it. Being fixed per example, the reference
log-probs of the mismatched sequences can be precomputed like the matched ones. (TRL instead
rotates completions by one inside each consecutive block of batch_size rows.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posttrain.data.collate import pad_sequences
from posttrain.data.converters import prepare_records
from posttrain.data.formats import ROW_INDEX, UNPAIRED
from posttrain.data.tokenize import tokenize_example, tokenize_prompt
from posttrain.errors import data_error

_SWAP_WINDOW = 64  # how far to look for a partner swap that avoids a same-prompt mismatched pair


def load_unpaired(tokenizer, records: list[dict], source: str, *, max_length: int, truncation: bool) -> list[dict]:
    """Check the rows read from `source` as unpaired rows (converting pairs, rankings, signed rows) and
    tokenize them. Errors name `source` and the row."""
    records = [{**record, ROW_INDEX: i} for i, record in enumerate(records)]  # errors name the file's row
    rows, _ = prepare_records(records, [UNPAIRED], source)
    examples = []
    for i, row in enumerate(rows):
        index = row.pop(ROW_INDEX, i)
        tokens = tokenize_example(tokenizer, row, max_length=max_length, truncation=truncation, completion_only=True,
                                  source=source, row_index=index)
        prompt_ids = tokenize_prompt(tokenizer, row["prompt"], tools=row.get("tools"), source=source, row_index=index)
        ids, mask = tokens["input_ids"], tokens["completion_mask"]
        if ids[:len(prompt_ids)] != prompt_ids:  # tokenize_example builds prompt + completion; guard the split
            raise data_error(source, index, "prompt", "the tokenized prompt is not a prefix of the tokenized row")
        examples.append({
            "prompt_ids": prompt_ids,
            "completion_ids": ids[len(prompt_ids):],
            "completion_mask": mask[len(prompt_ids):],
            "label": bool(row["label"]),
            "row": index,
        })
    return examples


def assign_kl_completions(examples: list[dict], seed: int, max_length: int | None = None, source: str = "data") -> list[dict]:
    """Give each example the completion of another one (`kl_completion_ids`, `kl_completion_mask`,
    `kl_row`), from one seeded random cycle, avoiding same-prompt pairs where a swap can.
    A mismatched sequence longer than max_length keeps its start. Updates and returns `examples`."""
    n = len(examples)
    if n < 2:
        raise data_error(source, None, None, f"KTO needs at least 2 examples to pair prompts with other completions, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    partner = [0] * n
    for k in range(n):
        partner[order[k]] = order[k - 1]  # one cycle: nobody gets its own completion
    prompt = [tuple(ex["prompt_ids"]) for ex in examples]
    for k, i in enumerate(order):
        if prompt[i] != prompt[partner[i]]:
            continue
        for step in range(1, min(n, _SWAP_WINDOW)):
            j = order[(k + step) % n]
            a, b = partner[i], partner[j]
            if a != j and b != i and prompt[i] != prompt[b] and prompt[j] != prompt[a]:
                partner[i], partner[j] = b, a
                break
    for i, ex in enumerate(examples):
        other = examples[partner[i]]
        keep = len(other["completion_ids"]) if max_length is None else max(0, max_length - len(ex["prompt_ids"]))
        ex["kl_completion_ids"] = other["completion_ids"][:keep]
        ex["kl_completion_mask"] = other["completion_mask"][:keep]
        ex["kl_row"] = other["row"]
    return examples


def collate_unpaired(examples: list[dict], pad_token_id: int, with_kl: bool = True) -> dict:
    """Right-padded batch: input_ids, attention_mask, target_mask (B x W) of the matched sequences,
    the same three with a `kl_` prefix for the mismatched ones (when `with_kl`), label (bool, B),
    and ref_logps / ref_kl_logps when the examples carry them."""
    batch = {}
    sides = [("", "completion")] + ([("kl_", "kl_completion")] if with_kl else [])
    for prefix, key in sides:
        sequences = [ex["prompt_ids"] + ex[f"{key}_ids"] for ex in examples]
        masks = [[0] * len(ex["prompt_ids"]) + list(ex[f"{key}_mask"]) for ex in examples]
        ids, attention, target = pad_sequences(sequences, masks, pad_token_id)
        batch.update({f"{prefix}input_ids": ids, f"{prefix}attention_mask": attention, f"{prefix}target_mask": target})
    batch["label"] = torch.tensor([ex["label"] for ex in examples], dtype=torch.bool)
    batch["num_examples"] = len(examples)
    batch["num_tokens"] = int(batch["attention_mask"].sum()) + (int(batch["kl_attention_mask"].sum()) if with_kl else 0)
    for key in ("ref_logps", "ref_kl_logps"):
        if all(key in ex for ex in examples):
            batch[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
    return batch


def stack_sides(batch: dict, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matched rows then mismatched rows in one (2B x W) batch: (input_ids, attention_mask, target_mask),
    for a reference forward pass that scores both at once."""
    width = max(batch["input_ids"].shape[1], batch["kl_input_ids"].shape[1])

    def both(name: str, value):
        a, b = batch[name], batch[f"kl_{name}"]
        return torch.cat([F.pad(a, (0, width - a.shape[1]), value=value), F.pad(b, (0, width - b.shape[1]), value=value)])

    return both("input_ids", pad_token_id), both("attention_mask", 0), both("target_mask", False)
