"""Constitutional AI, supervised stage: sample, self-critique against principles, revise, SFT.

    posttrain constitution model=embedded dataset=task:sentiment prompts=32 revisions=1 max_steps=20

Constitutional AI (Bai et al. 2022): the only human oversight is a list of principles, the
"constitution". In the supervised phase one samples from an initial model, has it critique and
revise its own responses, each critique steered by a principle drawn from the constitution, and
fine-tunes the original model on the revised responses.

For each of `prompts` prompts (drawn with `seed` from `dataset`):

1. sample a response y_0 from the model (temperature, `max_new_tokens`);
2. for round r = 1..`revisions`: draw a principle p_r uniformly at random from the constitution
   (seeded; one random draw per critique-revision step, as in the paper), ask the *same* model
   (or `critic_model`) for a critique c_r of y_{r-1} with the critique template, then for a revision y_r with the revision template
   (which holds y_{r-1}, p_r and c_r);
3. fine-tune the original model with SFT on the pairs (prompt, y_revisions) into `output_dir/sft/`;
   `output_dir/final/` is that model.

`revisions.jsonl` keeps, per prompt: the prompt, y_0, the principles, the exact critique and
revision requests, the critiques, the revisions and the final text. `resume=true` (what a pipeline
sets for a crashed stage) reuses complete generations and resumes the SFT run's checkpoints. Templates and principles are
in `posttrain.methods.critique`; `principles=`, `critique_template=`, `revision_template=` replace them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import posttrain.ranks as ranks
from posttrain.config import build_config, option
from posttrain.data.sources import draw_rows, write_jsonl
from posttrain.errors import ConfigError, UserError
from posttrain.methods import critique as cq
from posttrain.options import GenerationBatchOptions, SamplingOptions, TopPSamplingOptions, TrainOptions, restate
from posttrain.train.rundir import atomic_dir, check_run_dir, write_config
from posttrain.train.scaffold import load_model_for, load_prompt_rows, load_tokenizer_for


@dataclass
class ConstitutionConfig(GenerationBatchOptions, TopPSamplingOptions, TrainOptions):
    dataset: str = option("task:sentiment", "Prompt rows (a 'prompt' column): a .jsonl/.json/.parquet/.csv file, a save_to_disk directory, a hub name, or task:NAME[:split].")
    output_dir: str = option("runs/constitution", "Run directory: revisions.jsonl, sft/ (the SFT run), final/.")
    learning_rate: float = option(5e-4, "SFT peak learning rate (AdamW).")
    prompts: int = option(64, "Prompts drawn (without replacement) from the dataset; 0 uses every prompt.")
    revisions: int = option(1, "Critique -> revision rounds per response, each with a freshly drawn principle.")
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature for responses, critiques and revisions (0: greedy).")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", "Longest sampled response in tokens.", default=96)
    critique_max_new_tokens: int = option(64, "Longest critique in tokens.")
    revision_max_new_tokens: int = option(96, "Longest revision in tokens.")
    generation_batch_size: int = restate(GenerationBatchOptions, "generation_batch_size", "Requests per generation batch.", default=32)
    principles: str | None = option(None, "YAML file with the constitution: a list of principle strings (default: the built-in five).")
    critique_template: str | None = option(None, "Text file with the critique request; placeholders {prompt} {response} {principle}.")
    revision_template: str | None = option(None, "Text file with the revision request; placeholders {prompt} {response} {principle} {critique}.")
    critic_model: str | None = option(None, "Model that writes critiques and revisions (default: the policy itself, as in the paper).")

    def validate(self) -> None:
        super().validate()
        for key in ("revisions", "max_new_tokens", "critique_max_new_tokens", "revision_max_new_tokens", "generation_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be >= 1, got {getattr(self, key)}")
        if self.prompts < 0:
            raise ConfigError(f"config key 'prompts' must be >= 0 (0: every prompt), got {self.prompts}")
        self.check_sampling()
        if self.prompts > 0:
            self.check_sft_batch(self.prompts, f"prompts={self.prompts}", "raise prompts")

    def check_sft_batch(self, prompts: int, where: str, fix: str) -> None:
        """SFT trains on one revision per prompt: a ConfigError, before anything is sampled, when the
        prompts fill no optimizer step (SFT would find out only after all the generation)."""
        needed = self.batch_size * self.gradient_accumulation_steps * ranks.launched_world_size()
        if prompts < needed:
            raise ConfigError(f"{where} gives {prompts} SFT examples (one revision per prompt), fewer than one optimizer "
                              f"step needs (batch_size x gradient_accumulation_steps x processes = {needed}); "
                              f"{fix} or lower batch_size")


class Generator:
    """A model and tokenizer that answer user requests in batches, counting the requests."""

    def __init__(self, model_name: str, config: ConstitutionConfig, option: str = "model"):
        self.tokenizer = load_tokenizer_for(config, model_name, option)
        self.model = load_model_for(config, model_name, option=option)
        self.config = config
        self.calls = 0
        self.context = getattr(self.model.config, "max_position_embeddings", None)

    def __call__(self, prompts: list, max_new_tokens: int, seed: int) -> list[str]:
        """One sampled text per prompt (a string, or a message list rendered with the chat template)."""
        from posttrain.data.tokenize import tokenize_prompt
        from posttrain.generation import SamplingParams, generate
        from posttrain.rollout import warn_if_plain_prompts_unanswered

        texts: list[str] = []
        size = self.config.generation_batch_size
        for start in range(0, len(prompts), size):
            ids = [tokenize_prompt(self.tokenizer, p) for p in prompts[start:start + size]]
            longest = max(len(i) for i in ids)
            if self.context and longest + max_new_tokens > self.context:
                raise UserError(f"a request of {longest} tokens plus {max_new_tokens} new tokens exceeds the model's "
                                f"{self.context}-token context; lower the max_new_tokens options or shorten the templates")
            params = SamplingParams(**self.config.sampling_kwargs(max_new_tokens=max_new_tokens, seed=seed + start))
            batch = generate(self.model, self.tokenizer, ids, params).texts
            warn_if_plain_prompts_unanswered(self.tokenizer, prompts[start:start + size], batch)
            texts += [t.strip() for t in batch]
            self.calls += len(ids)
        return texts


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def critique_and_revise(rows: list[dict], policy: Generator, critic: Generator, config: ConstitutionConfig,
                        principles: list[str], critique_template: str, revision_template: str) -> list[dict]:
    """Per row: a sampled response, `revisions` critique/revision rounds, and the final revision."""
    drawn = cq.draw_principles(principles, len(rows), config.revisions, config.seed)
    asked = [cq.prompt_text(row["prompt"]) for row in rows]
    current = policy([row["prompt"] for row in rows], config.max_new_tokens, config.seed)
    records = [{"prompt": row["prompt"], "response": text, "principles": drawn[i][:], "critique_requests": [],
                "critiques": [], "revision_requests": [], "revisions": []} for i, (row, text) in enumerate(zip(rows, current))]
    for r in range(config.revisions):
        requests = [cq.critique_request(critique_template, asked[i], current[i], drawn[i][r]) for i in range(len(rows))]
        critiques = critic([_user(q) for q in requests], config.critique_max_new_tokens, config.seed + 10_000 * (2 * r + 1))
        revise = [cq.revision_request(revision_template, asked[i], current[i], drawn[i][r], critiques[i]) for i in range(len(rows))]
        revised = critic([_user(q) for q in revise], config.revision_max_new_tokens, config.seed + 10_000 * (2 * r + 2))
        for i, rec in enumerate(records):
            rec["critique_requests"].append(requests[i])
            rec["critiques"].append(critiques[i])
            rec["revision_requests"].append(revise[i])
            rec["revisions"].append(revised[i])
        # An empty revision gives nothing to revise or train on: keep the text it was meant to revise.
        current = [revised[i] or current[i] for i in range(len(rows))]
    for rec, text in zip(records, current):
        rec["final"] = text
    return records


def sft_rows(records: list[dict]) -> list[dict]:
    """The SFT data: exactly (prompt, final revision), as an assistant turn for chat prompts."""
    from posttrain.methods.best_of_n import completion_value

    return [{"prompt": rec["prompt"], "completion": completion_value(rec["final"], isinstance(rec["prompt"], list))}
            for rec in records]


def _sft_config(config: ConstitutionConfig, data_file: Path, out_dir: Path):
    """The SFT run: every shared training option of this config, on the (prompt, revision) pairs."""
    from posttrain.algorithms.sft import SFTConfig

    shared = {f.name: getattr(config, f.name) for f in fields(TrainOptions)}
    shared.update(dataset=str(data_file), dataset_split=None, eval_dataset=None, output_dir=str(out_dir),
                  overwrite_output_dir=True, resume=config.resume)
    return build_config(SFTConfig, shared)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _generate_records(config: ConstitutionConfig, principles, critique_template, revision_template) -> list[dict]:
    rows = draw_rows(load_prompt_rows(config.dataset, config.dataset_split, "constitution needs", hint="", options=config),
                     config.prompts, config.seed)
    config.check_sft_batch(len(rows), f"dataset={config.dataset}", "add prompts to it")  # fewer rows than prompts=

    import torch

    torch.manual_seed(config.seed)
    policy = Generator(config.model, config)
    critic = policy if config.critic_model in (None, config.model) else Generator(config.critic_model, config, "critic_model")
    return critique_and_revise(rows, policy, critic, config, principles, critique_template, revision_template)


def run_constitution(config: ConstitutionConfig) -> dict:
    """Write output_dir/{revisions.jsonl, sft_data.jsonl, sft/, final/}; returns a summary record."""
    from posttrain.algorithms.sft import run_sft

    principles = cq.load_principles(config.principles)
    critique_template = cq.load_template(config.critique_template, cq.DEFAULT_CRITIQUE_TEMPLATE, "critique",
                                         cq.CRITIQUE_FIELDS, {"response", "principle"})
    revision_template = cq.load_template(config.revision_template, cq.DEFAULT_REVISION_TEMPLATE, "revision",
                                         cq.REVISION_FIELDS, {"response", "critique"})
    run = check_run_dir(config)  # resume=true: same settings as the run in output_dir
    write_config(run, config)
    data_file = run.root / "sft_data.jsonl"  # written last: its presence means the generations are complete
    if config.resume and data_file.is_file() and (run.root / "revisions.jsonl").is_file():
        records = _read_jsonl(run.root / "revisions.jsonl")
        print(f"constitution: resume: reusing the {len(records)} revisions in {run.root / 'revisions.jsonl'}")
    else:
        data_file.unlink(missing_ok=True)
        records = _generate_records(config, principles, critique_template, revision_template)
        write_jsonl(run.root / "revisions.jsonl", records)  # whole or absent: resume trusts a file that exists
        write_jsonl(data_file, sft_rows(records))
    changed = sum(rec["final"] != rec["response"] for rec in records)
    print(f"constitution: {len(records)} prompts x {config.revisions} revision round(s); "
          f"{changed} final texts differ from the first response; SFT on the revisions")
    sft = run_sft(_sft_config(config, data_file, run.root / "sft"))  # resume=true resumes its checkpoints
    with atomic_dir(run.final) as tmp:
        shutil.copytree(run.root / "sft" / "final", tmp, dirs_exist_ok=True)
    record = {"prompts": len(records), "revisions": config.revisions, "changed": changed,
              "sft_loss": sft.get("loss"), "sft_steps": sft.get("step")}
    with (run.root / "metrics.jsonl").open("w") as f:
        f.write(json.dumps({"step": 1, **record}) + "\n")
    print(f"constitution: done; model saved to {run.final}")
    return record
