"""Read a run directory (one stage, or a pipeline of stages) into plain data for the report.

What is read, all optional except that there must be at least one run or evaluation:
- `metrics.jsonl` of each stage (the stage's own dir, or the subdirectories of a pipeline dir,
  in `pipeline.jsonl` order when that file is there, which also names each stage's type);
- eval JSON reports (`posttrain eval` output: a JSON object with `score` and `samples`), found as
  `*.json` next to the stages, in stage dirs and in their `final/`;
- `evaluations.jsonl`: one JSON object per evaluated policy,
  `{"policy": str, "reward": float, "kl": float, "win_rate": float?, "judge": str?}`,
  at the top or in any stage dir (see docs/report.md);
- `samples.jsonl`: one `{"policy": str?, "prompt": str, "completion": str, "score": float?}` per line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from posttrain.errors import UserError
from posttrain.stages import STAGES, stage_names

# Which KL to put on the reward-vs-KL axis, in order of preference (per-token estimates).
KL_KEYS = ("kl/k1", "kl", "kl/k3", "kl/sequence_k1")
RL_STAGES = stage_names("rl")  # counted in the report header


@dataclass
class Run:
    name: str
    stage: str
    path: Path
    records: list[dict]
    status: str | None = None
    seconds: float | None = None

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of `key` over the logged steps, skipping steps without a finite value."""
        steps, values = [], []
        for r in self.records:
            v = r.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                steps.append(float(r.get("step", len(steps))))
                values.append(float(v))
        return steps, values

    def last(self, key: str) -> float | None:
        _, values = self.series(key)
        return values[-1] if values else None

    def has(self, key: str) -> bool:
        return self.last(key) is not None

    @property
    def steps(self) -> int:
        return max((int(r["step"]) for r in self.records if isinstance(r.get("step"), (int, float))), default=0)


@dataclass
class Evaluation:
    policy: str
    reward: float | None = None
    kl: float | None = None
    win_rate: float | None = None
    judge: str | None = None
    source: str = ""


@dataclass
class EvalReport:
    policy: str
    path: Path
    data: dict


@dataclass
class Sample:
    policy: str
    prompt: str
    completion: str
    score: float | None = None


@dataclass
class ReportData:
    title: str
    root: Path
    runs: list[Run] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    eval_reports: list[EvalReport] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run: the rest of the file is still worth showing
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _infer_stage(path: Path, records: list[dict]) -> str:
    if path.name in STAGES:
        return path.name
    keys = set().union(*records) if records else set()
    if "value_loss" in keys or "values/mean" in keys:
        return "ppo"
    if "pairs/ties" in keys:  # before grpo: online DPO logs the rollout metrics too
        return "online_dpo"
    if "reward/mean" in keys:
        return "grpo"
    if "rewards/margins" in keys:
        return "dpo"
    if "desirable_fraction" in keys:
        return "kto"
    if "chosen_reward" in keys or "eval_accuracy" in keys:
        return "rm"
    return "sft"


def _is_eval_report(data) -> bool:
    return isinstance(data, dict) and "score" in data and ("samples" in data or "num_prompts" in data)


def _policy_name(path: Path) -> str:
    """`eval_sft.json` -> eval_sft; `sft/final/eval.json` -> sft; `eval_dpo/eval.json` -> eval_dpo."""
    if path.stem not in ("eval", "report"):
        return path.stem
    parent = path.parent.parent if path.parent.name == "final" else path.parent
    return parent.name


def _read_eval_reports(dirs: list[Path]) -> list[EvalReport]:
    found, seen = [], set()
    for d in dirs:
        for path in sorted(d.glob("*.json")) + sorted((d / "final").glob("eval*.json")):
            if path in seen or path.name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
                continue
            seen.add(path)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue
            if _is_eval_report(data):
                found.append(EvalReport(_policy_name(path), path, data))
    return found


