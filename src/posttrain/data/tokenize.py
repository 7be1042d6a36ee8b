"""Chat templates, tokenization and completion masks.

`completion_mask[t] == 1` means token t is a training target (counts in the loss).

Standard (string) rows:
- `text`: tokenized like `tokenizer(text)` (so bos is added when the tokenizer's post-processor adds it),
  eos appended if missing; every token counts.
- `prompt` + `completion`: prompt ids = `tokenizer(prompt)` (bos as the tokenizer adds it), completion ids
  = the completion tokenized on its own without special tokens, plus eos if the tokenizer has one and the
  completion does not already end with it. The two are concatenated, so the model trains on exactly the
  prompt tokens it sees at inference (no merge across the boundary); prompt tokens 0, completion 1.

Conversational rows go through `tokenizer.apply_chat_template` (rendered to text, then tokenized without
adding special tokens: the template writes its own bos). Assistant masks are exact: for each assistant
turn k, the conversation is rendered up to turn k with the generation prompt (the header
`<|im_start|>assistant\\n` ends there) and up to and including turn k; the tokens in between are the turn's
content plus the tokens that close it (`<|im_end|>`, `<|eot_id|>`): they count, so the model learns to stop.
Whitespace the template writes after the closing special token (ChatML's trailing "\\n") does not count.
Both renders must be token prefixes of the full conversation, else a DataError explains why; the one
exception is special tokens a template writes only at the very end of a conversation (phi-3's final eos,
gpt-oss's `<|return|>`), which are allowed to differ after a non-final turn.

Too long: `truncation=True` keeps the start (cuts the end); `truncation=False` raises DataError. A row with
no target token left raises DataError.
"""

from __future__ import annotations

from posttrain.data.converters import extract_prompt
from posttrain.data.formats import is_conversational
from posttrain.errors import data_error


def render(tokenizer, value, *, add_generation_prompt: bool = False, tools=None, source=None, row_index=None,
           column=None) -> str:
    """A standard string unchanged; a conversation rendered to text with the tokenizer's chat template."""
    if isinstance(value, str):
        return value
    if not getattr(tokenizer, "chat_template", None):
        raise data_error(
            source, row_index, column,
            "is a conversation but the tokenizer has no chat template; set one (tokenizer.chat_template) "
            "or use plain-string columns",
        )
    kwargs = {"tools": tools} if tools else {}
    try:
        return tokenizer.apply_chat_template(
            value, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )
    except Exception as e:  # jinja errors from the template (raise_exception, bad roles, ...)
        raise data_error(source, row_index, column, f"the chat template failed on this conversation: {e}") from None


def tokenize_prompt(tokenizer, prompt, *, tools=None, source=None, row_index=None) -> list[int]:
    """Token ids of a prompt ready for generation (conversations rendered with the generation prompt)."""
    if isinstance(prompt, str):
        return _encode_prompt_text(tokenizer, prompt)
    text = render(tokenizer, prompt, add_generation_prompt=True, tools=tools, source=source, row_index=row_index,
                  column="prompt")
    return _encode(tokenizer, text)


def tokenize_example(tokenizer, row: dict, *, max_length: int | None, truncation: bool, completion_only: bool = True,
                     source=None, row_index=None) -> dict:
    """{"input_ids", "completion_mask"} for a language-modeling, prompt-completion or unpaired row.

    `completion_only=False` makes every token count (for prompt-completion and `messages` rows).
    """
    tools = row.get("tools")
    if "prompt" in row and "completion" in row:
        column = "completion"
        prompt_ids, completion_ids, mask = _prompt_completion(
            tokenizer, row["prompt"], row["completion"], tools, source, row_index, column
        )
        input_ids = prompt_ids + completion_ids
        completion_mask = [1] * len(input_ids) if not completion_only else [0] * len(prompt_ids) + mask
    elif "messages" in row:
        column = "messages"
        messages = row["messages"]
        input_ids = _encode(tokenizer, render(tokenizer, messages, tools=tools, source=source, row_index=row_index,
                                              column=column))
        if completion_only:
            completion_mask = _assistant_mask(tokenizer, messages, input_ids, 0, tools, source, row_index, column)
        else:
            completion_mask = [1] * len(input_ids)
    elif "text" in row:
        column = "text"
        input_ids = _with_eos(tokenizer, _encode(tokenizer, row["text"], add_special_tokens=True))
        completion_mask = [1] * len(input_ids)
    else:
        raise data_error(source, row_index, None,
                         f"cannot tokenize a row with columns {sorted(row)}; expected 'text', 'messages' "
                         "or 'prompt' + 'completion'")
    input_ids, completion_mask = _fit(input_ids, completion_mask, max_length, truncation, source, row_index, column)
    return {"input_ids": input_ids, "completion_mask": completion_mask}


