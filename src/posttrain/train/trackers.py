"""Experiment trackers (`report_to`): TensorBoard, Weights & Biases, MLflow and Trackio.

One adapter per tracker, each with `start(config, run_name, output_dir, project, resume_id, start_step)`
(returns the id a resumed run continues), `log(record)` (a metrics.jsonl record, with its `step`), `log_table(name,
step, rows)` (sample completions: a list of dicts with the same keys) and `finish()`. `Trackers` starts
the chosen ones and fans each call out; the MetricsWriter calls it where it writes metrics.jsonl, on
rank 0 only, so every stage is tracked through one hook.

Every tracker writes inside the run directory unless its own environment variable says otherwise
(TENSORBOARD_LOGDIR, WANDB_DIR, MLFLOW_TRACKING_URI, TRACKIO_DIR), so a run is self-contained and
nothing talks to a server unless asked (WANDB_MODE=offline keeps wandb local). The packages are imported
here, when a run starts: `import posttrain` never loads them.

Resume (`resume=true`): the ids of the wandb and MLflow runs are kept in output_dir/trackers.json and the
resumed run logs into the same wandb run (resume="allow") and the same MLflow run; trackio resumes the run
of the same name in the project; TensorBoard writes a new event file with purge_step, so its viewer drops
the old file's points past the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

from posttrain.config import to_dict
from posttrain.errors import ConfigError
from posttrain.options import resolve_report_to

STATE_FILE = "trackers.json"  # tracker name -> the id its resumed run continues
DEFAULT_PROJECT = "posttrain"


def scalars(record: dict) -> dict[str, float]:
    """The numbers of a metrics record, `step` and non-finite values (None in metrics.jsonl) left out."""
    return {k: v for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flat_params(config: dict) -> dict[str, str | int | float | bool]:
    """Config values as the scalar hyperparameters TensorBoard and MLflow take (lists, None as text)."""
    return {k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in config.items()}


class TensorBoard:
    env = "TENSORBOARD_LOGDIR"

    def start(self, config: dict, run_name: str, output_dir: Path, project: str, resume_id, start_step: int):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        logdir = os.environ.get(self.env) or output_dir / "tensorboard"
        self.writer = SummaryWriter(str(logdir), purge_step=start_step + 1 if start_step else None)
        # hparams in the run's own event file (SummaryWriter.add_hparams would start another run), and as text
        for summary in hparams(flat_params(config), {}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1) + "\n```", start_step)
        return None

    def log(self, record: dict) -> None:
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def log_table(self, name: str, step: int, rows: list[dict]) -> None:
        columns = list(rows[0])
        cell = lambda v: str(v).replace("|", "\\|").replace("\n", "<br>")  # noqa: E731  (a markdown table cell)
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
        self.writer.add_text(name, "\n".join(lines), step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


class WandbStyle:
    """What wandb and Trackio (which copies wandb's API) share: `self.module`'s run, log, Table, finish."""

    def log(self, record):
        self.run.log(scalars(record), step=record["step"])

    def log_table(self, name, step, rows):
        columns = list(rows[0])
        self.run.log({name: self.module.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])}, step=step)

    def finish(self):
        self.run.finish()


class Wandb(WandbStyle):
    def start(self, config, run_name, output_dir, project, resume_id, start_step):
        import wandb

        run_id = resume_id or uuid.uuid4().hex[:8]  # wandb ids: lowercase letters and digits
        directory = os.environ.get("WANDB_DIR") or output_dir  # wandb makes <dir>/wandb/
        project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        self.module = wandb
        self.run = wandb.init(project=project, name=run_name, id=run_id, resume="allow", dir=str(directory), reinit="create_new")
        self.run.config.update(config, allow_val_change=True)
        return run_id


class Mlflow:
    env = "MLFLOW_TRACKING_URI"

    def start(self, config, run_name, output_dir, project, resume_id, start_step):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get(self.env)
        if not uri:  # a file store in the run directory (mlflow 3 wants this spelled out for file stores)
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
            uri = (output_dir / "mlruns").resolve().as_uri()
        # A file store keeps a metric in a file named after it, so `reward` (TRL's name) and `reward/mean`
        # (ours) cannot both exist there: its names get '.' for '/'. Servers keep the names as they are.
        self.sep = "." if uri.startswith("file:") or "://" not in uri else "/"
        self.client = MlflowClient(tracking_uri=uri)
        name = project or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        logged = {}
        if resume_id and self._exists(resume_id):
            self.run_id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
            logged = self.client.get_run(resume_id).data.params  # MLflow refuses to change a param's value
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        params = [Param(k, str(v)) for k, v in flat_params(config).items() if k not in logged]
        for i in range(0, len(params), 100):  # at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        return self.run_id

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:  # mlflow raises MlflowException (RESOURCE_DOES_NOT_EXIST) for a run it does not hold
            return False

    def log(self, record):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k.replace("/", self.sep), float(v), now, record["step"]) for k, v in scalars(record).items()]
        for i in range(0, len(metrics), 1000):  # at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_table(self, name, step, rows):
        columns = list(rows[0])
        self.client.log_table(self.run_id, {c: [row[c] for row in rows] for c in columns}, f"{name}/step_{step:06d}.json")

    def finish(self):
        self.client.set_terminated(self.run_id)


class Trackio(WandbStyle):
    env = "TRACKIO_DIR"

    def start(self, config, run_name, output_dir, project, resume_id, start_step):
        # trackio reads TRACKIO_DIR once, when it is first imported
        if not os.environ.get(self.env):
            os.environ[self.env] = str((output_dir / "trackio").resolve())
        import trackio

        project = project or os.environ.get("TRACKIO_PROJECT") or DEFAULT_PROJECT
        self.module = trackio
        self.run = trackio.init(project=project, name=run_name, config=config, resume="allow" if resume_id else "never",
                                embed=False, auto_log_gpu=False, auto_log_cpu=False)
        return run_name


ADAPTERS = {"tensorboard": TensorBoard, "wandb": Wandb, "mlflow": Mlflow, "trackio": Trackio}


class Trackers:
    """The run's trackers (none: every call does nothing)."""

    def __init__(self, adapters: dict | None = None):
        self.adapters = adapters or {}

    def __bool__(self) -> bool:
        return bool(self.adapters)

    def log(self, record: dict) -> None:
        for adapter in self.adapters.values():
            adapter.log(record)

    def log_table(self, name: str, step: int, rows: list[dict]) -> None:
        if rows:
            for adapter in self.adapters.values():
                adapter.log_table(name, step, rows)

    def finish(self) -> None:
        adapters, self.adapters = self.adapters, {}  # once, even if finish is called again
        for adapter in adapters.values():
            adapter.finish()


def start_trackers(config, output_dir, start_step: int = 0) -> Trackers:
    """Start `config.report_to`'s trackers for the run in `output_dir` (rank 0 only); a run resumed at
    `start_step` > 0 continues the tracker runs whose ids output_dir/trackers.json keeps."""
    names = resolve_report_to(config.report_to)
    if not names:
        return Trackers()
    output_dir = Path(output_dir)
    state_path = output_dir / STATE_FILE
    previous = json.loads(state_path.read_text(encoding="utf-8")) if start_step and state_path.is_file() else {}
    run_name = config.run_name or output_dir.resolve().name
    values = to_dict(config)
    adapters, ids = {}, {}
    for name in names:
        adapter = ADAPTERS[name]()
        try:
            ids[name] = adapter.start(values, run_name, output_dir, config.tracker_project, previous.get(name), start_step)
        except Exception as exc:  # the tracker's own setup (a server URI, a login): one line, not its traceback
            Trackers(adapters).finish()
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(f"report_to={name}: {name} could not start the run: {reason}; fix its setup or leave {name} out of report_to") from exc
        adapters[name] = adapter
    state_path.write_text(json.dumps(ids, indent=1) + "\n", encoding="utf-8")
    return Trackers(adapters)
