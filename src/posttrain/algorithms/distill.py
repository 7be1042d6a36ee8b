"""Knowledge distillation: a student learns a teacher's next-token distributions on completion tokens.

    posttrain distill teacher=runs/sft/final model=STUDENT dataset=task:arithmetic lmbda=0.5 beta=0.5

Off-policy (`lmbda=0`): the completions are the dataset's; on-policy (`lmbda=1`): the student samples
a completion for each prompt and the teacher scores every token of it; in between, each optimizer
step is on-policy with probability `lmbda` (GKD's λ, Agarwal et al. 2024). The loss per completion
token is the generalized JSD of `beta` at `temperature` (0: forward KL, 1: reverse KL), mixed with
cross-entropy on the dataset's tokens by `hard_weight` (losses/distill.py); its mean over the step's
completion tokens is what the loop minimises.

The teacher may be any size but must share the student's tokenizer (else a ConfigError): the two
distributions are compared token by token. Context distillation (Askell et al. 2021): with
`teacher_system_prompt` the teacher reads each prompt after that system prompt (or constitution)
and the student reads it without, both scoring the same completion tokens; the student learns to
act as if it had been told. Data loading is SFT's tokenization; training is the one loop, with a
step source that swaps in the student's samples on on-policy steps.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from posttrain.config import option
from posttrain.data.collate import IGNORE_INDEX, collate_rows
from posttrain.data.formats import PROMPT_COMPLETION, validate
from posttrain.data.steps import OfflineSource
from posttrain.data.tokenize import tokenize_example, tokenize_prompt
from posttrain.errors import ConfigError
from posttrain.generation import SamplingParams, generate, prompt_seeds
from posttrain.losses.distill import distill_loss, generalized_jsd
from posttrain.losses.sft import count_tokens
from posttrain.models.logprobs import logits_at
from posttrain.online.options import reject_unread
from posttrain.options import TrainOptions, output_dir_option
from posttrain.ranks import launched_world_size
from posttrain.tasks.sources import default_eval_source, load_rows
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train
from posttrain.train.scaffold import check_own_loader, dtype_for, load_model_for, load_tokenizer_for, start_run


@dataclass
class DistillConfig(TrainOptions):
    output_dir: str = output_dir_option("distill")
    teacher: str | None = option("embedded", "The teacher: 'embedded', a trained run's final/ directory or a hub id; any size, the student's tokenizer.")
    lmbda: float = option(0.0, "Share of on-policy steps (GKD's lambda): 0 trains on the dataset's completions, 1 on the student's own samples.")
    beta: float = option(0.5, "Generalized JSD interpolation: 0 = forward KL(teacher||student), 1 = reverse KL(student||teacher).")
    temperature: float = option(1.0, "Softmax temperature of both the teacher's and the student's logits in the divergence.")
    hard_weight: float = option(0.0, "Weight of cross-entropy on the dataset's completion tokens (hard targets); the divergence gets 1 - hard_weight. On-policy steps have no hard targets.")
    teacher_system_prompt: str | None = option(None, "Context distillation: text (or a file holding it) the teacher reads as a system prompt and the student does not.")
    max_new_tokens: int = option(128, "On-policy steps: longest sampled completion in tokens.")
    sample_temperature: float = option(1.0, "On-policy steps: the student's sampling temperature.")
    student_config: dict | None = option(None, "Start the student from random weights: model's config with these keys changed, e.g. {hidden_size: 128, num_hidden_layers: 2} (a student of another size).")

    def validate(self) -> None:
        super().validate()
        if not self.teacher:
            raise ConfigError("distill needs teacher=PATH (a trained run's final/ directory, 'embedded' or a hub id)")
        for key in ("lmbda", "beta", "hard_weight"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"config key '{key}' must be in [0, 1], got {getattr(self, key)}")
        if self.temperature <= 0 or self.sample_temperature < 0 or self.max_new_tokens < 1:
            raise ConfigError("temperature must be > 0, sample_temperature >= 0 and max_new_tokens >= 1")
        if self.student_config is not None and not isinstance(self.student_config, dict):
            raise ConfigError(f"config key 'student_config' must be a mapping of model config keys, e.g. {{hidden_size: 128}}; got {self.student_config!r}")
        if self.lmbda > 0 and launched_world_size() > 1:
            raise ConfigError("on-policy distillation (lmbda > 0) runs on one process; set lmbda=0 or launch one process")
        reject_unread(self)

    def unread(self) -> dict[str, str]:
        """Options this config will not read as set: key -> when it is read."""
        if self.lmbda == 0:
            return {"sample_temperature": "with lmbda > 0 (on-policy steps)"}  # (not max_new_tokens: POSTTRAIN_SMOKE caps it)
        return {"hard_weight": "with lmbda < 1 (off-policy steps have hard targets)"} if self.lmbda == 1 else {}


PRESETS: dict[str, dict] = {
    "kd": {"lmbda": 0.0, "beta": 0.0},  # classic soft-target distillation: forward KL on the data
    "soft_hard": {"lmbda": 0.0, "beta": 0.0, "hard_weight": 0.5},  # soft and hard targets (Llama 4 style)
    "gkd": {"lmbda": 0.5, "beta": 0.5},  # GKD: half the steps on student samples, the JSD
    "on_policy": {"lmbda": 1.0, "beta": 1.0},  # student samples scored by the teacher: reverse KL
}


class Distill(Algorithm):
    """The student's and teacher's logits at the same completion tokens -> distill_loss (a sum; the
    loop divides by the step's completion tokens)."""

    def __init__(self, teacher, tokenizer, config: DistillConfig):
        self.teacher = teacher.eval().requires_grad_(False)  # forward-only, no dropout
        self.tokenizer, self.config, self.student = tokenizer, config, None

    def setup(self, model) -> None:
        self.student = model  # samples on on-policy steps
        sizes = [m.get_output_embeddings().weight.shape[0] for m in (model, self.teacher)]
        if sizes[0] != sizes[1]:
            raise ConfigError(f"the student has {sizes[0]} output logits and teacher={self.config.teacher} {sizes[1]}; "
                              "distillation compares them token by token, so both heads need the tokenizer's size")

    def collate(self, items: list[dict]) -> dict:
        def rows(prompt_key):
            return [[{"input_ids": it[prompt_key] + it["completion_ids"],
                      "completion_mask": [0] * len(it[prompt_key]) + it["completion_mask"]}] for it in items]
        student, teacher = collate_rows(rows("prompt_ids"), self.tokenizer.pad_token_id), collate_rows(rows("teacher_prompt_ids"), self.tokenizer.pad_token_id)
        return {**student, "teacher_input_ids": teacher["input_ids"], "teacher_position_ids": teacher["position_ids"],
                "teacher_labels": teacher["labels"], "hard": not any(it.get("sampled") for it in items)}

    def batch_weight(self, batch: dict) -> float:
        return count_tokens(batch["labels"])

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        select = batch["labels"] != IGNORE_INDEX
        logits = logits_at(model, select, input_ids=batch["input_ids"], position_ids=batch["position_ids"])
        with torch.no_grad():
            self.teacher.to(logits.device)  # follows the student (a no-op after the first batch)
            teacher_logits = logits_at(self.teacher, batch["teacher_labels"] != IGNORE_INDEX,
                                       input_ids=batch["teacher_input_ids"], position_ids=batch["teacher_position_ids"])
        labels, c = batch["labels"][select], self.config
        loss, divergence = distill_loss(logits, teacher_logits, labels, beta=c.beta, temperature=c.temperature,
                                        hard_weight=c.hard_weight if batch["hard"] else 0.0)
        with torch.no_grad():
            kl = generalized_jsd(logits, teacher_logits, 0.0).sum()  # KL(teacher || student) at T = 1, whatever beta
            ce = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        return loss, {"divergence": divergence.sum().detach(), "kl": kl, "ce": ce}

    def sample(self, items: list[dict], keys: list[int]) -> list[dict]:
        """The items with the student's samples as completions (one seed per key: reproducible on resume)."""
        params = SamplingParams(max_new_tokens=self.config.max_new_tokens, temperature=self.config.sample_temperature,
                                seeds=prompt_seeds(self.config.seed, keys))
        out = generate(self.student, self.tokenizer, [it["prompt_ids"] for it in items], params)
        return [{**it, "completion_ids": ids, "completion_mask": [1] * len(ids), "sampled": True} for it, ids in zip(items, out.token_ids)]


class DistillSource(OfflineSource):
    """The dataset in OfflineSource's order; a step is on-policy with probability lmbda (drawn from
    (seed, step), so a resumed run draws the same), and then its completions are the student's samples."""

    def __init__(self, items: list[dict], algorithm: Distill, config: DistillConfig):
        super().__init__(items, self.collate_step, config.batch_size, config.gradient_accumulation_steps, config.seed)
        self.algorithm, self.lmbda, self.step, self.on_policy = algorithm, config.lmbda, 0, False

    def next_step(self, step: int) -> list[dict]:
        self.step, self.on_policy = step, random.Random(prompt_seeds(self.seed, [step])[0]).random() < self.lmbda
        return super().next_step(step)

    def collate_step(self, items: list[dict]) -> dict:
        if self.on_policy:
            items = self.algorithm.sample(items, [self.step * len(self.items) + it["index"] for it in items])
        return self.algorithm.collate(items)

    def metrics(self) -> dict[str, float]:
        return {"on_policy": float(self.on_policy)}


def with_system_prompt(prompt, system: str):
    """The teacher's prompt: `system` as (the start of) the system turn, or before a plain-text prompt."""
    if isinstance(prompt, str):
        return f"{system}\n\n{prompt}"
    if prompt and prompt[0].get("role") == "system":
        return [{**prompt[0], "content": f"{system}\n\n{prompt[0]['content']}"}] + list(prompt[1:])
    return [{"role": "system", "content": system}] + list(prompt)


def load_items(tokenizer, source: str, split: str | None, config: DistillConfig, system: str | None) -> list[dict]:
    """Prompt-completion rows -> {"prompt_ids", "teacher_prompt_ids", "completion_ids", "completion_mask", "index"}:
    SFT's tokenization, with the prompt's tokens split off (and rendered again with the system prompt)."""
    rows = load_rows(source, split, options=config)
    validate(rows, [PROMPT_COMPLETION], source)
    items = []
    for i, row in enumerate(rows):
        ex = tokenize_example(tokenizer, row, max_length=config.max_length, truncation=config.truncation, source=source, row_index=i)
        prompt_ids = tokenize_prompt(tokenizer, row["prompt"], tools=row.get("tools"), source=source, row_index=i)
        teacher_ids = prompt_ids if system is None else tokenize_prompt(
            tokenizer, with_system_prompt(row["prompt"], system), tools=row.get("tools"), source=source, row_index=i)
        n = len(prompt_ids)
        items.append({"index": i, "prompt_ids": prompt_ids, "teacher_prompt_ids": teacher_ids,
                      "completion_ids": ex["input_ids"][n:], "completion_mask": ex["completion_mask"][n:]})
    return items


def load_teacher(config: DistillConfig, tokenizer):
    """The teacher on the CPU; a ConfigError unless its tokenizer is the student's (same tokens, same ids)."""
    theirs = load_tokenizer_for(config, config.teacher, option="teacher")
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(f"teacher={config.teacher} has another tokenizer than model={config.model} ({len(theirs)} vs "
                          f"{len(tokenizer)} tokens); distillation compares next-token distributions, so use a teacher "
                          "and student with the same tokenizer")
    return load_model_for(config, config.teacher, device="cpu", option="teacher")


def read_system_prompt(value: str | None) -> str | None:
    """teacher_system_prompt: the text itself, or the contents of the file it names."""
    if value is None:
        return None
    path = Path(value)
    return path.read_text(encoding="utf-8").strip() if len(value) < 4096 and path.is_file() else value


def build_student(config: DistillConfig):
    """The student on the CPU: `model` as saved, or (student_config) a random-init model of its config
    with those keys changed; the loop seeds torch first, so the init is the seed's."""
    if config.student_config is None:
        return load_model_for(config, device="cpu")
    from transformers import AutoConfig, AutoModelForCausalLM

    from posttrain.models.loading import DTYPES, resolve_model_path

    check_own_loader(config, "with student_config (a randomly initialised student)")
    model_config = AutoConfig.from_pretrained(resolve_model_path(config.model), trust_remote_code=config.trust_remote_code)
    for key, value in config.student_config.items():
        if not hasattr(model_config, key):
            raise ConfigError(f"student_config: {type(model_config).__name__} has no key '{key}'")
        setattr(model_config, key, value)
    return AutoModelForCausalLM.from_config(model_config, dtype=DTYPES[dtype_for(config)], trust_remote_code=config.trust_remote_code,
                                             attn_implementation=config.attn_implementation)


def run_distill(config: DistillConfig) -> dict:
    """Distill `teacher` into `model`; train, evaluate (held-out divergence and KL) and save to output_dir."""
    if config.eval_dataset is None:
        config = dataclasses.replace(config, eval_dataset=default_eval_source(config.dataset))
    _, tokenizer = start_run(config)
    teacher = load_teacher(config, tokenizer)
    system = read_system_prompt(config.teacher_system_prompt)
    items = load_items(tokenizer, config.dataset, config.dataset_split, config, system)
    eval_items = load_items(tokenizer, config.eval_dataset, None, config, system) if config.eval_dataset else []
    algorithm = Distill(teacher, tokenizer, config)
    source = DistillSource(items, algorithm, config)
    try:
        return train(config, build_model=lambda: build_student(config), tokenizer=tokenizer,
                     algorithm=algorithm, source=source, eval_items=eval_items)
    finally:
        distributed.cleanup()
