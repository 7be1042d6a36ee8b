"""Online RL (GRPO, RLOO) throughput: posttrain vs TRL's GRPOTrainer / RLOOTrainer, same model, prompts and settings.

Both sides train the shipped embedded model on the arithmetic task's train prompts (conversational
`prompt`, plus the `answer` column) with the task's two scorers as reward functions (accuracy and
format, TRL's calling convention, passed to TRL as `reward_funcs=[...]`), fp32 on CPU, sampling
with temperature 1.0 (no top-k / top-p) and no vLLM (TRL `use_vllm=False`: transformers' generate).
Each generation round samples G completions for each of P prompts and is followed by exactly one
optimizer step (μ = 1): posttrain `prompts_per_step=P, num_generations=G, num_iterations=1,
num_minibatches=1, batch_size=B`; TRL `per_device_train_batch_size=B,
gradient_accumulation_steps=P*G/B, generation_batch_size=P*G` (so `steps_per_generation` = the
accumulation steps and one generation feeds one optimizer step), `num_iterations=1`. The same
learning rate (linear decay), max_grad_norm 1.0, AdamW, max completion length and β; β > 0 loads
a frozen reference model on both sides.

- `grpo`: posttrain `advantage=grpo, scale_rewards=group, loss_type=grpo, kl_estimator=k3`;
  TRL GRPOTrainer `loss_type="grpo", scale_rewards="group"` (its k3 KL in the loss).
- `rloo`: posttrain `--preset rloo` (leave-one-out advantages, token-mean loss; β > 0: k3 KL in the
  loss); TRL RLOOTrainer (leave-one-out advantages, sequence-level ratio; β > 0: k1 KL in the
  reward). The losses differ in form, not in cost; TRL's RLOO also runs an extra no-grad forward for
  the old log-probs every round, which posttrain takes from the sampler.

Throughput is optimizer steps per second and completion tokens per second (sampled tokens, eos
included) of wall-clock time between consecutive optimizer steps (generation, reward, reference,
forward, backward, optimizer, logging), the median over timed windows after warm-up steps. The
samples differ (each side has its own random stream), so completion lengths differ a little: compare
tokens/s first. WHERE THE TIME GOES splits the timed steps into generation (TRL: its `_generate`,
of which `model.generate`), old log-probs (TRL RLOO), reference forward, reward functions, the rest
of making experience, and training (the remainder: forward, backward, optimizer, logging). posttrain's
phases come from its metrics.jsonl (`time/*_seconds`); TRL's from timers wrapped around its methods
by this script.

    python benchmarks/bench_grpo.py --threads 1
    python benchmarks/bench_grpo.py --trainers grpo --beta 0 --warmup 1 --window 1 --windows 2   # quick look

Measured 2026-11-21 on the otherwise idle 2-core AMD EPYC VM (--threads 1), embedded model (3.48M),
P=8 prompts x G=8, max 128 new tokens, micro-batch 16, with packed micro-batches (each prompt once,
then its completions, no padding) and the sampler's oneDNN-packed decode projections:

    $ python benchmarks/bench_grpo.py --threads 1
      [grpo, beta 0]     posttrain 0.354 steps/s 1662 tok/s   TRL GRPOTrainer 0.180 steps/s  801 tok/s   1.97x steps/s, 2.07x tok/s
      [grpo, beta 0.04]  posttrain 0.305 steps/s 1403 tok/s   TRL GRPOTrainer 0.135 steps/s  671 tok/s   2.26x steps/s, 2.09x tok/s
      [rloo, beta 0]     posttrain 0.366 steps/s 1756 tok/s   TRL RLOOTrainer 0.160 steps/s  741 tok/s   2.29x steps/s, 2.37x tok/s

    $ python benchmarks/bench_grpo.py --threads 1 --trainers grpo --beta 0 --windows 5
      [grpo, beta 0]     posttrain 0.377 steps/s 1866 tok/s   TRL GRPOTrainer 0.159 steps/s  802 tok/s   2.37x steps/s, 2.33x tok/s

    $ python benchmarks/bench_grpo.py --threads 2
      [grpo, beta 0]     2.14x steps/s, 2.19x tok/s
      [grpo, beta 0.04]  2.05x steps/s, 1.99x tok/s
      [rloo, beta 0]     2.63x steps/s, 2.53x tok/s

Where the time goes (seconds per step, 1 thread, grpo β 0 / β 0.04): generation 1.29 / 1.36 vs TRL
2.72 / 2.74 (2.1x: posttrain's sampler prefills each prompt once, decodes through LeanDecoder with
packed oneDNN projections into a preallocated cache and drops finished rows; TRL runs transformers'
generate); reference forward 0.50 vs 1.10 (β 0.04); rewards ~0 on both sides; training (forward,
backward, AdamW) 1.51 / 1.50 vs 3.34 / 3.38 (2.2x: packed micro-batches, the LM head only at
completion positions; TRL pads and computes log-probs and entropy at every position). TRL's RLOO
also runs a no-grad forward for the old log-probs (0.94 s per step), which posttrain takes from
the sampler. Both halves are now near their floors on this machine: training at ~6 x params x
tokens of matmul, and decode attention (a third of generation) at the memory bandwidth of reading
the fp32 KV cache.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from timing import window_rates  # noqa: E402 (benchmarks/ is on sys.path when run as a script)

TRAINERS = ("grpo", "rloo")
GRPO_SETTINGS = {"advantage": "grpo", "scale_rewards": "group", "loss_type": "grpo", "kl_estimator": "k3"}
REWARD_FUNCS = ("posttrain.tasks.arithmetic:accuracy", "posttrain.tasks.arithmetic:format_reward")
PHASES = ("weight sync", "generation", "  of which model.generate", "old log-probs", "reference forward", "reward", "other experience", "training")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trainers", default=",".join(TRAINERS), help=f"comma-separated, from {TRAINERS}")
    p.add_argument("--beta", default="0,0.04", help="comma-separated KL weights β; β > 0 runs only for grpo unless --rloo-beta")
    p.add_argument("--rloo-beta", action="store_true", help="also run rloo at β > 0 (TRL puts its KL in the reward)")
    p.add_argument("--sides", default="posttrain,trl", help="comma-separated, from posttrain,trl (one side: for profiling)")
    p.add_argument("--prompts", type=int, default=8, help="P: prompts per generation round (= per optimizer step)")
    p.add_argument("--generations", type=int, default=8, help="G: completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="micro-batch (completions per forward/backward)")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--num-prompts", type=int, default=512, help="arithmetic train prompts in the data set")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--window", type=int, default=2, help="steps per timed window")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="total steps (default warmup + window x windows; must be at least that)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="show both trainers' per-step logs")
    p.add_argument("--backend", default="local", choices=("local", "vllm"),
                   help="vllm: both sides sample with a vLLM engine in the trainer's process (posttrain rollout_backend=vllm "
                        "tis_cap=2; TRL use_vllm=True, vllm_mode='colocate'); needs `bash install.sh vllm` plus trl")
    args = p.parse_args()
    need = args.warmup + args.window * args.windows
    args.steps = args.steps or need
    if args.steps < need:
        p.error(f"--steps {args.steps} < warmup + window x windows = {need}")
    if (args.prompts * args.generations) % args.batch_size:
        p.error("prompts x generations must be a multiple of --batch-size (TRL's accumulation steps)")
    return args


def make_rows(n: int) -> list[dict]:
    from posttrain.tasks import get_task

    return [{"prompt": r["prompt"], "answer": r["answer"]} for r in get_task("arithmetic").rows("train", n)]


def reward_functions() -> list:
    from posttrain.tasks import get_task

    scorers = get_task("arithmetic").scorers
    return [scorers["accuracy"], scorers["format"]]


def quiet(args):
    """Hide the trainers' per-step log lines (both print to stdout) unless --verbose."""
    return contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())