def tokenize_rows(tokenizer, rows: list[dict], *, max_length: int | None, truncation: bool,
                  completion_only: bool = True, source=None) -> list[dict]:
    """`tokenize_example` over rows, with row numbers in errors."""
    return [
        tokenize_example(tokenizer, row, max_length=max_length, truncation=truncation,
                         completion_only=completion_only, source=source, row_index=i)
        for i, row in enumerate(rows)
    ]


def tokenize_preference(tokenizer, row: dict, *, max_length: int | None, truncation: bool, source=None,
                        row_index=None) -> dict:
    """Prompt and both completions of a preference row, with the same boundary logic as prompt-completion.

    Returns {"prompt_ids", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask"}: the full chosen
    sequence is prompt_ids + chosen_ids, and chosen_mask (same length as chosen_ids) marks its target
    tokens (1 except whitespace after the end-of-turn token). Implicit-prompt rows get their prompt
    extracted. Too long: truncation keeps the prompt and cuts the completion's end; else DataError.
    """
    row = extract_prompt(row)
    tools = row.get("tools")
    out = {}
    for side in ("chosen", "rejected"):
        prompt_ids, ids, mask = _prompt_completion(tokenizer, row["prompt"], row[side], tools, source, row_index,
                                                   side)
        if max_length is not None and len(prompt_ids) + len(ids) > max_length:
            if not truncation:
                raise _too_long(source, row_index, side, len(prompt_ids) + len(ids), max_length)
            keep = max(0, max_length - len(prompt_ids))
            ids, mask = ids[:keep], mask[:keep]
        if not any(mask):
            raise _no_targets(source, row_index, side, max_length, len(prompt_ids))
        out["prompt_ids"] = prompt_ids
        out[f"{side}_ids"], out[f"{side}_mask"] = ids, mask
    return out


# ------------------------------------------------------------------------------------------ internals


