"""`posttrain sft` with packing=true on tiny GPT-2: the loss falls, the config records packing, and final/ loads
in plain transformers with its default attention."""

from transformers import AutoModelForCausalLM

from conftest import read_metrics, sft_config, sft_rows, write_jsonl
from posttrain.algorithms.sft import run_sft


def test_sft_with_packing_end_to_end(tmp_path, tiny_gpt2):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(48, conversational=False))
    out = tmp_path / "run"
    run_sft(sft_config(model=tiny_gpt2, dataset=data, output_dir=str(out), packing=True, max_length=256,
                       batch_size=2, max_steps=3))
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["loss"] < records[0]["loss"]
    assert "packing: true" in (out / "config.yaml").read_text()
    final = AutoModelForCausalLM.from_pretrained(out / "final")  # plain transformers, default attention
    assert final.config._attn_implementation == "sdpa" and final.config.use_cache
