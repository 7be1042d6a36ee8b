"""A trained reward model as a reward function: `reward_funcs=[reward_model:path=runs/rm/final]`.

Seed 004 names three kinds of reward signal: rule-based, *discriminative* (a model trained on
preference data that assigns a score to an output) and generative (`judge.py`). This is the
discriminative kind: a causal-LM backbone with a scalar head, r_φ(x, y) = wᵀh_T read at the last
token of the concatenated prompt and completion (seed 003 L815-826, L1650-1668; seed 004 L241),
frozen while it scores (seed 003 L1925). `posttrain rm` trains one; any Hugging Face
`AutoModelForSequenceClassification` directory with `num_labels=1` works too.

The reward model keeps its own tokenizer and chat template, loaded from `path`. The policy's
prompts and completions arrive as text (strings, or message lists in the conversational format)
and are tokenized again here exactly as `posttrain rm` tokenized its training pairs
(`data.tokenize.tokenize_example`), so a reward model whose vocabulary or template differs from the
policy's scores what it was trained on.

Options:
- `offset=true` adds the reward offset `posttrain rm` stored in config.json (InstructGPT's bias that
  makes the reference set's mean reward 0, seed 003 L1697); 0 for a model that has none.
- `normalize=true` standardizes with running statistics over every reward this function has
  returned so far, the current batch included (Welford / Chan's merge; the unbiased std, as TRL's
  RunningMoments): (r − mean) / std. With fewer than two values, or std = 0, the reward is r − mean.
- `clip=c` clips to [−c, c] after normalization (on the raw reward when normalize=false).
"""

from __future__ import annotations

import math
from pathlib import Path

from posttrain.errors import ConfigError
from posttrain.rewards.registry import check_choice


class RunningMoments:
    """Count, mean and M2 (sum of squared deviations) of a stream, merged batch by batch (Chan et al.)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: list[float]) -> None:
        if not values:
            return
        n = len(values)
        batch_mean = sum(values) / n
        batch_m2 = sum((v - batch_mean) ** 2 for v in values)
        total = self.count + n
        delta = batch_mean - self.mean
        self.m2 += batch_m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        """The unbiased (n − 1) standard deviation; 0 for fewer than two values."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def normalize(self, value: float) -> float:
        std = self.std
        return (value - self.mean) / std if std > 0 else value - self.mean


def as_pair(prompt, completion):
    """(prompt, completion) both strings or both message lists, as the tokenizer's templating needs them."""
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt, completion
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    return list(prompt), list(completion)


def check_reward_model_dir(path: str) -> None:
    """A ConfigError unless `path` holds a sequence classifier with one output (not a bare causal LM)."""
    import json

    from posttrain.models.reward_model import REWARD_MODEL_HINT

    if not Path(path).expanduser().exists():
        raise ConfigError(f"reward_model path not found: {path}; {REWARD_MODEL_HINT}")
    config_file = Path(path).expanduser() / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"reward_model: path={path!r} has no config.json; {REWARD_MODEL_HINT}")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    num_labels = len(config["id2label"]) if "id2label" in config else config.get("num_labels", 2)
    if not any(a.endswith("ForSequenceClassification") for a in architectures) or num_labels != 1:
        raise ConfigError(f"reward_model: {path} is not a reward model (architectures {architectures}, "
                          f"{num_labels} labels); train one with `posttrain rm` and point path= at its final/ directory")


def reward_model(path: str, device: str = "cpu", dtype: str = "float32", batch_size: int = 16,
                 normalize: bool = False, clip: float | None = None, offset: bool = True):
    """Score each (prompt, completion) with the reward model at `path` (see the module docstring)."""
    from posttrain.models.loading import WEIGHT_DTYPES, load_tokenizer, resolve_device
    from posttrain.models.reward_model import load_reward_model, score_texts

    if not isinstance(path, str) or not path:
        raise ConfigError("reward_model needs path=DIR: the final/ directory of a `posttrain rm` run")
    check_choice("reward_model", "dtype", dtype, WEIGHT_DTYPES)
    if int(batch_size) < 1:
        raise ConfigError(f"reward_model: batch_size must be >= 1, got {batch_size}")
    if clip is not None and not float(clip) > 0:
        raise ConfigError(f"reward_model: clip must be a positive number (or left out), got {clip!r}")
    check_reward_model_dir(path)
    tokenizer = load_tokenizer(path)
    model = load_reward_model(path, tokenizer.pad_token_id, dtype=dtype, device=resolve_device(device)).eval()
    model.requires_grad_(False)
    moments = RunningMoments()

    def score(prompts, completions, **columns) -> list[float]:
        pairs = [as_pair(p, c) for p, c in zip(prompts, completions)]
        rewards = score_texts(model, tokenizer, [p for p, _ in pairs], [c for _, c in pairs],
                              batch_size=int(batch_size), offset=bool(offset))
        if normalize:
            moments.update(rewards)
            rewards = [moments.normalize(r) for r in rewards]
        if clip is not None:
            rewards = [min(max(r, -float(clip)), float(clip)) for r in rewards]
        return rewards

    score.model, score.tokenizer, score.moments = model, tokenizer, moments
    return score
