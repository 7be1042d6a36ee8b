"""SFT runs: eval loss is the token mean of the final model, language-modeling rows, LoRA, mixed precision."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import read_metrics, sft_config, write_jsonl
from posttrain.algorithms.sft import load_examples, run_sft
from posttrain.models.loading import load_tokenizer


def test_eval_loss_is_the_token_mean_of_the_final_model(tiny_llama, sft_data, tmp_path):
    train_file, eval_file = sft_data
    out = tmp_path / "run"
    last = run_sft(sft_config(model=tiny_llama, dataset=train_file, eval_dataset=eval_file, output_dir=str(out), max_steps=3))
    model = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    tokenizer = load_tokenizer(str(out / "final"))
    nll, count = 0.0, 0
    for ex in load_examples(tokenizer, eval_file, None, sft_config()):
        ids = torch.tensor([ex["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        mask = torch.tensor(ex["completion_mask"][1:], dtype=torch.bool)
        nll += F.cross_entropy(logits[mask], ids[0, 1:][mask], reduction="sum").item()
        count += int(mask.sum())
    assert last["eval_loss"] == pytest.approx(nll / count, rel=1e-5)


def test_language_modeling_rows(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "text.jsonl", [{"text": f"The sky is blue. {i} The sea is green."} for i in range(16)])
    out = tmp_path / "run"
    run_sft(sft_config(model=tiny_llama, dataset=data, output_dir=str(out), max_steps=2))
    assert len(read_metrics(out)) == 2


def test_lora_trains_only_adapters_and_final_is_merged(tiny_llama, sft_data, tmp_path):
    train_file, _ = sft_data
    out = tmp_path / "run"
    run_sft(sft_config(model=tiny_llama, dataset=train_file, output_dir=str(out), lora=True, lora_r=4, max_steps=3,
                       save_steps=3, learning_rate=1e-2))
    saved = torch.load(out / "checkpoints" / "step-3" / "model.pt")
    assert saved and all("lora_" in k for k in saved)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    final = load_file(out / "final" / "model.safetensors")
    assert not any("lora" in k for k in final)
    merged = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    assert set(merged) == set(base)
    assert torch.equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])  # not an adapter target
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])


def test_bf16_mixed_precision_runs(tiny_llama, sft_data, tmp_path):
    train_file, _ = sft_data
    out = tmp_path / "run"
    run_sft(sft_config(model=tiny_llama, dataset=train_file, output_dir=str(out), mixed_precision="bf16", max_steps=2))
    records = read_metrics(out)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert AutoModelForCausalLM.from_pretrained(out / "final").dtype == torch.float32  # weights stay fp32
