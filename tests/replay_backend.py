"""A rollout backend that replays fixed replies: the generation engine of tests whose trajectories must be
known token by token (tests/unit/agents)."""

from posttrain.generation import GenerationOutput


class Replay:
    """A rollout backend that answers turn t of every context with replies[t] (eos appended unless `cut`)."""

    def __init__(self, tokenizer, replies: list[str], cut: bool = False):
        self.tokenizer, self.replies, self.cut, self.calls = tokenizer, replies, cut, []

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        reply = self.replies[len(self.calls) - 1]
        ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"] + ([] if self.cut else [self.tokenizer.eos_token_id])
        logps = [-0.5] * len(ids)
        n = len(prompts)
        return GenerationOutput(list(range(n)), [ids] * n, [reply] * n, [logps] * n, ["length" if self.cut else "eos"] * n, [logps] * n)

    def sync_weights(self):
        pass
