"""The training loop through SFT runs: accumulation = large batch, metrics, determinism, run dir,
checkpoints, and a pluggable step source (the shape online algorithms use)."""

import math
from pathlib import Path

import pytest
import torch
import transformers

from conftest import final_weights, read_metrics, sft_config, sft_rows, without_timing, write_jsonl
from posttrain.algorithms.sft import SFT, as_rows, load_examples, run_sft
from posttrain.errors import ConfigError, DataError
from posttrain.models.loading import load_causal_lm, load_tokenizer
from posttrain.data.steps import StepSource
from posttrain.train.loop import train


def test_gradient_accumulation_equals_large_batch(tmp_path, tiny_llama, sft_data):
    train_file, _ = sft_data
    runs = {}
    for bs, ga in [(8, 1), (4, 2), (2, 4)]:
        out = tmp_path / f"bs{bs}"
        run_sft(sft_config(model=tiny_llama, dataset=train_file, output_dir=str(out), batch_size=bs,
                           gradient_accumulation_steps=ga, max_steps=4, max_grad_norm=0.5))
        runs[(bs, ga)] = (read_metrics(out), final_weights(out))
    ref_metrics, ref_weights = runs[(8, 1)]
    for key, (metrics, weights) in runs.items():
        for a, b in zip(metrics, ref_metrics):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), key
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4), key
            assert a["num_tokens"] == b["num_tokens"]
        for name in ref_weights:
            torch.testing.assert_close(weights[name], ref_weights[name], rtol=1e-4, atol=1e-5)


def test_metrics_lines_and_run_dir(tmp_path, tiny_llama, sft_data):
    train_file, eval_file = sft_data
    out = tmp_path / "run"
    final = run_sft(sft_config(model=tiny_llama, dataset=train_file, eval_dataset=eval_file, output_dir=str(out),
                               max_steps=5, logging_steps=2, eval_steps=2, save_steps=2, keep_last=2,
                               lr_scheduler="linear", warmup_steps=2))
    records = read_metrics(out)
    assert [r["step"] for r in records] == [2, 4, 5]
    for r in records:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_second", "num_tokens", "epoch", "eval_loss"} <= set(r)
        assert math.isfinite(r["loss"]) and r["tokens_per_second"] > 0
    # lr logged is the one the step used: warm-up 0, 1/2, then linear decay over 3 steps
    assert records[0]["lr"] == pytest.approx(1e-3 * 0.5) and records[2]["lr"] == pytest.approx(1e-3 / 3)
    assert records[0]["num_tokens"] < records[1]["num_tokens"] < records[2]["num_tokens"]
    assert final == records[-1]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-4", "step-5"]  # keep_last=2; nothing temporary left over
    assert {"model.pt", "optimizer.pt", "trainer_state.pt"} <= {p.name for p in (out / "checkpoints" / "step-4").iterdir()}
    config_text = (out / "config.yaml").read_text()
    assert f"eval_dataset: {eval_file}" in config_text and "packing: false" in config_text
    model = transformers.AutoModelForCausalLM.from_pretrained(out / "final")
    assert transformers.AutoTokenizer.from_pretrained(out / "final").chat_template
    assert model.config.use_cache  # training turned the KV cache off per call, not in the saved config


def test_same_seed_same_metrics_and_weights(tmp_path, tiny_llama, sft_data):
    train_file, eval_file = sft_data
    results = []
    for name in ("a", "b"):
        run_sft(sft_config(model=tiny_llama, dataset=train_file, eval_dataset=eval_file, output_dir=str(tmp_path / name),
                           max_steps=4, eval_steps=2, lr_scheduler="cosine", warmup_ratio=0.25))
        results.append((without_timing(read_metrics(tmp_path / name)), final_weights(tmp_path / name)))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])
    other = tmp_path / "seed1"
    run_sft(sft_config(model=tiny_llama, dataset=train_file, output_dir=str(other), max_steps=4, seed=1))
    assert [r["loss"] for r in read_metrics(other)] != [r["loss"] for r in results[0][0]]


def test_refuses_to_clobber_a_run(tmp_path, tiny_llama, sft_data):
    train_file, _ = sft_data
    cfg = dict(model=tiny_llama, dataset=train_file, output_dir=str(tmp_path / "run"), max_steps=1)
    run_sft(sft_config(**cfg))
    with pytest.raises(ConfigError, match="already holds a finished run; set resume=true"):
        run_sft(sft_config(**cfg))
    with pytest.raises(ConfigError, match="learning_rate differ"):
        run_sft(sft_config(**cfg, resume=True, learning_rate=0.5))
    run_sft(sft_config(**{**cfg, "max_steps": 2}, overwrite_output_dir=True))
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]


def test_too_little_data_is_a_data_error(tmp_path, tiny_llama):
    small = write_jsonl(tmp_path / "small.jsonl", sft_rows(3))
    with pytest.raises(DataError, match="fewer than one optimizer step needs"):
        run_sft(sft_config(model=tiny_llama, dataset=small, output_dir=str(tmp_path / "run"), batch_size=4))
    assert not (tmp_path / "run").exists()


class OnlineLikeSource(StepSource):
    """Micro-batches made on demand, a varying number per step, with its own metrics (as an
    experience maker would): the loop must not care where they come from."""

    def __init__(self, rows, collate):
        self.rows, self.collate, self.made = rows, collate, 0

    def next_step(self, step):
        count = 1 + step % 2
        self.made += count
        return [self.collate(self.rows[(step + k) % len(self.rows):][:2]) for k in range(count)]

    def metrics(self):
        return {"reward": float(self.made)}


def test_pluggable_step_source(tmp_path, tiny_llama, sft_data):
    train_file, _ = sft_data
    config = sft_config(model=tiny_llama, dataset=train_file, output_dir=str(tmp_path / "run"), max_steps=3, logging_steps=1)
    tokenizer = load_tokenizer(tiny_llama)
    algorithm = SFT(tokenizer.pad_token_id)
    rows = as_rows(load_examples(tokenizer, train_file, None, config), config)
    source = OnlineLikeSource(rows, algorithm.collate)
    last = train(config, build_model=lambda: load_causal_lm(tiny_llama), tokenizer=tokenizer, algorithm=algorithm, source=source)
    assert source.made == 1 + 2 + 1
    assert [r["reward"] for r in read_metrics(tmp_path / "run")] == [1.0, 3.0, 4.0]
    assert "epoch" not in last and Path(tmp_path / "run" / "final" / "config.json").is_file()


def test_eval_on_start_logs_the_starting_model_at_step_0(tmp_path, tiny_llama, sft_data):
    train_file, eval_file = sft_data
    out = tmp_path / "run"
    run_sft(sft_config(model=tiny_llama, dataset=train_file, eval_dataset=eval_file, output_dir=str(out), max_steps=2,
                       learning_rate=0.0, eval_on_start=True))
    records = read_metrics(out)
    assert records[0]["step"] == 0 and "eval_loss" in records[0] and "loss" not in records[0]  # an evaluation, no step
    # nothing moved (learning rate 0): the loss before the first step is the loss at the end
    assert records[0]["eval_loss"] == pytest.approx(records[-1]["eval_loss"], rel=1e-6)
    assert [r["step"] for r in records] == [0, 1, 2]
