"""The Python API takes objects: a datasets.Dataset or a list of rows (copied to output_dir/data/ so
config.yaml reproduces the run), a model and tokenizer object (trained in place, as TRL does), and
transformers TrainerCallbacks (hooks with the loop's global_step; should_training_stop ends the run
cleanly; EarlyStoppingCallback on eval_loss)."""

from __future__ import annotations

import json

import datasets
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, TrainerCallback

import posttrain
from conftest import SFT_KEYWORDS as SFT, final_weights, preference_rows, read_metrics, sft_rows, without_timing, write_jsonl


def config_of(run) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_a_dataset_object_trains_sft_as_the_same_rows_in_a_file(tiny_llama, tmp_path):
    rows = sft_rows(16)
    posttrain.sft(model=tiny_llama, dataset=datasets.Dataset.from_list(rows), output_dir=str(tmp_path / "obj"), save_steps=2, **SFT)
    posttrain.sft(model=tiny_llama, dataset=write_jsonl(tmp_path / "rows.jsonl", rows), output_dir=str(tmp_path / "file"), **SFT)
    copy = tmp_path / "obj" / "data" / "dataset.jsonl"
    assert config_of(tmp_path / "obj")["dataset"] == str(copy)  # the run is reproducible from the CLI
    assert [json.loads(line) for line in copy.read_text().splitlines()] == rows
    assert without_timing(read_metrics(tmp_path / "obj")) == without_timing(read_metrics(tmp_path / "file"))
    assert [r["step"] for r in read_metrics(tmp_path / "obj")] == [1, 2]
    # later, from config.yaml alone (what `posttrain sft config=... resume=true max_steps=3` reads)
    posttrain.run(posttrain.config_for("sft", tmp_path / "obj" / "config.yaml", resume=True, max_steps=3))
    assert [r["step"] for r in read_metrics(tmp_path / "obj")] == [1, 2, 3]


def test_a_list_of_dicts_trains_dpo(tiny_llama, tmp_path):
    out = tmp_path / "dpo"
    metrics = posttrain.dpo(model=tiny_llama, dataset=preference_rows(8), output_dir=str(out), max_steps=2, batch_size=4,
                            max_length=64, learning_rate=1e-3, logging_steps=1, device="cpu")
    assert config_of(out)["dataset"] == str(out / "data" / "dataset.jsonl")
    assert metrics["step"] == 2 and (out / "final" / "config.json").is_file()
    # the first step starts at the reference: loss log(2) exactly
    assert read_metrics(out)[0]["loss"] == pytest.approx(0.6931472, abs=1e-5)


class Recorder(TrainerCallback):
    def __init__(self):
        self.calls: list[tuple] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.calls.append(("begin", state.global_step, state.max_steps, args.output_dir))

    def on_step_begin(self, args, state, control, **kwargs):
        self.calls.append(("step_begin", state.global_step))

    def on_step_end(self, args, state, control, **kwargs):
        self.calls.append(("step_end", state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.calls.append(("log", state.global_step, logs["loss"]))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.calls.append(("evaluate", state.global_step, metrics["eval_loss"]))

    def on_save(self, args, state, control, **kwargs):
        self.calls.append(("save", state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        self.calls.append(("end", state.global_step, len(state.log_history), kwargs["model"] is not None))


def test_a_model_and_tokenizer_object_train_in_place_and_callbacks_see_each_step(tiny_llama, tmp_path):
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_llama)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out, recorder = tmp_path / "run", Recorder()
    posttrain.sft(model=model, tokenizer=tokenizer, dataset=sft_rows(16), eval_dataset=sft_rows(4, seed=1), eval_steps=2,
                  save_steps=2, callbacks=[recorder], output_dir=str(out), **{**SFT, "max_steps": 3})
    after, saved = model.state_dict(), final_weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the object itself was trained
    assert all(torch.equal(after[k], saved[k]) for k in saved)  # ... into the weights final/ holds
    assert config_of(out)["model"].startswith("python:model/LlamaForCausalLM")
    logged = read_metrics(out)
    evals = {r["step"]: r["eval_loss"] for r in logged if "eval_loss" in r}
    assert recorder.calls == [
        ("begin", 0, 3, str(out)),
        ("step_begin", 0), ("step_end", 1), ("log", 1, logged[0]["loss"]),
        ("step_begin", 1), ("step_end", 2), ("evaluate", 2, evals[2]), ("log", 2, logged[1]["loss"]), ("save", 2),
        ("step_begin", 2), ("step_end", 3), ("evaluate", 3, evals[3]), ("log", 3, logged[2]["loss"]), ("save", 3),
        ("end", 3, 3, True),
    ]
    # the same process resumes by passing the same objects again (config.yaml names them by a stable spec)
    resumed = Recorder()
    posttrain.sft(model=model, tokenizer=tokenizer, dataset=sft_rows(16), eval_dataset=sft_rows(4, seed=1), eval_steps=2,
                  save_steps=2, callbacks=[resumed], output_dir=str(out), resume=True, **{**SFT, "max_steps": 4})
    assert resumed.calls[0] == ("begin", 3, 4, str(out)) and [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]


class StopAfter(TrainerCallback):
    """Given as a class, as transformers also takes callbacks."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= 2


def test_should_training_stop_ends_the_run_cleanly(tiny_llama, tmp_path):
    out = tmp_path / "stop"
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "unused"}]),
                                   "test": datasets.Dataset.from_list(sft_rows(16))})
    metrics = posttrain.sft(model=tiny_llama, dataset=splits, dataset_split="test", callbacks=[StopAfter],
                            output_dir=str(out), **{**SFT, "max_steps": 5, "logging_steps": 4})
    assert [r["step"] for r in read_metrics(out)] == [2] and metrics["step"] == 2  # the stopping step is logged
    assert (out / "final" / "config.json").is_file()
    assert config_of(out)["dataset"] == str(out / "data" / "dataset")  # a DatasetDict keeps its splits on disk
    assert (out / "data" / "dataset" / "dataset_dict.json").is_file()


def test_transformers_early_stopping_callback_stops_on_eval_loss(tiny_llama, tmp_path):
    out = tmp_path / "early"
    # an improvement under the threshold counts as none: the second evaluation runs out of patience
    stopper = EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=100.0)
    posttrain.sft(model=tiny_llama, dataset=sft_rows(16), eval_dataset=sft_rows(4, seed=1), eval_steps=1,
                  callbacks=[stopper], output_dir=str(out), **{**SFT, "max_steps": 5})
    assert [r["step"] for r in read_metrics(out)] == [1, 2] and (out / "final" / "config.json").is_file()


def test_a_peft_model_object_trains_its_own_adapters(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    posttrain.sft(model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_llama), dataset=sft_rows(8),
                  output_dir=str(tmp_path / "lora"), **{**SFT, "max_steps": 1})
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all("lora_B" in k for k in changed)  # only the adapters moved (lora_B starts at zero)
    merged = final_weights(tmp_path / "lora")  # final/ holds the merged weights plain transformers loads
    assert "model.layers.0.self_attn.q_proj.weight" in merged and not any("lora" in k for k in merged)
