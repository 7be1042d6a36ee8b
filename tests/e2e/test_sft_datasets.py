"""`posttrain sft` with datasets as users name them (issue 18, point 3): a streamed mixture of two files
whose columns agree after renames trains for max_steps; bad dataset options give one line and exit 2."""

from __future__ import annotations

import datasets
import pytest

from conftest import read_metrics, sft_rows, write_jsonl
from posttrain.cli import main

FAST = ["device=cpu", "max_length=96", "batch_size=2", "logging_steps=1", "lr_scheduler=constant"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub; the tokenized-examples cache under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


@pytest.fixture
def files(tmp_path):
    rows = sft_rows(12, conversational=False)
    write_jsonl(tmp_path / "qa.jsonl", [{"question": r["prompt"], "reply": r["completion"]} for r in rows])
    write_jsonl(tmp_path / "pc.jsonl", sft_rows(12, seed=1, conversational=False))
    return tmp_path


def test_a_streamed_mixture_with_renames_trains_for_max_steps(files, capsys):
    out = files / "run"
    argv = ["sft", *FAST, f"output_dir={out}", f"dataset=[{files / 'qa.jsonl'}:0.5,{files / 'pc.jsonl'}:0.5]",
            "dataset_columns={question: prompt, reply: completion}", "streaming=true", "max_steps=2"]
    assert main(argv) == 0, capsys.readouterr().err
    records = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2] and all(r["loss"] > 0 for r in records)
    assert "epoch" not in records[0]  # a stream has no epochs
    assert (out / "final" / "config.json").exists()


@pytest.mark.parametrize("extra, fragments", [
    (["dataset={files}/qa.jsonl", "streaming=true"], ["streaming=true", "set max_steps"]),
    (["dataset=[{files}/qa.jsonl:0.6,{files}/pc.jsonl:0.6]", "max_steps=1"], ["weights sum to 1.2, not 1"]),
    (["dataset=[{files}/qa.jsonl:1.5,{files}/pc.jsonl:-0.5]", "max_steps=1"], ["must be > 0"]),
    (["dataset=json", "data_files={files}/nothing-*.jsonl", "max_steps=1"], ["nothing-*.jsonl' matches no file"]),
    (["dataset={files}/qa.jsonl", "dataset_columns={query: prompt}", "max_steps=1"], ["qa.jsonl: has no column 'query' to rename"]),
    (["dataset={files}/repo", "dataset_config=nope", "max_steps=1"], ["repo: datasets.load_dataset could not read it (BuilderConfig 'nope' not found. Available: ['main'])"]),
    (["dataset=[{files}/qa.jsonl:0.5,{files}/pc.jsonl:0.5]", "max_steps=1"], ["columns differ after renames"]),
])
def test_bad_dataset_options_give_one_line_and_exit_2(files, capsys, extra, fragments):
    (files / "repo").mkdir()
    write_jsonl(files / "repo" / "main.jsonl", sft_rows(4, conversational=False))
    (files / "repo" / "README.md").write_text("---\nconfigs:\n- config_name: main\n  data_files: main.jsonl\n---\n")
    out = files / "run"
    assert main(["sft", *FAST, f"output_dir={out}", *[e.replace("{files}", str(files)) for e in extra]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posttrain: error: "), lines
    assert all(f in lines[0] for f in fragments), lines[0]
    assert not (out / "final").exists()