def _encode(tokenizer, text: str, add_special_tokens: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _encode_prompt_text(tokenizer, prompt: str) -> list[int]:
    """`tokenizer(prompt)` with bos as the tokenizer adds it, minus an eos some post-processors append."""
    ids = _encode(tokenizer, prompt, add_special_tokens=True)
    eos = tokenizer.eos_token_id
    if ids and eos is not None and ids[-1] == eos:
        plain = _encode(tokenizer, prompt)
        if not plain or plain[-1] != eos:
            ids = ids[:-1]
    return ids


def _with_eos(tokenizer, ids: list[int]) -> list[int]:
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids = ids + [eos]
    return ids


def _prompt_completion(tokenizer, prompt, completion, tools, source, row_index, column):
    """(prompt_ids, completion_ids, completion_mask over completion_ids) for one prompt/completion pair."""
    if isinstance(prompt, str) and isinstance(completion, str):
        prompt_ids = _encode_prompt_text(tokenizer, prompt)
        completion_ids = _with_eos(tokenizer, _encode(tokenizer, completion))
        return prompt_ids, completion_ids, [1] * len(completion_ids)
    if not (is_conversational(prompt) and is_conversational(completion)):
        raise data_error(source, row_index, column,
                         "prompt and completion must both be strings or both be message lists")
    prompt_ids = tokenize_prompt(tokenizer, prompt, tools=tools, source=source, row_index=row_index)
    messages = list(prompt) + list(completion)
    full = _encode(tokenizer, render(tokenizer, messages, tools=tools, source=source, row_index=row_index,
                                     column=column))
    if full[: len(prompt_ids)] != prompt_ids:
        raise _not_prefix(tokenizer, prompt_ids, full, source, row_index, column,
                          "the prompt rendered with the generation prompt")
    mask = _assistant_mask(tokenizer, messages, full, len(prompt), tools, source, row_index, column)
    return prompt_ids, full[len(prompt_ids):], mask[len(prompt_ids):]


def _assistant_mask(tokenizer, messages, full, first_turn, tools, source, row_index, column) -> list[int]:
    """1 on the content and closing tokens of every assistant turn at index >= first_turn, else 0."""
    mask = [0] * len(full)
    special = _special_ids(tokenizer)
    for k in range(first_turn, len(messages)):
        if messages[k].get("role") != "assistant":
            continue
        before = _encode(tokenizer, render(tokenizer, messages[:k], add_generation_prompt=True, tools=tools,
                                           source=source, row_index=row_index, column=column)) if k else \
            _render_empty_prefix(tokenizer, tools, source, row_index, column)
        after = _encode(tokenizer, render(tokenizer, messages[: k + 1], tools=tools, source=source,
                                          row_index=row_index, column=column))
        if full[: len(before)] != before:
            raise _not_prefix(tokenizer, before, full, source, row_index, column,
                              f"the conversation before assistant turn {k} plus the generation prompt")
        end = _common_prefix(after, full)
        # A template may close the conversation with tokens it writes only at the very end (phi-3's
        # eos, gpt-oss's <|return|> instead of <|end|>): accept a divergence made of special tokens only.
        tail_ok = all(t in special for t in after[end:])
        if end < len(after) and (not tail_ok or end <= len(before)):
            raise _not_prefix(tokenizer, after, full, source, row_index, column,
                              f"the conversation up to and including assistant turn {k}")
        start, end = len(before), _end_of_turn(tokenizer, full, len(before), end, special)
        for t in range(start, end):
            mask[t] = 1
    return mask


def _render_empty_prefix(tokenizer, tools, source, row_index, column) -> list[int]:
    """Tokens before an assistant turn that opens the conversation (bos + assistant header)."""
    try:
        text = tokenizer.apply_chat_template([], tokenize=False, add_generation_prompt=True,
                                             **({"tools": tools} if tools else {}))
    except Exception:
        raise data_error(source, row_index, column,
                         "starts with an assistant turn, which this chat template cannot render; "
                         "add the user turn it answers") from None
    return _encode(tokenizer, text)


def _special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False):
            ids.add(token_id)
    return ids


def _end_of_turn(tokenizer, ids, start, end, special) -> int:
    """End of an assistant turn's targets: after its last special token when only whitespace follows it."""
    for t in range(end - 1, start - 1, -1):
        if ids[t] in special:
            tail = ids[t + 1: end]
            if not tail or not tokenizer.decode(tail).strip():
                return t + 1
            return end
    return end


def _fit(input_ids, mask, max_length, truncation, source, row_index, column):
    if max_length is not None and len(input_ids) > max_length:
        if not truncation:
            raise _too_long(source, row_index, column, len(input_ids), max_length)
        input_ids, mask = input_ids[:max_length], mask[:max_length]
    if not any(mask):
        raise _no_targets(source, row_index, column, max_length, None)
    return input_ids, mask


def _too_long(source, row_index, column, length, max_length):
    return data_error(source, row_index, column,
                      f"{length} tokens is longer than max_length={max_length}; set truncation=true or raise "
                      "max_length")


def _no_targets(source, row_index, column, max_length, prompt_length):
    if prompt_length is not None and max_length is not None and prompt_length >= max_length:
        why = f"the prompt alone has {prompt_length} tokens, max_length={max_length}; raise max_length"
    elif column == "messages":
        why = "no assistant turn to train on (or it was cut by truncation); add one or set completion_only=false"
    else:
        why = f"no completion token left within max_length={max_length}; raise max_length or shorten the prompt"
    return data_error(source, row_index, column, f"no token counts in the loss: {why}")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _not_prefix(tokenizer, part, full, source, row_index, column, what):
    n = _common_prefix(part, full)
    here, there = tokenizer.decode(part[n:n + 12]), tokenizer.decode(full[n:n + 12])
    return data_error(
        source, row_index, column,
        f"the chat template does not render {what} as a token prefix of the full conversation: after "
        f"{tokenizer.decode(part[max(0, n - 8):n])!r} it writes {here!r} there but {there!r} in the full "
        "conversation (e.g. the template drops earlier <think> blocks or ends the last turn differently), so the "
        "loss mask cannot be placed exactly; use a chat template that renders every turn the same way in every "
        "prefix, or give such rows as prompt/completion with the last assistant turn as the completion",
    )
