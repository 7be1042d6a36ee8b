"""report_to's trackers (train/trackers.py): the option on every training stage, its bad values (one line, exit
2), tables of sample completions read back from each tracker, and a resumed run continuing the same
tracker runs. Everything stays on this machine: wandb offline, MLflow and Trackio in the run directory."""

import importlib.util
import json
import sqlite3
import sys

import pytest

from conftest import sft_config
from posttrain.cli import main
from posttrain.errors import ConfigError
from posttrain.options import TRACKER_PACKAGES, TrainOptions, resolve_report_to
from posttrain.stages import STAGES
from posttrain.train.trackers import Trackers, start_trackers

TRAINING_STAGES = ("sft", "distill", "rm", "prm", "dpo", "kto", "grpo", "rloo", "ppo", "online_dpo", "rejection", "constitution")
ALL = list(TRACKER_PACKAGES)
# find_spec, not importorskip: importing trackio here would fix its TRACKIO_DIR before a test sets it
needs_all = pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in TRACKER_PACKAGES.values()),
                               reason="the trackers are optional (posttrain[tensorboard], [wandb], [mlflow], [trackio])")


@pytest.mark.parametrize("stage", TRAINING_STAGES)
def test_every_training_stage_has_the_tracking_options(stage, capsys):
    assert issubclass(STAGES[stage].config_class, TrainOptions)
    assert main([stage, "--help"]) == 0
    shown = capsys.readouterr().out
    assert all(key in shown for key in ("report_to", "run_name", "tracker_project"))


@needs_all
def test_none_all_and_names_resolve(monkeypatch):
    assert resolve_report_to(["none"]) == [] and resolve_report_to([]) == []
    assert resolve_report_to(["mlflow", "none", "wandb", "mlflow"]) == ["mlflow", "wandb"]
    assert resolve_report_to(["all"]) == ["tensorboard", "wandb", "mlflow", "trackio"]
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed: "all" leaves it out
    assert resolve_report_to(["all"]) == ["tensorboard", "mlflow", "trackio"]


def test_unknown_tracker_is_one_line_exit_2(tmp_path, capsys):
    assert main(["sft", "report_to=[tensorboard,comet]", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "posttrain: error: config key 'report_to' got 'comet'; expected one of none, all, tensorboard, wandb, mlflow, trackio"
    assert not (tmp_path / "run").exists()


def test_missing_package_is_one_line_exit_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails, as without the package
    with pytest.raises(ConfigError, match=r"^report_to=wandb needs the wandb package: pip install 'posttrain\[wandb\]'"):
        sft_config(report_to=["wandb"])
    assert main(["sft", "report_to=wandb", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["posttrain: error: report_to=wandb needs the wandb package: pip install 'posttrain[wandb]' (or leave wandb out of report_to)"]


@needs_all
def test_tables_and_resume_read_back_from_each_tracker(tmp_path, monkeypatch):
    """Two rows of completions at step 2, then a run resumed at step 2 logs step 3: wandb and MLflow continue
    the same run ids, trackio the same run, and every tracker holds the table."""
    for key in ("WANDB_DIR", "MLFLOW_TRACKING_URI", "TENSORBOARD_LOGDIR", "WANDB_PROJECT", "MLFLOW_EXPERIMENT_NAME", "TRACKIO_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    monkeypatch.setenv("TRACKIO_DIR", str(out / "trackio"))
    import trackio.utils

    if trackio.utils.TRACKIO_DIR != out / "trackio":
        pytest.skip("trackio was imported earlier in this process, with another TRACKIO_DIR")
    out.mkdir()
    config = sft_config(report_to=ALL, output_dir=str(out), run_name="tables", tracker_project="unit")
    rows = [{"step": 2, "prompt": "2+2=", "completion": "<answer>4</answer>", "reward": 1.0, "advantage": 0.5},
            {"step": 2, "prompt": "2+2=", "completion": "<answer>5</answer>", "reward": 0.0, "advantage": -0.5}]

    trackers = start_trackers(config, out)
    for step, loss in ((1, 0.75), (2, 0.5)):
        trackers.log({"step": step, "loss": loss, "eval_loss": None})
    trackers.log_table("completions", 2, rows)
    trackers.finish()
    first = json.loads((out / "trackers.json").read_text())
    resumed = start_trackers(config, out, start_step=2)
    resumed.log({"step": 3, "loss": 0.25})
    resumed.finish()
    assert json.loads((out / "trackers.json").read_text()) == first  # the same wandb and MLflow runs

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 0.75), (2, 0.5), (3, 0.25)]
    (table,) = events.Tensors("completions/text_summary")
    assert table.step == 2 and table.tensor_proto.string_val[0].decode().splitlines() == [
        "| step | prompt | completion | reward | advantage |", "|---|---|---|---|---|",
        "| 2 | 2+2= | <answer>4</answer> | 1.0 | 0.5 |", "| 2 | 2+2= | <answer>5</answer> | 0.0 | -0.5 |"]

    runs = sorted((out / "wandb").glob(f"offline-run-*-{first['wandb']}"))
    assert len(runs) == 2  # the resumed run has the same id (resume="allow"): `wandb sync` appends it to the first
    (table_file,) = runs[0].glob("files/media/table/completions_2_*.table.json")
    assert json.loads(table_file.read_text()) == {"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    assert [(m.step, m.value) for m in client.get_metric_history(first["mlflow"], "loss")] == [(1, 0.75), (2, 0.5), (3, 0.25)]
    assert client.get_metric_history(first["mlflow"], "eval_loss") == []  # None (non-finite) is left out
    table_path = client.download_artifacts(first["mlflow"], "completions/step_000002.json", str(tmp_path))
    logged = json.loads(open(table_path).read())
    assert logged["columns"] == list(rows[0]) and logged["data"] == [list(r.values()) for r in rows]

    with sqlite3.connect(out / "trackio" / "unit.db") as db:
        logs = [(step, json.loads(m)) for step, m in db.execute("SELECT step, metrics FROM metrics WHERE run_name = 'tables' ORDER BY id")]
        (run_ids,) = db.execute("SELECT COUNT(DISTINCT run_id) FROM metrics WHERE run_name = 'tables'").fetchone()
    assert [(s, m["loss"]) for s, m in logs if "loss" in m] == [(1, 0.75), (2, 0.5), (3, 0.25)] and run_ids == 1
    (table,) = [m["completions"] for _, m in logs if "completions" in m]
    assert table == {"_type": "trackio.table", "_value": rows}


def test_no_trackers_do_nothing(tmp_path):
    trackers = start_trackers(sft_config(output_dir=str(tmp_path / "run")), tmp_path / "run")
    assert not trackers and isinstance(trackers, Trackers)
    trackers.log({"step": 1, "loss": 1.0})
    trackers.finish()
    assert not (tmp_path / "run").exists()



@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="posttrain[mlflow] is not installed")
def test_a_tracker_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nope://nowhere")
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError) as raised:
        start_trackers(sft_config(report_to=["tensorboard", "mlflow"], output_dir=str(tmp_path / "run")), tmp_path / "run")
    message = str(raised.value)
    assert message.startswith("report_to=mlflow: mlflow could not start the run: ") and "nope" in message
    assert message.endswith("; fix its setup or leave mlflow out of report_to") and "\n" not in message