def timed_steps(args) -> range:
    return range(args.warmup, args.warmup + args.window * args.windows)


# ------------------------------------------------------------------------------------------ posttrain


def run_posttrain(model_dir: str, data_file: str, trainer: str, beta: float, args, workdir: Path) -> dict:
    from posttrain.algorithms.grpo import PRESETS, GRPOConfig, grpo_algorithm
    from posttrain.config import build_config
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.online.source import OnlineSource
    from posttrain.rewards import RewardFunctions
    from posttrain.tasks.sources import load_rows
    from posttrain.train.loop import train

    out = workdir / f"posttrain-{trainer}-{beta}"
    preset = dict(PRESETS["rloo"]) if trainer == "rloo" else GRPO_SETTINGS
    config = build_config(GRPOConfig, dict(
        preset, model=model_dir, dataset=data_file, output_dir=str(out), overwrite_output_dir=True,
        reward_funcs=list(REWARD_FUNCS), beta=beta, prompts_per_step=args.prompts, num_generations=args.generations,
        max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, batch_size=args.batch_size,
        num_iterations=1, num_minibatches=1, learning_rate=args.lr, lr_scheduler="linear", max_grad_norm=1.0,
        max_steps=args.steps, logging_steps=1, seed=args.seed, device="cpu", dtype="float32",
        **({"rollout_backend": "vllm", "tis_cap": 2.0} if args.backend == "vllm" else {})))
    tokenizer = load_tokenizer(model_dir)
    rewards = RewardFunctions.resolve(config.reward_funcs, config.dataset)
    algorithm = grpo_algorithm(config, tokenizer, rewards)
    stamps = []

    class TimedSource(OnlineSource):
        def next_step(self, step):
            stamps.append(time.perf_counter())
            return super().next_step(step)

    source = TimedSource(algorithm, load_rows(data_file, None), tokenizer, config)
    with quiet(args):
        train(config, build_model=lambda: load_causal_lm(model_dir, "float32", "cpu"), tokenizer=tokenizer,
              algorithm=algorithm, source=source)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_seconds = [r["num_tokens"] - (records[i - 1]["num_tokens"] if i else 0) for i, r in enumerate(records)]
    step_seconds = [t / r["tokens_per_second"] for t, r in zip(step_seconds, records)]
    stamps.append(stamps[-1] + step_seconds[-1])  # the end of the last step
    samples = args.prompts * args.generations
    tokens = [r["completion/mean_length"] * samples for r in records]
    phases = []
    for r, total in zip(records, step_seconds):
        gen, ref, rew, exp, sync = (r.get(f"time/{k}_seconds", 0.0) for k in ("rollout", "reference", "reward", "experience", "weight_sync"))
        phases.append({"weight sync": sync, "generation": gen, "reference forward": ref, "reward": rew,
                       "other experience": exp - sync - gen - ref - rew, "training": total - exp, "total": total})
    steps_s, tokens_s = window_rates(stamps, [1] * args.steps, args), window_rates(stamps, tokens, args)
    return {"steps_s": steps_s, "tokens_s": tokens_s, "phases": phases, "tokens": tokens,
            "reward": [r["reward/mean"] for r in records]}


