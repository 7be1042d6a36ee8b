"""Distillation learning results on the embedded tasks (CPU, a few minutes each, 1 thread).

    python benchmarks/distill_learning.py size [--data sentiment]   # embedded model -> random-init students of another size
    python benchmarks/distill_learning.py task --teacher DIR   # an SFT-trained teacher -> the embedded base: accuracy
    python benchmarks/distill_learning.py context              # context distillation: only the teacher reads a system prompt

Every run is `posttrain distill` (run_distill) with the options printed; "held-out KL" is the token
mean of KL(teacher || student) at T = 1 on 48 held-out completions of the task (the stage's eval_kl), "CE"
the student's cross-entropy on those tokens (eval_ce), both before training (the initial student,
scored by the same Distill.loss) and after. `task` also scores greedy accuracy on held-out problems
with `posttrain eval`. Measured output is quoted in docs/distill.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from posttrain.algorithms.distill import Distill, DistillConfig, build_student, load_items, load_teacher, read_system_prompt, run_distill
from posttrain.config import build_config
from posttrain.data.collate import to_device
from posttrain.eval.evaluate import EvalConfig, run_eval
from posttrain.models.loading import load_tokenizer

STUDENT = {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2}  # 0.6M parameters (the teacher: 3.48M)
SYSTEM = ("You are a careful arithmetic tutor. Work digit by digit from the right, carry when a column "
          "reaches ten, check the sum, then give only the number inside the answer tags.")


def options(out: Path, name: str, data: str = "arithmetic", **values) -> dict:
    base = dict(dataset=f"task:{data}", eval_dataset=f"task:{data}:test:48", batch_size=8, max_steps=60,
                learning_rate=3e-3, lr_scheduler="cosine", warmup_ratio=0.05, logging_steps=20, device="cpu",
                output_dir=str(out / name))
    return {**base, **values}


@torch.no_grad()
def initial(values: dict) -> dict:
    """Held-out eval_kl / eval_ce of the untrained student (seeded like the loop seeds its init)."""
    config = build_config(DistillConfig, values)
    tokenizer = load_tokenizer(config.model)
    teacher = load_teacher(config, tokenizer)
    algorithm = Distill(teacher, tokenizer, config)
    torch.manual_seed(config.seed)
    student = build_student(config).eval()
    items = load_items(tokenizer, config.eval_dataset, None, config, read_system_prompt(config.teacher_system_prompt))
    sums, tokens = {}, 0
    for start in range(0, len(items), 8):
        batch = algorithm.collate(items[start:start + 8])
        tokens += algorithm.batch_weight(batch)
        _, metrics = algorithm.loss(student, to_device(batch, "cpu"))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {f"eval_{k}": v / tokens for k, v in sums.items()}


def train(values: dict) -> tuple[dict, float]:
    began = time.perf_counter()
    last = run_distill(build_config(DistillConfig, values))
    return last, time.perf_counter() - began


def accuracy(model: str, limit: int, out: Path) -> float:
    report = run_eval(build_config(EvalConfig, {"model": model, "dataset": f"task:arithmetic:test:{limit}", "device": "cpu",
                                                "output_file": str(out / f"eval_{abs(hash(model))}.json")}))
    return report["accuracy"]


def show(rows: list[tuple]) -> None:
    print(f"{'run':34s} {'held-out KL':>18s} {'CE':>16s} {'train s':>8s}  options")
    for name, before, after, seconds, opts in rows:
        print(f"{name:34s} {before['eval_kl']:7.3f} -> {after['eval_kl']:6.3f} {before['eval_ce']:6.3f} -> {after['eval_ce']:6.3f}"
              f" {seconds:8.0f}  {opts}")


VARIANTS = {  # name -> stage options
    "SFT on the data (hard_weight=1)": {"hard_weight": 1.0, "beta": 0.0},
    "kd: forward KL (beta=0)": {"beta": 0.0},
    "soft+hard (beta=0, hard_weight=0.5)": {"beta": 0.0, "hard_weight": 0.5},
    "gkd (lmbda=0.5, beta=0.5)": {"lmbda": 0.5, "beta": 0.5, "max_new_tokens": 112},
    "on-policy reverse KL (lmbda=1, beta=1)": {"lmbda": 1.0, "beta": 1.0, "max_new_tokens": 112},
}


def size(args, out: Path) -> None:
    print(f"teacher: embedded (3.48M parameters); student: random init, embedded config with {STUDENT}; task:{args.data}")
    rows = []
    for name in args.variants or list(VARIANTS)[:3]:
        values = options(out, name.split(":")[0].split(" (")[0].replace(" ", "_"), teacher="embedded", student_config=STUDENT,
                         max_steps=args.steps, data=args.data, **VARIANTS[name])
        before = initial(values)
        after, seconds = train(values)
        rows.append((name, before, after, seconds, VARIANTS[name]))
    show(rows)


def task(args, out: Path) -> None:
    print(f"teacher: {args.teacher}; student: the embedded base model; greedy accuracy on {args.limit} held-out problems")
    print(f"teacher accuracy {accuracy(args.teacher, args.limit, out):.3f}; student before {accuracy('embedded', args.limit, out):.3f}")
    rows = []
    for name in args.variants or [list(VARIANTS)[i] for i in (0, 1, 4)]:
        values = options(out, name.split(" (")[0].replace(" ", "_").replace(":", ""), teacher=args.teacher, model="embedded",
                         learning_rate=args.lr, max_steps=args.steps, **VARIANTS[name])
        before = initial(values)
        after, seconds = train(values)
        rows.append((name, before, after, seconds, VARIANTS[name]))
        print(f"  {name}: accuracy after {accuracy(values['output_dir'] + '/final', args.limit, out):.3f}", flush=True)
    show(rows)


def context(args, out: Path) -> None:
    print(f"teacher: embedded reading the system prompt {SYSTEM!r}; student: embedded without it")
    values = options(out, "context", teacher="embedded", model="embedded", teacher_system_prompt=SYSTEM, beta=0.0,
                     learning_rate=args.lr, max_steps=args.steps)
    before = initial(values)
    after, seconds = train(values)
    show([("context distillation (kd, beta=0)", before, after, seconds, {"beta": 0.0, "teacher_system_prompt": "..."})])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("size", "task", "context"))
    parser.add_argument("--teacher", default="embedded")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=3e-4, help="task / context: learning rate (size uses 3e-3)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--data", default="arithmetic", choices=("arithmetic", "sentiment"), help="size: the embedded task")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out or tempfile.mkdtemp(prefix="distill-"))
    print("$ python benchmarks/distill_learning.py " + " ".join(sys.argv[1:]), flush=True)
    {"size": size, "task": task, "context": context}[args.what](args, out)
    print(json.dumps({"runs": str(out)}))


if __name__ == "__main__":
    main()
