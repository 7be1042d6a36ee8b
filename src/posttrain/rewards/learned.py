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

`step_reward:path=DIR` scores an agent's episode with a STEP reward model R_φ(o_t, a_t, o_{t+1})
(`posttrain rm` on ranked trajectory pairs, data/agent_rows.py): the episode's `trajectory` column
(the multi-turn rollout's list of {observation, action, next_observation} steps) gives the steps,
each is scored as in training, and the reward is the return Σ_t R_φ(o_t, a_t, o_{t+1}) (with the
stored offset per step), the quantity the trajectory-level Bradley-Terry loss compared. An episode
whose trajectory cell is None or empty gets None.
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


def reward_input(path: str) -> str | None:
    """What the reward model at `path` scores: "trajectory_step" for a step reward model, else None."""
    import json

    from posttrain.models.reward_model import INPUT_KEY

    config = json.loads((Path(path).expanduser() / "config.json").read_text(encoding="utf-8"))
    return config.get(INPUT_KEY)


def _load_frozen(path: str, device: str, dtype: str, batch_size, clip):
    """(model, tokenizer) of a checked reward model directory, frozen for scoring; options checked."""
    from posttrain.models.loading import WEIGHT_DTYPES, load_tokenizer
    from posttrain.models.sharding import frozen_load_device
    from posttrain.models.reward_model import load_reward_model

    if not isinstance(path, str) or not path:
        raise ConfigError("reward_model needs path=DIR: the final/ directory of a `posttrain rm` run")
    check_choice("reward_model", "dtype", dtype, WEIGHT_DTYPES)
    if int(batch_size) < 1:
        raise ConfigError(f"reward_model: batch_size must be >= 1, got {batch_size}")
    if clip is not None and not float(clip) > 0:
        raise ConfigError(f"reward_model: clip must be a positive number (or left out), got {clip!r}")
    check_reward_model_dir(path)
    tokenizer = load_tokenizer(path)
    model = load_reward_model(path, tokenizer.pad_token_id, dtype=dtype, device=frozen_load_device(device)).eval()
    model.requires_grad_(False)
    return model, tokenizer


def reward_model(path: str, device: str = "cpu", dtype: str = "float32", batch_size: int = 16,
                 normalize: bool = False, clip: float | None = None, offset: bool = True):
    """Score each (prompt, completion) with the reward model at `path` (see the module docstring)."""
    from posttrain.models.reward_model import TRAJECTORY_STEP, score_texts

    model, tokenizer = _load_frozen(path, device, dtype, batch_size, clip)
    if reward_input(path) == TRAJECTORY_STEP:
        raise ConfigError(f"reward_model: {path} is a step reward model (trained on trajectory pairs); "
                          f"score episodes with step_reward:path={path}")
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


def _trajectory_of(value, row: int, column: str) -> list[dict] | None:
    """A trajectory cell (a list of steps, or its JSON text) checked as training checks it; None stays None."""
    import json

    from posttrain.data.agent_rows import check_trajectory
    from posttrain.errors import UserError

    if value is None or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"completion {row}: column '{column}' is not a JSON list of steps") from None
    return check_trajectory(value, "the episode data", row, column, require_action=False)  # a DataError names the row and column


def step_reward(path: str, trajectory_column: str = "trajectory", device: str = "cpu", dtype: str = "float32",
                batch_size: int = 16, offset: bool = True):
    """Registry factory (`step_reward:path=DIR`): an episode's return Σ_t R_φ(o_t, a_t, o_{t+1}) under the step
    reward model at `path`, read from the `trajectory_column` (see the module docstring)."""
    from posttrain.data.agent_rows import step_row
    from posttrain.data.tokenize import tokenize_example
    from posttrain.errors import UserError
    from posttrain.models.reward_model import TRAJECTORY_STEP, score_sequences

    model, tokenizer = _load_frozen(path, device, dtype, batch_size, None)
    if reward_input(path) != TRAJECTORY_STEP:
        raise ConfigError(f"step_reward: {path} was not trained on trajectory pairs; train it with `posttrain rm` on "
                          "chosen_trajectory / rejected_trajectory rows, or score completions with reward_model:path=")

    def score(prompts, completions, **columns) -> list[float | None]:
        if trajectory_column not in columns:
            raise UserError(f"step_reward reads each episode's steps from column '{trajectory_column}', which the data "
                            f"does not have (columns: {', '.join(sorted(columns)) or 'none'}); run it on multi-turn "
                            "episodes (environment=...) or set trajectory_column=NAME")
        episodes = [_trajectory_of(cell, i, trajectory_column) for i, cell in enumerate(columns[trajectory_column])]
        steps = [step for episode in episodes if episode for step in episode]
        seqs = [tokenize_example(tokenizer, step_row(tokenizer, s), max_length=None, truncation=False)["input_ids"] for s in steps]
        rewards = iter(score_sequences(model, seqs, tokenizer.pad_token_id, int(batch_size), bool(offset)))  # with none too (collective)
        return [None if not episode else sum(next(rewards) for _ in episode) for episode in episodes]

    score.model, score.tokenizer = model, tokenizer
    return score
