"""SFT: the loss (token mean over the whole batch, seed 000 eq. 19), completion-only masks, eval loss,
LoRA, mixed precision."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import read_metrics, sft_config, sft_rows, write_jsonl
from posttrain.algorithms.sft import SFT, as_rows, load_examples, run_sft
from posttrain.data.collate import IGNORE_INDEX
from posttrain.losses import count_tokens, sft_loss
from posttrain.models.loading import load_tokenizer


def test_loss_is_token_mean_over_the_batch_not_mean_of_means():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[1, 2, 3, 4, 5, 6], [7, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    nll = -torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    mask = labels != IGNORE_INDEX
    token_mean = nll[mask].sum() / mask.sum()
    mean_of_means = torch.stack([nll[i][mask[i]].mean() for i in range(2)]).mean()
    assert count_tokens(labels) == 7
    torch.testing.assert_close(sft_loss(logits, labels, num_tokens=count_tokens(labels)), token_mean)
    assert not torch.allclose(token_mean, mean_of_means)
    # split into micro-batches normalised by the whole batch's count: the sum is the large-batch loss
    parts = sft_loss(logits[:1], labels[:1], num_tokens=7) + sft_loss(logits[1:], labels[1:], num_tokens=7)
    torch.testing.assert_close(parts, token_mean)


def test_loss_upcasts_half_precision_logits():
    logits = torch.randn(5, 50).to(torch.bfloat16)
    labels = torch.arange(5)
    ref = F.cross_entropy(logits.float(), labels, reduction="sum")
    assert sft_loss(logits, labels).dtype == torch.float32
    torch.testing.assert_close(sft_loss(logits, labels), ref)


def test_completion_only_loss_option(tiny_qwen2, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(4))
    tokenizer = load_tokenizer(tiny_qwen2)
    counts = {}
    for completion_only in (True, False):
        config = sft_config(dataset=data, completion_only_loss=completion_only)
        rows = as_rows(load_examples(tokenizer, data, None, config), config)
        batch = SFT(tokenizer.pad_token_id).collate(rows)
        counts[completion_only] = SFT(tokenizer.pad_token_id).batch_weight(batch)
    total = sum(len(r[0]["input_ids"]) - 1 for r in rows)
    assert 0 < counts[True] < counts[False] == total


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
