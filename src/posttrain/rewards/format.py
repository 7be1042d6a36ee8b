"""The format reward R_fmt of DeepSeek-R1-Zero: reasoning in <think>…</think>, then the answer in
<answer>…</answer>, with penalties for missing tags or the wrong order (seed 000 L795-802: "Penalties
are given if tags are missing or the order is incorrect"; the total reward is eq. 39,
R = R_acc + λ_fmt·R_fmt, which `RewardFunctions` forms from `reward_weights`).
"""

from __future__ import annotations

from typing import Callable

from posttrain.data.values import completion_text
from posttrain.errors import ConfigError


def parse_tags(tags) -> tuple[str, ...]:
    """("think", "answer") from a tuple/list or a string "think,answer", "think|answer" (the form to
    use inside a command-line list, whose commas split the list) or "[think, answer]"."""
    if isinstance(tags, str):
        tags = tags.strip().strip("[]()").replace("|", ",").split(",")
    names = tuple(str(t).strip().strip("<>/") for t in tags)
    if not names or any(not t for t in names):
        raise ConfigError(f"format: tags must name at least one tag, like tags=think,answer; got {tags!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"format: tags {names} repeat a name; give each tag once, like tags=think,answer")
    return names


def format_score(text: str, tags: tuple[str, ...], full: float, missing_penalty: float, order_penalty: float,
                 duplicate_penalty: float, strict: bool, outside_penalty: float, floor: float) -> float:
    """The score of one completion text; see `think_answer_format` for the table."""
    blocks, n_missing, n_duplicated = [], 0, 0
    for tag in tags:
        opening, closing = f"<{tag}>", f"</{tag}>"
        if text.count(opening) > 1 or text.count(closing) > 1:
            n_duplicated += 1
        start = text.find(opening)
        end = text.find(closing, start + len(opening)) if start >= 0 else -1
        if end < 0:
            n_missing += 1
        else:
            blocks.append((start, end + len(closing)))
    # Present blocks, taken in the configured tag order, must follow one another without overlap.
    misordered = any(blocks[i][1] > blocks[i + 1][0] for i in range(len(blocks) - 1))
    outside = False
    if strict:
        rest, previous = [], 0
        for start, end in sorted(blocks):
            rest.append(text[previous:start])
            previous = max(previous, end)
        rest.append(text[previous:])
        outside = any(part.strip() for part in rest)
    score = (full - missing_penalty * n_missing - order_penalty * misordered
             - duplicate_penalty * n_duplicated - outside_penalty * outside)
    return max(floor, score)


def think_answer_format(tags="think,answer", full: float = 1.0, missing_penalty: float = 0.5,
                        order_penalty: float = 0.5, duplicate_penalty: float = 0.25, strict: bool = False,
                        outside_penalty: float = 0.5, floor: float = 0.0) -> Callable:
    """Built-in reward `format`: R_fmt for `<think>…</think><answer>…</answer>` (seed 000 L795).

    For each tag t of `tags` (in order), its block is the first `<t>` and the first `</t>` after it.

        score = max(floor, full − missing_penalty · #missing
                               − order_penalty     · [misordered]
                               − duplicate_penalty · #duplicated
                               − outside_penalty   · [strict and text outside the blocks])

    - missing: t has no block (no `<t>`, or no `</t>` after it); counted per tag.
    - misordered: the blocks that exist, taken in the order of `tags`, are not one after the other
      (a later tag's block opens before the earlier one's closes: wrong order, or nested); once.
    - duplicated: `<t>` or `</t>` occurs more than once; counted per tag.
    - outside (only with `strict=true`): anything but whitespace before, between or after the blocks.
      Without `strict`, text around the blocks is allowed.

    With the defaults (tags think,answer; 1, 0.5, 0.5, 0.25, 0.5, floor 0): the right format 1.0;
    one tag missing 0.5; both missing 0.0; answer before think 0.5; a repeated tag 0.75.
    Matching is exact and case-sensitive. A completion never returns None.
    """
    names = parse_tags(tags)
    numbers = {"full": full, "missing_penalty": missing_penalty, "order_penalty": order_penalty,
               "duplicate_penalty": duplicate_penalty, "outside_penalty": outside_penalty, "floor": floor}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"format: {key} must be a number, got {value!r}")
    if not isinstance(strict, bool):
        raise ConfigError(f"format: strict must be true or false, got {strict!r}")
    settings = dict(tags=names, strict=strict, **{k: float(v) for k, v in numbers.items()})

    def format_reward(prompts=None, completions=(), **kwargs) -> list[float]:
        return [format_score(completion_text(c), **settings) for c in completions]

    format_reward.__name__ = "format"
    penalties = (missing_penalty, order_penalty, duplicate_penalty, outside_penalty)
    if min(penalties) >= 0 and full > floor:  # then full is the best score and floor the worst
        format_reward.reward_range = (float(floor), float(full))
    return format_reward
