"""The run directory: `config.yaml`, `metrics.jsonl`, `checkpoints/step-N/`, `final/`.

`check_run_dir` runs before anything is written (so a bad config or data file leaves nothing
behind); `prepare_run_dir` then creates the directory and writes the fully resolved config.
Stages that do not train (compare, pairs) and those that chain trainings (rejection, constitution)
use the same pieces: `run_dir`, `check_no_final`, `write_config`, and `atomic_dir` for a `final/`
that appears whole or not at all.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from posttrain.config import to_dict, to_yaml
from posttrain.errors import ConfigError

# Keys that may change when resuming: they steer logging and saving, not what is computed.
RESUMABLE_CHANGES = frozenset({
    "resume", "overwrite_output_dir", "logging_steps", "eval_steps", "save_steps", "keep_last",
    "max_steps", "num_epochs", "device", "max_nonfinite_steps", "resume_from",
    "report_to", "run_name", "tracker_project",  # issue 18: experiment tracking
    "push_to_hub", "hub_model_id", "hub_private_repo",  # issue 18: hub (where final/ goes, not what it holds)
})
CHECKPOINT_FILES = ("model.pt", "optimizer.pt", "trainer_state.pt")  # what train.checkpoint writes to resume from
SHARDED_CHECKPOINT_FILES = ("distributed/.metadata", "trainer_state.pt")  # ... under torchrun (train.checkpoint.SHARDED_DIR)
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints", "final",
             "trackers.json", "tensorboard", "wandb", "mlruns", "trackio")  # issue 18: what report_to's trackers write (train/trackers.py)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def holds_run(self) -> bool:
        return any((self.root / name).exists() for name in RUN_FILES)


def run_dir(output_dir) -> RunDir:
    """The RunDir at `output_dir`; a ConfigError if that path, or the nearest of its parents that
    exists, is not a directory it can be made in."""
    run = RunDir(Path(output_dir))
    check_creatable_dir(run.root, "output_dir")
    return run


def check_creatable_dir(path: Path, option: str) -> None:
    """A ConfigError naming `option` unless `path` is a directory or can be created as one: neither it
    nor a parent is a file, and the nearest existing parent is writable."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; choose a directory")
    if path.is_dir():
        return
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{option} {path} is inside {parent}, which is a file; choose a directory that is not inside a file")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path} cannot be created: {parent} is not writable; choose a directory you can write to")


def check_no_final(run: RunDir, overwrite: bool, holds: str) -> None:
    """For stages that do not resume: refuse a directory with a `final/` unless `overwrite`.
    `holds` names what final/ holds in the message, e.g. "finished pairs"."""
    if run.final.exists() and not overwrite:
        raise ConfigError(f"output_dir {run.root} already holds {holds}; set overwrite_output_dir=true or choose another output_dir")


def write_config(run: RunDir, config) -> None:
    """Create the directory and write the fully resolved config.yaml."""
    run.root.mkdir(parents=True, exist_ok=True)
    run.config.write_text(to_yaml(config), encoding="utf-8")


@contextmanager
def atomic_dir(path):
    """Yield an empty sibling temp directory (`<path>.tmp`) to fill; when the block ends without an
    error it replaces `path`, so `path` appears whole or not at all (an error removes the temp dir)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left (and a full disk gets its space back)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)


def check_run_dir(config) -> RunDir:
    """Refuse to write over an earlier run unless `resume` or `overwrite_output_dir` says so."""
    run = run_dir(config.output_dir)
    source = getattr(config, "resume_from", None)
    if source:
        check_resume_from(Path(source), config)
    if not run.holds_run() or config.overwrite_output_dir:
        return run
    if not config.resume and not source:
        state = "a finished run" if run.final.exists() else "an earlier run"
        raise ConfigError(
            f"output_dir {run.root} already holds {state}; set resume=true to continue it, "
            "overwrite_output_dir=true to replace it, or choose another output_dir"
        )
    changed = changed_settings(run, config)
    if changed:
        raise ConfigError(
            f"resume=true but {', '.join(changed)} differ from {run.config}; "
            "resume with the same settings, or use overwrite_output_dir=true to start over"
        )
    return run


def check_resume_from(path: Path, config) -> None:
    """resume_from must be a checkpoint directory (RUN/checkpoints/step-N) of a run with the same settings
    (those a resume may change aside, output_dir too), so the resumed run ends where that run would have."""
    expected = SHARDED_CHECKPOINT_FILES if (path / "distributed").is_dir() else CHECKPOINT_FILES
    missing = [name for name in expected if not (path / name).is_file()]
    if missing:
        raise ConfigError(f"resume_from {path} is not a checkpoint ({'it does not exist' if not path.exists() else 'no ' + ', '.join(missing)}); "
                          "point it at a RUN/checkpoints/step-N directory that a training run wrote")
    changed = [k for k in changed_settings(RunDir(path.parent.parent), config) if k != "output_dir"]
    if changed:
        raise ConfigError(f"resume_from {path} was written with other {', '.join(changed)} (see {path.parent.parent / 'config.yaml'}); "
                          "resume with that run's settings")


def changed_settings(run: RunDir, config) -> list[str]:
    """The keys whose values differ from the run's config.yaml, except those a resume may change."""
    if not run.config.is_file():
        return []
    old = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    new = to_dict(config)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)


def prepare_run_dir(run: RunDir, config, is_main: bool = True) -> None:
    """Create the directory (rank 0), clearing an old run if overwriting, and write config.yaml."""
    if not is_main:
        return
    source = getattr(config, "resume_from", None)
    keeps_source = source and run.root.resolve() in Path(source).resolve().parents  # never delete the checkpoint to resume from
    if config.overwrite_output_dir and not config.resume and not keeps_source:
        for name in RUN_FILES:
            path = run.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    write_config(run, config)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