def _read_evaluations(path: Path) -> list[Evaluation]:
    out = []
    for row in _read_jsonl(path):
        if "policy" not in row:
            continue
        judge = row.get("judge")
        out.append(Evaluation(str(row["policy"]), _number(row.get("reward")), _number(row.get("kl")),
                              _number(row.get("win_rate")), None if judge is None else str(judge), str(path)))
    return out


def _read_samples(path: Path, default_policy: str) -> list[Sample]:
    return [Sample(str(r.get("policy", default_policy)), str(r.get("prompt", "")), str(r.get("completion", "")),
                   _number(r.get("score"))) for r in _read_jsonl(path) if "completion" in r]


def _stage_dirs(root: Path) -> list[tuple[Path, dict]]:
    """Subdirectories that hold a stage, with their pipeline.jsonl record when there is one."""
    ordered: list[tuple[Path, dict]] = []
    pipeline = root / "pipeline.jsonl"
    if pipeline.is_file():
        for rec in _read_jsonl(pipeline):
            d = root / str(rec.get("name", ""))
            if rec.get("name") and d.is_dir():
                ordered.append((d, rec))
    listed = {d for d, _ in ordered}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p not in listed):
        if (d / "metrics.jsonl").is_file() or any(d.glob("*.json")) or (d / "evaluations.jsonl").is_file():
            ordered.append((d, {}))
    return ordered


def collect(run_dir: str | Path) -> ReportData:
    """Everything the report shows, read from RUN_DIR; a UserError when there is nothing to show."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"run directory {root} does not exist; pass a stage's or a pipeline's output_dir")
    root = root.resolve()
    data = ReportData(title=root.name, root=root)
    stage_dirs = [(root, {})] if (root / "metrics.jsonl").is_file() else _stage_dirs(root)
    for d, rec in stage_dirs:
        metrics = d / "metrics.jsonl"
        if metrics.is_file():
            records = _read_jsonl(metrics)
            stage = str(rec.get("stage") or _infer_stage(d, records))
            data.runs.append(Run(d.name, stage, d, records, rec.get("status"), _number(rec.get("seconds"))))
    dirs = [root] + [d for d, _ in stage_dirs if d != root]
    data.eval_reports = _read_eval_reports(dirs)
    for d in dirs:
        if (d / "evaluations.jsonl").is_file():
            data.evaluations += _read_evaluations(d / "evaluations.jsonl")
        if (d / "samples.jsonl").is_file():
            data.samples += _read_samples(d / "samples.jsonl", d.name)
    for rep in data.eval_reports:
        for s in rep.data.get("samples") or []:
            if isinstance(s, dict) and "completion" in s:
                data.samples.append(Sample(rep.policy, str(s.get("prompt", "")), str(s["completion"]), _number(s.get("score"))))
    if not data.runs and not data.eval_reports and not data.evaluations:
        raise UserError(f"{root} holds no runs (no metrics.jsonl, eval report or evaluations.jsonl in it or its "
                        "subdirectories); pass a stage's or a pipeline's output_dir")
    return data


def reward_kl_points(data: ReportData) -> list[Evaluation]:
    """Every evaluated policy with both a reward and a KL. The rows of evaluations.jsonl (one
    measurement: same prompts, gold reward, KL per sequence, as `posttrain compare` writes) when
    there are any; else the final policy of each RL stage (its last logged `reward/mean` and its
    per-token KL). The two are never mixed: their rewards and KL units differ."""
    points = [e for e in data.evaluations if e.reward is not None and e.kl is not None]
    if points:
        return points
    for run in data.runs:
        key = kl_key(run)
        if key and run.has("reward/mean"):
            points.append(Evaluation(run.name, run.last("reward/mean"), run.last(key), source=f"{run.name}/metrics.jsonl ({key})"))
    return points


def reward_kl_from_evaluations(data: ReportData) -> bool:
    return any(e.reward is not None and e.kl is not None for e in data.evaluations)


def kl_key(run: Run) -> str | None:
    return next((k for k in KL_KEYS if run.has(k)), None)
