"""One model, two protocols on the same arithmetic questions: lm-evaluation-harness multiple choice
(`posttrain eval harness=lm_eval`, a local task: no hub) and posttrain's own greedy generation scored by
`math_accuracy` (`posttrain eval scorer=math_accuracy`).

The questions are the first N rows of the embedded arithmetic task's held-out split. The multiple-choice
task offers the answer and three distractors (answer + 1, answer - 10, answer + 10, in a fixed shuffled
order) after "Question: ...\\nAnswer:"; lm-eval picks the choice of highest log-likelihood (acc) and of
highest log-likelihood per byte (acc_norm). Both reports land in OUT (runs/bench_lm_eval by default).

    python benchmarks/lm_eval_harness.py                      # the embedded model, 40 questions
    python benchmarks/lm_eval_harness.py --model runs/sft/final --rows 100

Measured 2026-12-04 on the 2-core VM under load (load average ~10; times are what a busy machine gives):

    $ python benchmarks/lm_eval_harness.py     (4 min 21 s)
    lm_eval multiple choice      arith_mc/acc=0.100, arith_mc/acc_norm=0.150  (61 s)
    posttrain greedy generation  math_accuracy=0.250, format=1.000  (200 s)

The embedded model was trained to think before it answers (`<think>...</think><answer>N</answer>`), so the
likelihood of a bare number right after "Answer:" says little about it: below the 1-in-4 chance level,
while the same 40 questions answered its own way are right a quarter of the time. Which protocol a
number comes from matters as much as the number.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from posttrain.eval.harness import choice_task_yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--out", default="runs/bench_lm_eval")
    args = parser.parse_args()
    from posttrain.tasks import get_task

    out = Path(args.out).resolve()
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    rng, docs = random.Random(0), []
    for row in get_task("arithmetic").rows("test", args.rows):
        answer = int(row["answer"])
        choices = [answer, answer + 1, answer - 10, answer + 10]
        rng.shuffle(choices)
        docs.append({"question": row["prompt"][-1]["content"], "choices": [str(c) for c in choices], "label": choices.index(answer)})
    (out / "arith_mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (out / "tasks" / "arith_mc.yaml").write_text(choice_task_yaml("arith_mc", out / "arith_mc.jsonl", ("acc", "acc_norm")))
    runs = {
        "lm_eval multiple choice": ["harness=lm_eval", "tasks=[arith_mc]", f"include_path={out / 'tasks'}",
                                    f"output_file={out / 'lm_eval.json'}"],
        "posttrain greedy generation": [f"dataset=task:arithmetic:test:{args.rows}", "scorer=[math_accuracy, format]",
                                        f"output_file={out / 'generation.json'}"],
    }
    for name, extra in runs.items():
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "posttrain", "eval", f"model={args.model}", "device=cpu", "show_samples=0", *extra],
                       check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                                            "HF_DATASETS_CACHE": str(out / "datasets_cache")})
        report = json.loads(Path(extra[-1].split("=", 1)[1]).read_text())
        numbers = {k: v for k, v in report.items() if isinstance(v, float) and "/" in k or k in ("math_accuracy", "format")}
        print(f"{name:28s} {', '.join(f'{k}={v:.3f}' for k, v in numbers.items())}  ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