# ------------------------------------------------------------------------------------------------ TRL


def trl_vllm(args) -> dict:
    """TRL's generation settings: transformers' generate, or its colocated vLLM engine (which joins a
    torch.distributed world of one: the launcher's environment variables are set here)."""
    if args.backend == "local":
        return {"use_vllm": False}
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29533")):
        os.environ.setdefault(key, value)
    return {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": 512}


def run_trl(model_dir: str, rows: list[dict], trainer_name: str, beta: float, args, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    if trainer_name == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
        extra = {"loss_type": "grpo", "scale_rewards": "group"}
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
        extra = {}
    samples = args.prompts * args.generations
    config = Config(
        output_dir=str(workdir / f"trl-{trainer_name}-{beta}"), beta=beta, **trl_vllm(args),
        num_generations=args.generations, max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0,
        top_k=0, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=samples // args.batch_size,
        generation_batch_size=samples, num_iterations=1, learning_rate=args.lr, lr_scheduler_type="linear",
        max_grad_norm=1.0, max_steps=args.steps, logging_steps=1, seed=args.seed, bf16=False, fp16=False, use_cpu=True,
        gradient_checkpointing=False, report_to="none", save_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, model_init_kwargs={"dtype": torch.float32}, **extra,
    )
    trainer = Trainer(model=model_dir, reward_funcs=reward_functions(), args=config,
                      train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(model_dir))
    assert trainer.args.steps_per_generation == samples // args.batch_size and trainer.args.generation_batch_size == samples

    stamps, phases, tokens = [], [], []
    current = {}

    def timed(name, fn, classify=None):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            began = time.perf_counter()
            result = fn(*a, **k)
            key = classify(*a, **k) if classify else name
            if key:
                current[key] = current.get(key, 0.0) + time.perf_counter() - began
            if name == "experience":
                tokens.append(int(result["completion_mask"].sum()))
            return result
        return wrapper

    def logps_phase(model, *a, **k):
        if torch.is_grad_enabled():
            return None  # the training forward
        return "reference forward" if model is trainer.ref_model else "old log-probs"

    trainer._generate_and_score_completions = timed("experience", trainer._generate_and_score_completions)
    trainer._generate = timed("generation", trainer._generate)
    trainer.model.generate = timed("  of which model.generate", trainer.model.generate)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed("logps", trainer._get_per_token_logps_and_entropies, logps_phase)

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())
            total = stamps[-1] - stamps[-2]
            step = dict(current)
            exp = step.pop("experience", 0.0)
            known = ("generation", "old log-probs", "reference forward", "reward")
            step["other experience"] = exp - sum(step.get(k, 0.0) for k in known)
            step["training"] = total - exp
            step["total"] = total
            phases.append(step)
            current.clear()

    trainer.add_callback(Clock())
    with quiet(args):
        trainer.train()
    assert len(tokens) == args.steps and current == {}, "expected one generation round per optimizer step"
    if args.backend == "local":  # with vLLM, TRL's _generate calls its engine instead
        assert all("  of which model.generate" in p for p in phases), "model.generate was not timed"
    steps_s, tokens_s = window_rates(stamps, [1] * args.steps, args), window_rates(stamps, tokens, args)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"steps_s": steps_s, "tokens_s": tokens_s, "phases": phases, "tokens": tokens, "reward": rewards}


