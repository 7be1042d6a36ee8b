"""`metrics.jsonl` (one JSON object per logged step, always with `step`) and the console display.

Only rank 0 writes. On a terminal a tqdm progress bar shows the latest loss (and reward, KL); otherwise
(a log file, CI) every logged record is printed as one plain line of its headline metrics.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from posttrain.errors import DiskFullError
from posttrain.train.faults import disk_full_errno, disk_full_message

# Metrics that depend on wall-clock time: the only ones that differ between two identical runs (or a
# run and its killed-and-resumed twin): throughputs (`tokens_per_second`, `rollout/tokens_per_second`)
# and the online algorithms' `time/*` seconds.
TIMING_KEYS = ("tokens_per_second",)


def is_timing(key: str) -> bool:
    return key in TIMING_KEYS or key.endswith("/tokens_per_second") or key.startswith("time/")


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Drop records past `last_step` (a resumed run rewrites them, so nothing is duplicated)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


# What the console shows of a record (every key still goes to metrics.jsonl): the numbers a person
# watches during a run. PPO logs ~40 keys a step; a line of all of them is unreadable.
HEADLINE = ("loss", "reward/mean", "kl/k1", "accuracy", "rewards/accuracies", "margin", "rewards/margins", "entropy",
            "completion/mean_length", "grad_norm", "lr")
BAR_KEYS = ("loss", "reward/mean", "kl/k1", "accuracy", "rewards/accuracies", "eval_loss")  # a progress bar's postfix


def format_record(record: dict, headline_only: bool = False) -> str:
    shown = {k: v for k, v in record.items()
             if not headline_only or k in HEADLINE or k.startswith("eval_") or k == "epoch" or (k == "nonfinite_steps" and v)}
    return "  ".join(f"{k} {_fmt(v)}" for k, v in shown.items())


class MetricsWriter:
    """Appends records to metrics.jsonl and keeps the user informed; a no-op on ranks other than 0."""

    def __init__(self, path: str | Path, total_steps: int, start_step: int = 0, enabled: bool = True, stream=None, trackers=None):
        self.enabled = enabled
        self.trackers = trackers  # train.trackers.Trackers (report_to): each record goes to them too
        self.stream = stream or sys.stdout
        self.path = Path(path)
        self.file = open(path, "a", encoding="utf-8") if enabled else None
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, desc="train")
        self.total_steps = total_steps

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        try:
            self.file.write(json.dumps(clean) + "\n")
            self.file.flush()
        except OSError as exc:
            code = disk_full_errno(exc)
            if code is None:
                raise
            self._abandon_file()
            raise DiskFullError(disk_full_message(code, "metrics.jsonl", self.path.parent, "the checkpoints are intact")) from None
        if self.trackers:
            self.trackers.log(clean)
        if self.bar is not None:
            shown = {k: _fmt(v) for k, v in record.items() if k in BAR_KEYS}
            self.bar.set_postfix(shown, refresh=False)
            if any(k.startswith("eval_") for k in record):
                self.bar.write(format_record(record, headline_only=True))
        else:
            line = format_record(record, headline_only=True)
            print(f"[{record.get('step', '?')}/{self.total_steps}] {line}", file=self.stream, flush=True)

    def log_table(self, name: str, step: int, rows: list[dict]) -> None:
        """Rows of a table (sample completions) for the trackers that show tables."""
        if self.enabled and self.trackers:
            self.trackers.log_table(name, step, rows)

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def warn(self, text: str) -> None:
        """A warning line on stderr (above the progress bar on a terminal)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def _abandon_file(self) -> None:
        """Close metrics.jsonl after a failed write without flushing what is left in its buffer again
        (which would fail again, now or as "Exception ignored" at exit); a resume drops a cut-off line."""
        try:
            self.file.close()
        except OSError:
            pass
        self.file, self.enabled = None, False

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.trackers:
            self.trackers.finish()
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


class MetricsWindow:
    """Means of per-step metrics over a logging window (kept in checkpoints for exact resume). A
    metric is averaged over the steps that reported it (an online round's rollout metrics come
    once per round, not once per optimizer step)."""

    def __init__(self, state: dict | None = None):
        self.sums: dict[str, float] = dict((state or {}).get("sums", {}))
        self.count: int = (state or {}).get("count", 0)
        self.counts: dict[str, int] = dict((state or {}).get("counts", {k: self.count for k in self.sums}))
        self.tokens, self.seconds = 0.0, 0.0

    def add(self, metrics: dict, tokens: float, seconds: float) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1
        self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds

    def pop(self) -> dict:
        """Window means, and training throughput (time in train steps only, not eval or saving)."""
        out = {k: v / max(1, self.counts.get(k, self.count)) for k, v in self.sums.items()}
        out["tokens_per_second"] = self.tokens / max(1e-9, self.seconds)
        self.__init__()
        return out

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count, "counts": dict(self.counts)}


def carry_metrics(ckpt: Path | None, run, start: int) -> None:
    """metrics.jsonl after a resume holds the lines of steps <= `start` and nothing later, as the
    uninterrupted run's would: output_dir's own (resume=true, or resume_from a checkpoint of this run), or,
    when resume_from names another run's checkpoint, that run's lines copied (none if it has no metrics.jsonl)."""
    source = ckpt.parent.parent / "metrics.jsonl" if ckpt is not None else run.metrics
    if ckpt is not None and source.resolve() != run.metrics.resolve():
        run.metrics.write_bytes(source.read_bytes() if source.is_file() else b"")
    truncate_metrics(run.metrics, start)
