"""When a sequence ends: end-of-sequence token ids and stop strings.

Stop-string convention (the same as vLLM's default): the returned text is cut *before* the
first stop string, so the stop string itself is not in `texts`; `token_ids` and `logprobs` keep
every sampled token up to and including the one that completed the stop string (they are what
the policy actually produced, so an RL loss trains on them). Text a stop string's last token
carries after the stop string is cut too.
"""

from __future__ import annotations


def eos_token_ids(model, tokenizer) -> list[int]:
    """The tokenizer's eos id plus any in the model's generation config, without duplicates."""
    ids: list[int] = []
    candidates = [getattr(tokenizer, "eos_token_id", None)]
    generation_config = getattr(model, "generation_config", None)
    configured = getattr(generation_config, "eos_token_id", None)
    candidates += configured if isinstance(configured, (list, tuple)) else [configured]
    for token_id in candidates:
        if token_id is not None and int(token_id) not in ids:
            ids.append(int(token_id))
    return ids


class StopStringChecker:
    """Finds stop strings in the text of growing token sequences, decoding only their tails.

    A stop string that newly appears must end in the newest token, and spans at most as many
    tokens as it has characters (almost every token decodes to at least one character), so
    decoding the last `len(longest stop) + margin` tokens is enough; one `batch_decode` call per
    step does it for all live sequences.
    """

    def __init__(self, tokenizer, stops: list[str], margin: int = 8):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.window = max((len(s) for s in self.stops), default=0) + margin

    def __bool__(self) -> bool:
        return bool(self.stops)

    def hits(self, sequences: list[list[int]]) -> list[bool]:
        """For each token sequence, whether its decoded tail contains a stop string."""
        if not sequences:
            return []
        tails = self.tokenizer.batch_decode([seq[-self.window :] for seq in sequences], skip_special_tokens=True)
        return [any(stop in tail for stop in self.stops) for tail in tails]


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
