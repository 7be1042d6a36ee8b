"""`report_to`: one tiny SFT run logs to TensorBoard, wandb (offline), MLflow (file store) and Trackio (local
SQLite), all inside its run directory; each tracker's files are read back with the tracker's own reader and
hold exactly metrics.jsonl's numbers at the same steps, and the resolved config."""

import importlib.util
import json
import math
import struct

import pytest

from conftest import read_metrics, run_cli, sft_rows, write_jsonl

# find_spec, not importorskip: trackio fixes its TRACKIO_DIR when first imported (the unit tests set it first)
pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in ("tensorboard", "wandb", "mlflow", "trackio")),
                                reason="the trackers are optional (posttrain[tensorboard], [wandb], [mlflow], [trackio])")

# nothing leaves the machine, and each tracker picks its default place: the run directory
OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "WANDB_DIR": "", "TRACKIO_DIR": "",
           "MLFLOW_TRACKING_URI": "", "TENSORBOARD_LOGDIR": "", "WANDB_PROJECT": "", "MLFLOW_EXPERIMENT_NAME": "", "TRACKIO_PROJECT": ""}


def wandb_records(path):
    """The protobuf records of a .wandb file (LevelDB log format: 7-byte file header, then records with a
    7-byte header (crc, length, type) in 32 KiB blocks; a record may span blocks: first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # block padding
            pos += left
            continue
        parts, pos = parts + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def test_one_run_read_back_from_every_tracker(tmp_path, tiny_llama, monkeypatch):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(12))
    out = tmp_path / "run"
    proc = run_cli("sft", f"model={tiny_llama}", f"dataset={data}", f"output_dir={out}", "device=cpu", "max_length=128",
                   "batch_size=4", "max_steps=3", "logging_steps=1", "learning_rate=1e-3",
                   "report_to=[tensorboard,wandb,mlflow,trackio]", "tracker_project=tracking-test", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3]
    losses = [(r["step"], r["loss"]) for r in records]
    ids = json.loads((out / "trackers.json").read_text())
    assert set(ids) == {"tensorboard", "wandb", "mlflow", "trackio"} and ids["trackio"] == "run"  # run_name: output_dir's name

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(s, pytest.approx(v, rel=1e-6)) for s, v in losses]  # float32 events
    assert [e.step for e in events.Scalars("grad_norm")] == [1, 2, 3]
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"learning_rate": 0.001' in config_text and '"max_steps": 3' in config_text

    (run_file,) = (out / "wandb").glob(f"offline-run-*-{ids['wandb']}/run-{ids['wandb']}.wandb")
    history, config = {}, {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history[record.history.step.num] = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                                for item in record.history.item}
        elif kind == "run":
            assert record.run.project == "tracking-test" and record.run.display_name == "run"
        elif kind == "config":
            config |= {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.config.update}
    assert [(step, row["loss"]) for step, row in sorted(history.items())] == losses
    assert config["learning_rate"] == 0.001 and config["model"] == tiny_llama

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 reads (and writes) file stores only when told
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    assert [(m.step, m.value) for m in client.get_metric_history(ids["mlflow"], "loss")] == losses
    run = client.get_run(ids["mlflow"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["learning_rate"] == "0.001" and run.data.params["report_to"] == '["tensorboard", "wandb", "mlflow", "trackio"]'
    assert client.get_experiment(run.info.experiment_id).name == "tracking-test"

    import sqlite3

    with sqlite3.connect(out / "trackio" / "tracking-test.db") as db:  # trackio's local store: one SQLite file a project
        rows = db.execute("SELECT step, metrics FROM metrics WHERE run_name = 'run' ORDER BY step").fetchall()
        (config_json,) = db.execute("SELECT config FROM configs WHERE run_name = 'run'").fetchone()
    logged = [(step, json.loads(metrics)) for step, metrics in rows]
    assert [(step, m["loss"]) for step, m in logged] == losses
    assert all(m["lr"] == r["lr"] and math.isclose(m["grad_norm"], r["grad_norm"], rel_tol=0) for (_, m), r in zip(logged, records))
    assert json.loads(config_json)["learning_rate"] == 0.001
