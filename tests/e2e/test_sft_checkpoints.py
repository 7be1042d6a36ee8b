"""Loadable checkpoints: each checkpoints/step-N/ is also a save_pretrained directory (the adapter alone
under LoRA) that plain transformers and `model=` load, with the weights training had at step N;
resume_from continues from any checkpoint exactly; an adapter-only directory is a model= for every stage."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import dpo_config, preference_rows, read_metrics, sft_config, sft_rows, without_timing, write_jsonl
from posttrain.algorithms.dpo import run_dpo
from posttrain.algorithms.sft import run_sft
from posttrain.cli import main
from posttrain.errors import ConfigError
from posttrain.models import apply_lora, load_causal_lm, load_tokenizer, save_model
from posttrain.train.scaffold import load_model_for

IDS = torch.tensor([[2, 7, 11, 4, 6, 9]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IDS).logits


def _step_weights(base: str, step_dir, lora: bool):
    """The training model at a checkpoint's step, rebuilt the way resume does: base (+ fresh adapters)
    with model.pt's trainable tensors loaded."""
    model = load_causal_lm(base)
    if lora:
        model = apply_lora(model, r=4, alpha=8, dropout=0.0, target_modules=["all-linear"])
    missing = model.load_state_dict(torch.load(step_dir / "model.pt", weights_only=False), strict=False)
    assert not missing.unexpected_keys
    return model


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_each_checkpoint_loads_with_from_pretrained_as_the_step_it_saved(tmp_path, tiny_llama, lora):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(16))
    extra = dict(lora=True, lora_r=4, lora_alpha=8, merge_lora=False) if lora else {}
    run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=2, save_steps=1, keep_last=0, output_dir=str(tmp_path / "a"), **extra))
    steps = tmp_path / "a" / "checkpoints"
    files = {p.name for p in (steps / "step-1").iterdir()}
    assert {"model.pt", "optimizer.pt", "trainer_state.pt", "tokenizer_config.json"} <= files
    assert ({"adapter_config.json", "adapter_model.safetensors"} if lora else {"config.json", "model.safetensors", "generation_config.json"}) <= files
    for step in (1, 2):
        plain = AutoModelForCausalLM.from_pretrained(steps / f"step-{step}")  # an adapter dir: transformers finds the base itself
        assert torch.equal(_logits(plain), _logits(_step_weights(tiny_llama, steps / f"step-{step}", lora)))
    assert not torch.equal(_logits(load_causal_lm(str(steps / "step-1"))), _logits(load_causal_lm(tiny_llama)))
    assert torch.equal(_logits(load_causal_lm(str(steps / "step-2"))), _logits(load_causal_lm(str(tmp_path / "a" / "final"))))


def test_the_cli_starts_a_run_from_a_checkpoint(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=1, save_steps=1, output_dir=str(tmp_path / "a")))
    code = main(["sft", f"model={tmp_path / 'a' / 'checkpoints' / 'step-1'}", f"dataset={data}", "device=cpu", "max_steps=1",
                 "batch_size=4", "max_length=128", f"output_dir={tmp_path / 'b'}"])  # the CLI's entry point, in this process
    assert code == 0
    assert read_metrics(tmp_path / "b")[-1]["step"] == 1 and (tmp_path / "b" / "final" / "model.safetensors").is_file()


def test_resume_from_another_runs_checkpoint_equals_the_uninterrupted_run(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(24))
    common = dict(model=tiny_llama, dataset=data, max_steps=4, save_steps=2, keep_last=0, lr_scheduler="cosine", warmup_steps=1)
    run_sft(sft_config(output_dir=str(tmp_path / "whole"), **common))
    source = tmp_path / "whole" / "checkpoints" / "step-2"
    run_sft(sft_config(output_dir=str(tmp_path / "other"), resume_from=str(source), **common))
    assert without_timing(read_metrics(tmp_path / "other")) == without_timing(read_metrics(tmp_path / "whole"))
    assert [r["step"] for r in read_metrics(tmp_path / "other")] == [1, 2, 3, 4]
    assert torch.equal(_logits(load_causal_lm(str(tmp_path / "other" / "final"))), _logits(load_causal_lm(str(tmp_path / "whole" / "final"))))
    # an older step of this same run: its own metrics are cut back to that step, then rewritten
    run_sft(sft_config(output_dir=str(tmp_path / "whole"), resume_from=str(source), **common))
    assert [r["step"] for r in read_metrics(tmp_path / "whole")] == [1, 2, 3, 4]


def test_resume_from_what_is_not_a_checkpoint_or_another_config_is_one_clear_error(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    with pytest.raises(ConfigError, match=r"resume_from .*nope is not a checkpoint \(it does not exist\); point it at a RUN/checkpoints/step-N"):
        run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=1, output_dir=str(tmp_path / "x"), resume_from=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match=r"is not a checkpoint \(no model.pt, optimizer.pt, trainer_state.pt\)"):
        run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=1, output_dir=str(tmp_path / "x"), resume_from=tiny_llama))
    run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=1, save_steps=1, output_dir=str(tmp_path / "a")))
    with pytest.raises(ConfigError, match="was written with other learning_rate"):
        run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=2, learning_rate=0.5, output_dir=str(tmp_path / "b"),
                           resume_from=str(tmp_path / "a" / "checkpoints" / "step-1")))
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()


@pytest.fixture
def adapter_dir(tmp_path, tiny_llama):
    """An adapter-only directory (merge_lora=false) whose adapters are far from zero, and base + adapter's logits."""
    torch.manual_seed(0)
    model = apply_lora(load_causal_lm(tiny_llama), r=4, alpha=8, dropout=0.0, target_modules=["all-linear"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    save_model(model, load_tokenizer(tiny_llama), tmp_path / "adapter", merge_lora=False)
    assert not (tmp_path / "adapter" / "config.json").exists()
    return str(tmp_path / "adapter"), _logits(model)


@pytest.mark.parametrize("lora", [False, True], ids=["merged", "continued"])
def test_an_adapter_directory_is_a_model_and_its_own_dpo_reference(tmp_path, adapter_dir, lora):
    """model=ADAPTER starts from base + adapter (merged for a full run; the same adapter kept training with
    lora=true), and DPO's reference is that same model: the first step's loss is -log σ(0) = ln 2 exactly."""
    path, expected = adapter_dir
    config = dpo_config(model=path, lora=lora, max_steps=1, output_dir=str(tmp_path / "dpo"),
                        dataset=write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8)))
    start = load_model_for(config, device="cpu")
    assert hasattr(start, "peft_config") == lora
    torch.testing.assert_close(_logits(start), expected, atol=1e-5, rtol=0)
    metrics = run_dpo(config)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert load_tokenizer(path).chat_template == load_tokenizer(str(tmp_path / "dpo" / "final")).chat_template
