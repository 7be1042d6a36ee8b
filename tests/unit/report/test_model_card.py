"""final/README.md: the front matter names hub models and data sets (never local paths), the body the
method's paper, the right transformers class, the last metrics and the resolved config."""

from __future__ import annotations

import json

import yaml

from posttrain import config_for
from posttrain.report.model_card import last_metrics, model_card


def _final(tmp_path, architecture: str):
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    return final


def _split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    _, front, body = card.split("---\n", 2)
    return yaml.safe_load(front), body


def test_dpo_card_from_hub_model_and_data(tmp_path):
    final = _final(tmp_path, "Qwen2ForCausalLM")
    config = config_for("dpo", model="Qwen/Qwen2.5-0.5B-Instruct", dataset="trl-lib/ultrafeedback_binarized",
                        loss_type="ipo", output_dir=str(final.parent))
    meta, body = _split(model_card("dpo", config, {"step": 7, "loss": 0.25, "rewards/accuracies": 0.75}, "me/dpo-model", [], pushed=True))
    assert meta == {"library_name": "posttrain", "pipeline_tag": "text-generation", "tags": ["posttrain", "dpo", "ipo", "transformers"],
                    "base_model": "Qwen/Qwen2.5-0.5B-Instruct", "datasets": ["trl-lib/ultrafeedback_binarized"]}
    assert body.startswith("\n# dpo-model\n") and "Rafailov et al. 2023, Direct Preference Optimization (arXiv:2305.18290)" in body
    assert 'model = AutoModelForCausalLM.from_pretrained("me/dpo-model")' in body
    assert "Last record of metrics.jsonl (step 7):" in body and "| loss | 0.25 |" in body and "| rewards/accuracies | 0.75 |" in body
    config_block = body.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config_block)["loss_type"] == ["ipo"] and yaml.safe_load(config_block)["model"] == "Qwen/Qwen2.5-0.5B-Instruct"


def test_reward_model_card_from_local_files(tmp_path):
    final = _final(tmp_path, "LlamaForSequenceClassification")
    data = tmp_path / "pairs.jsonl"
    data.write_text("")
    config = config_for("rm", model=str(tmp_path), dataset=str(data), output_dir=str(final.parent))
    meta, body = _split(model_card("rm", config, {}, str(final), []))
    assert meta == {"library_name": "posttrain", "pipeline_tag": "text-classification", "tags": ["posttrain", "rm", "transformers"]}
    assert "from transformers import AutoModelForSequenceClassification\n" in body
    assert f'AutoModelForSequenceClassification.from_pretrained("{final}")' in body
    assert f"reward_funcs=[reward_model:path={final}]" in body and "## Final metrics" not in body
    assert f"`posttrain report {final.parent}` draws them" in body  # no figures drawn: the card says how


def test_embedded_model_card_carries_the_package_license(tmp_path):
    final = _final(tmp_path, "LlamaForCausalLM")
    config = config_for("sft", output_dir=str(final.parent))
    meta, body = _split(model_card("sft", config, {}, str(final), [("Loss", "figures/loss.png")]))
    assert meta["license"] == "apache-2.0" and "base_model" not in meta and "datasets" not in meta
    assert "the embedded task `arithmetic`" in body and "![Loss](figures/loss.png)" in body


def test_last_metrics_reads_the_last_record_else_the_result(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5, "note": "x", "done": true}\n')
    assert last_metrics(tmp_path, {"loss": 9.0}) == {"step": 2, "loss": 1.5}
    assert last_metrics(tmp_path / "nothing", {"accuracy": 0.5, "iteration": 3}) == {"accuracy": 0.5, "iteration": 3}


def test_lora_adapter_card_loads_with_peft(tmp_path):
    """merge_lora=false: final/ holds adapter_config.json (no config.json); the card says to load it with peft."""
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps({"task_type": "SEQ_CLS", "peft_type": "LORA"}))
    config = config_for("rm", dataset="me/prefs", lora=True, merge_lora=False, output_dir=str(final.parent))
    meta, body = _split(model_card("rm", config, {}, "me/rm-lora", [], pushed=True))
    assert meta["pipeline_tag"] == "text-classification"
    assert "from peft import AutoPeftModelForSequenceClassification" in body
    assert 'model = AutoPeftModelForSequenceClassification.from_pretrained("me/rm-lora")' in body
    assert "- Architecture: a LoRA adapter (peft) on the base model, ForSequenceClassification" in body