# --------------------------------------------------------------------------------------------- report


def main() -> None:
    args = parse_args()
    print("$ " + shlex.join(["python", *sys.argv]))
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import trl

    from posttrain.embedded import EMBEDDED_MODEL_DIR

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.simplefilter("ignore", FutureWarning)  # transformers 5's gradient_checkpointing rename, raised inside TRL
    model_dir = str(EMBEDDED_MODEL_DIR)
    params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}; "
          f"{os.cpu_count()} CPU cores, {args.threads} threads; load average before start {os.getloadavg()[0]:.2f}")
    print(f"settings: embedded model ({params / 1e6:.2f}M), fp32 CPU, {'no vLLM' if args.backend == 'local' else 'vLLM colocated on both sides'}; {args.prompts} prompts x G={args.generations} "
          f"completions per round, one optimizer step per round (mu=1), micro-batch {args.batch_size} "
          f"(TRL: {args.prompts * args.generations // args.batch_size} accumulation steps), max {args.max_new_tokens} new tokens, "
          f"temperature 1.0, lr {args.lr} (linear), max_grad_norm 1.0, AdamW; rewards accuracy + format; "
          f"{args.steps} steps: {args.warmup} untimed + {args.windows} windows x {args.window}; {args.num_prompts} arithmetic prompts")
    rows = make_rows(args.num_prompts)
    sides = args.sides.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_file = workdir / "prompts.jsonl"
        data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for trainer in args.trainers.split(","):
            for beta in (float(b) for b in args.beta.split(",")):
                if trainer == "rloo" and beta > 0 and not args.rloo_beta:
                    continue
                results = {}
                if "posttrain" in sides:
                    results["posttrain"] = run_posttrain(model_dir, str(data_file), trainer, beta, args, workdir)
                if "trl" in sides:
                    name = f"TRL {'GRPO' if trainer == 'grpo' else 'RLOO'}Trainer"
                    results[name] = run_trl(model_dir, rows, trainer, beta, args, workdir)
                report(f"{trainer}, beta {beta:g}", results, args)


def report(label: str, results: dict, args) -> None:
    print(f"\n  [{label}]")
    meds = {}
    for who, r in results.items():
        steps, toks = statistics.median(r["steps_s"]), statistics.median(r["tokens_s"])
        meds[who] = (steps, toks)
        timed = [r["tokens"][i] / (args.prompts * args.generations) for i in timed_steps(args)]
        print(f"    {who:<18} {steps:6.3f} steps/s (windows: {', '.join(f'{w:.3f}' for w in r['steps_s'])})  "
              f"{toks:7.1f} completion tokens/s (windows: {', '.join(f'{w:.1f}' for w in r['tokens_s'])})  "
              f"mean completion {statistics.mean(timed):.1f} tokens, reward mean {statistics.mean(r['reward']):.3f}")
    if len(meds) == 2:
        (a, b) = meds.values()
        print(f"    ratio posttrain / TRL: {a[0] / b[0]:.2f}x steps/s, {a[1] / b[1]:.2f}x completion tokens/s")
    print("    WHERE THE TIME GOES (seconds per timed step, mean; share of the step):")
    names = list(results)
    print("      " + f"{'phase':<28}" + "".join(f"{n:>26}" for n in names))
    for phase in (*PHASES, "total"):
        cells = []
        for who in names:
            steps = [results[who]["phases"][i] for i in timed_steps(args)]
            if not any(phase in s for s in steps):
                cells.append(f"{'-':>26}")
                continue
            seconds = statistics.mean(s.get(phase, 0.0) for s in steps)
            share = seconds / statistics.mean(s["total"] for s in steps)
            cells.append(f"{seconds:>17.3f} ({share:5.1%})")
        print("      " + f"{phase:<28}" + "".join(cells))


if __name__ == "__main__":
    main()
