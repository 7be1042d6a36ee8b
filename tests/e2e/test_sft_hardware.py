"""SFT runs with the hardware knobs: packing under attn_implementation=eager, and QLoRA (load_in_4bit /
load_in_8bit, bitsandbytes' CPU backend here, CUDA where there is one)."""

import json

import pytest
import torch

from conftest import sft_config, sft_rows, write_jsonl
from posttrain.algorithms.sft import run_sft
from posttrain.models.hardware import weights_dtype
from posttrain.train import loop
from posttrain.train.scaffold import load_model_for


def test_packing_under_eager_still_attends_within_each_example(tmp_path, tiny_llama):
    """eager is switched to the per-example packed kernel (check_packing_support would refuse a model whose
    attention crossed example boundaries), so the run trains."""
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    metrics = run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=1, packing=True, attn_implementation="eager",
                                 output_dir=str(tmp_path / "run")))
    assert metrics["loss"] > 0


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("bits, device", [(4, "cpu"), (8, "cpu"), pytest.param(4, "cuda", marks=CUDA)])
def test_qlora_trains_the_adapter_and_leaves_the_quantized_base_alone(tmp_path, tiny_llama, monkeypatch, bits, device):
    """2 steps of sft with load_in_4bit (nf4, bitsandbytes' CPU backend here; CUDA where there is one) or
    load_in_8bit: the LoRA B matrices leave zero, the quantized weights stay bit for bit as loaded, and
    final/ (merged) is a model in the weights dtype with no quantization_config."""
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes")
    loaded = []

    def capture(*args, **kwargs):
        model = load_model_for(*args, **kwargs)
        loaded.append((model, {n: p.detach().clone() for n, p in model.named_parameters() if p.dtype in (torch.uint8, torch.int8)}))
        return model

    monkeypatch.setattr(loop, "load_model_for", capture)
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    run_sft(sft_config(model=tiny_llama, dataset=data, max_steps=2, lora=True, lora_r=4, **{f"load_in_{bits}bit": True},
                       device=device, output_dir=str(tmp_path / "run")))
    model, quantized = loaded[0]
    assert quantized and all(torch.equal(p, quantized[n]) for n, p in model.named_parameters() if n in quantized)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    final = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert "quantization_config" not in final and final["dtype"] == weights_dtype(None, device)  # bfloat16 on a GPU
