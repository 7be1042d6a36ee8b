"""`posttrain rm`: saved models that plain transformers loads, K-wise rankings through the CLI, the reward
offset, LoRA / freezing options, bad input, and a learning run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from conftest import preference_rows, ranking_rows, read_metrics, rm_config, run_cli, write_jsonl
from posttrain.algorithms.rm import RewardModeling, build_reward_model, load_items, run_rm
from posttrain.cli import main
from posttrain.errors import ConfigError
from posttrain.models.loading import load_tokenizer
from posttrain.models.reward_model import (
    collate_sequences, load_reward_model, score_texts, sequence_rewards,
)
from posttrain.train.loop import prepare_model


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> str:
    return write_jsonl(tmp_path_factory.mktemp("rm-data") / "pairs.jsonl", preference_rows(16, conversational=True))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # gpt2's tokenizer pads with its eos
def test_final_loads_in_transformers_with_offset(arch, request, tmp_path, pairs_file):
    path = request.getfixturevalue(f"tiny_{arch}")
    out = tmp_path / "run"
    run_rm(rm_config(model=path, dataset=pairs_file, output_dir=str(out), max_steps=3))
    hf = AutoModelForSequenceClassification.from_pretrained(out / "final").eval()
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForSequenceClassification") and hf.config.num_labels == 1
    offset = config["reward_offset"]
    tok = load_tokenizer(str(out / "final"))
    items, _ = load_items(tok, pairs_file, None, rm_config(dataset=pairs_file))
    chosen = [item["sequences"][item["best"]] for item in items]
    batch = collate_sequences(chosen, tok.pad_token_id)
    with torch.no_grad():
        plain = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
        ours = sequence_rewards(load_reward_model(str(out / "final"), tok.pad_token_id), batch, offset=True)
    # plain transformers: our scores minus the offset; the offset makes the training chosen mean 0
    assert torch.allclose(ours, plain + offset, atol=1e-5)
    assert abs(float(ours.mean())) < 1e-5 and abs(offset) > 1e-4
    rows = preference_rows(16, conversational=True)
    texts = score_texts(hf, tok, [r["prompt"] for r in rows[:3]], [r["chosen"] for r in rows[:3]])
    assert texts == pytest.approx((plain[:3] + offset).tolist(), abs=1e-5)


def test_kwise_training_through_cli(tiny_llama, tmp_path, capsys):
    train, held = write_jsonl(tmp_path / "train.jsonl", ranking_rows(8)), write_jsonl(tmp_path / "eval.jsonl", ranking_rows(4))
    out = tmp_path / "run"
    code = main(["rm", f"model={tiny_llama}", f"dataset={train}", f"eval_dataset={held}", f"output_dir={out}", "max_steps=2",
                 "batch_size=2", "device=cpu", "logging_steps=1", "pooling=mean"])
    assert code == 0
    last = read_metrics(out)[-1]
    for key in ("loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "eval_accuracy", "eval_margin"):
        assert math.isfinite(last[key])
    assert last["margin"] == pytest.approx(last["chosen_reward"] - last["rejected_reward"], abs=1e-6)
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["reward_pooling"] == "mean" and "reward_offset" in config
    assert "reward_offset" in capsys.readouterr().out


def test_lora_trains_adapters_and_head(tiny_llama, tmp_path, pairs_file):
    config = rm_config(model=tiny_llama, dataset=pairs_file, output_dir=str(tmp_path / "run"), max_steps=2, lora=True,
                       lora_r=4, reward_offset="none")
    tok = load_tokenizer(tiny_llama)
    torch.manual_seed(config.seed)  # the loop seeds like this before it builds the model
    wrapped = prepare_model(build_reward_model(config, tok.pad_token_id), config)
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert any("score" in n for n in trainable) and all("lora_" in n or "score" in n for n in trainable)
    head = wrapped.get_base_model().score.original_module.weight.detach().clone()
    run_rm(config)
    final = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "final")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert not torch.allclose(final.score.weight, head)  # the head was trained, and merged into final/
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(final.state_dict()[q], base.state_dict()[q])


def test_trainable_layers_and_head_only(tiny_llama, tmp_path, pairs_file):
    tok = load_tokenizer(tiny_llama)
    top = build_reward_model(rm_config(model=tiny_llama, dataset=pairs_file, trainable_layers=1), tok.pad_token_id)
    names = {n for n, p in top.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("model.layers.1.", "model.norm.", "score.")) for n in names)
    assert "model.norm.weight" in names and "score.weight" in names and "model.layers.1.mlp.up_proj.weight" in names
    run_rm(rm_config(model=tiny_llama, dataset=pairs_file, output_dir=str(tmp_path / "run"), max_steps=2, head_only=True,
                     reward_offset="none"))
    final = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "final").state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    assert all(torch.equal(final[k], base[k]) for k in final if k != "score.weight")
    with pytest.raises(ConfigError, match="set only one of"):
        rm_config(dataset=pairs_file, lora=True, head_only=True)
    with pytest.raises(ConfigError, match="has 2 layers"):
        build_reward_model(rm_config(model=tiny_llama, dataset=pairs_file, trainable_layers=3), tok.pad_token_id)


def _bad(tmp_path, name, rows) -> str:
    return write_jsonl(tmp_path / name, rows)


@pytest.mark.parametrize("case", ["duplicate rank", "gap in ranks", "label above 1"])
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys, tiny_llama):
    good = {"prompt": "Hi", "completions": [" a", " b", " c"], "ranking": [0, 1, 2]}
    rows = {
        "duplicate rank": [good, {**good, "ranking": [0, 0, 1]}],
        "gap in ranks": [good, {**good, "ranking": [0, 2, 3]}],
        "label above 1": [{"prompt": "Hi", "chosen": " a", "rejected": " b"}, {"prompt": "Hi", "chosen": " a", "rejected": " b", "label": 1.5}],
    }[case]
    data = _bad(tmp_path, "bad.jsonl", rows)
    code = main(["rm", f"model={tiny_llama}", f"dataset={data}", f"output_dir={tmp_path / 'run'}", "device=cpu"])
    err = capsys.readouterr().err.strip()
    column = "label" if "label" in case else "ranking"
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{data}, row 1, column '{column}'" in err
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_bad_ranking_through_the_real_cli(tmp_path, tiny_llama):
    data = _bad(tmp_path, "bad.jsonl", [{"prompt": "Hi", "completions": [" a", " b"], "ranking": [1, 1]}])
    proc = run_cli("rm", f"model={tiny_llama}", f"dataset={data}", f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "row 0, column 'ranking'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_held_out_accuracy_rises(tiny_llama, tmp_path):
    """Synthetic pairs from preference_rows in which the rejected answer hedges ("maybe"): a signal a
    tiny random model can pick up (the arithmetic itself it cannot), seen only through the score at
    the last token. Held-out accuracy goes from chance to near 1."""
    def hedged(n, seed):
        rows = preference_rows(n, seed=seed)
        for row in rows:
            row["rejected"] = row["rejected"].replace("answer is", "answer is maybe")
        return rows

    train, held = write_jsonl(tmp_path / "train.jsonl", hedged(256, 0)), write_jsonl(tmp_path / "eval.jsonl", hedged(128, 1))
    config = rm_config(model=tiny_llama, dataset=train, eval_dataset=held, output_dir=str(tmp_path / "run"), batch_size=16,
                       learning_rate=3e-3, num_epochs=1, eval_steps=4, logging_steps=4, reward_offset="none")
    tok = load_tokenizer(tiny_llama)
    torch.manual_seed(config.seed)  # the model the run starts from
    start = build_reward_model(config, tok.pad_token_id).eval()
    algorithm = RewardModeling(tok.pad_token_id, packing=False)
    eval_items, _ = load_items(tok, held, None, config)
    with torch.no_grad():
        batch = algorithm.collate(eval_items)
        loss, metrics = algorithm.loss(start, batch)
    before, before_loss = float(metrics["accuracy"][0]) / metrics["accuracy"][1], float(loss) / len(eval_items)
    run_rm(config)
    evals = [(r["eval_accuracy"], r["eval_loss"]) for r in read_metrics(tmp_path / "run") if "eval_accuracy" in r]
    print(f"held-out accuracy / loss: before {before:.3f} / {before_loss:.4f}, after steps 4, 8, 12, 16: {evals}")
    # the random head scores both sides alike (loss log 2); no better than chance before, near 1 after
    assert before_loss == pytest.approx(math.log(2), abs=0.01) and before < 0.6
    assert evals[-1][0] >= 0.95 and evals[-1][1] < 0.2
