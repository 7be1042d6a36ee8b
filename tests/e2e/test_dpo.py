"""DPO training: the three reference sources, accumulation, exact resume after a kill, learning, presets
through the CLI, and bad preference data."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import dpo_config, final_weights, preference_rows, read_metrics, run_cli, without_timing, write_jsonl
from posttrain.algorithms.dpo import DPO, load_examples, model_inputs, run_dpo
from posttrain.models.loading import load_tokenizer
from posttrain.models.logprobs import sequence_logprobs
from posttrain.train.loop import STOP_ENV


def test_precomputed_reference_and_padding_equal_the_default_and_are_cached(tiny_llama, pairs, tmp_path):
    train_file, eval_file = pairs
    runs = {}
    for name, ref, padding_free in (("copy", "copy", True), ("precompute", "precompute", True), ("padded", "copy", False)):
        out = tmp_path / name
        run_dpo(dpo_config(model=tiny_llama, dataset=train_file, eval_dataset=eval_file, output_dir=str(out), max_steps=4,
                           ref_model=ref, packing=padding_free))
        runs[name] = [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in read_metrics(out)]
    for other in ("precompute", "padded"):
        for a, b in zip(runs["copy"], runs[other]):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-4), (other, key)
    cache = torch.load(tmp_path / "precompute" / "reference_logps.pt", weights_only=True)
    assert len(cache["columns"]["ref_chosen_logps"]) == 32 + 8  # training and eval pairs
    # at step 1 the policy is the reference: every implicit reward is 0 and the loss is log 2
    assert runs["precompute"][0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


@pytest.mark.parametrize("source", ["copy", "precompute"])
def test_reference_from_another_model_path_enters_the_loss(tiny_llama, pairs, tmp_path, source):
    """Iterative DPO keeping the SFT model as π_ref: ref_model_path's log-probs, not the policy's."""
    ref_dir = tmp_path / "ref"
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference.save_pretrained(ref_dir)
    tokenizer = load_tokenizer(tiny_llama)
    config = dpo_config(model=tiny_llama, dataset=pairs[0], output_dir=str(tmp_path / "run"), ref_model=source,
                        ref_model_path=str(ref_dir), packing=False)
    examples = load_examples(tokenizer, pairs[0], None, config, "train")[:4]
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    algorithm = DPO(config, tokenizer.pad_token_id, precompute_sets=[examples])
    algorithm.setup(policy)
    batch = algorithm.collate(examples)
    with torch.no_grad():
        loss, _ = algorithm.loss(policy, batch)
        pol = sequence_logprobs(policy, **model_inputs(batch)).sums.split(4)
        ref = sequence_logprobs(reference.eval(), **model_inputs(batch)).sums.split(4)
    margin = (pol[0] - ref[0]) - (pol[1] - ref[1])
    assert float(loss) == pytest.approx(float(-torch.nn.functional.logsigmoid(0.1 * margin).sum()), abs=1e-4)
    assert float(loss) != pytest.approx(4 * math.log(2), abs=1e-3)  # not the policy as its own reference


def test_lora_reference_is_the_adapter_disabled_base(tiny_llama, pairs, tmp_path):
    config = dpo_config(model=tiny_llama, dataset=pairs[0], output_dir=str(tmp_path / "lora"), max_steps=3, lora=True, lora_r=4)
    algorithm_seen = {}
    original_setup = DPO.setup

    def spy(self, model):
        original_setup(self, model)
        algorithm_seen["frozen"] = self.reference.frozen

    DPO.setup = spy
    try:
        run_dpo(config)
    finally:
        DPO.setup = original_setup
    assert algorithm_seen["frozen"] is None  # no second model in memory
    metrics = read_metrics(tmp_path / "lora")
    assert metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # LoRA starts as the identity
    assert metrics[-1]["rewards/margins"] != 0.0


def test_gradient_accumulation_equals_the_large_batch(tiny_llama, pairs, tmp_path):
    common = dict(model=tiny_llama, dataset=pairs[0], max_steps=2, loss_type=["sigmoid", "sft"])
    run_dpo(dpo_config(output_dir=str(tmp_path / "big"), batch_size=8, **common))
    run_dpo(dpo_config(output_dir=str(tmp_path / "acc"), batch_size=2, gradient_accumulation_steps=4, **common))
    big, acc = final_weights(tmp_path / "big"), final_weights(tmp_path / "acc")
    for name in big:
        torch.testing.assert_close(big[name], acc[name], atol=2e-6, rtol=1e-5)



@pytest.mark.parametrize("extra", [["ref_model=copy", "ref_sync=soft", "ref_sync_steps=3", "ref_sync_alpha=0.5"],
                                   ["ref_model=precompute", "lora=true", "lora_r=4", "lora_dropout=0.2"]],
                         ids=["copy-tr-dpo-soft", "precompute-lora-dropout"])
def test_killed_and_resumed_run_matches_uninterrupted(tiny_llama, pairs, tmp_path, extra):
    """SIGKILL after step 10 of 12 (checkpoint step-8, an epoch boundary: 32 pairs / 4 a step), resume=true:
    the same weights (torch.equal) and metrics lines as the run never killed, with a reference (β > 0),
    accumulation (2 micro-batches a step), a logging window open across the checkpoint and eval steps.
    The copy reference moves (TR-DPO soft updates at steps 3, 6, 9, 12): the checkpoint restores the
    reference of step 6, so the resumed run's rewards are the uninterrupted run's."""
    train_file, eval_file = pairs
    args = [f"model={tiny_llama}", f"dataset={train_file}", f"eval_dataset={eval_file}", "device=cpu", "max_length=128",
            "batch_size=2", "gradient_accumulation_steps=2", "max_steps=12", "learning_rate=1e-3", "warmup_steps=2",
            "logging_steps=3", "eval_steps=4", "save_steps=4", "keep_last=1", *extra]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli("dpo", *args, f"output_dir={whole}")
    assert done.returncode == 0, done.stderr

    killed = run_cli("dpo", *args, f"output_dir={broken}", env={STOP_ENV: "10"})
    assert killed.returncode == -9
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-8"]
    assert read_metrics(broken)[-1]["step"] == 9

    resumed = run_cli("dpo", *args, f"output_dir={broken}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 8" in resumed.stdout
    assert [r["step"] for r in read_metrics(broken)] == [3, 4, 6, 8, 9, 12]
    if "ref_sync=soft" in extra:
        assert [r.get("ref_syncs") for r in read_metrics(broken)] == [1, None, 2, None, 3, 4]  # 4, 8: eval lines
    assert without_timing(read_metrics(broken)) == without_timing(read_metrics(whole))
    a, b = final_weights(whole), final_weights(broken)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def test_tr_dpo_hard_update_makes_the_reference_the_policy(tiny_llama, pairs, tmp_path):
    """TR-DPO^τ (ref_sync=hard, τ = 3): after steps 3 and 6 the reference is the policy itself, so the
    next step's implicit rewards β log π_θ/π_ref are exactly 0 and its loss is log 2, as at step 1;
    between updates the reference lags and the margin is not 0."""
    run_dpo(dpo_config(model=tiny_llama, dataset=pairs[0], output_dir=str(tmp_path / "run"), max_steps=7, beta=0.5,
                       ref_sync="hard", ref_sync_steps=3))
    records = read_metrics(tmp_path / "run")
    assert [r["ref_syncs"] for r in records] == [0, 0, 1, 1, 1, 2, 2]
    for r in records:
        fresh = r["step"] in (1, 4, 7)
        assert (r["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)) == fresh
        assert (abs(r["rewards/margins"]) < 1e-6) == fresh
        if fresh:
            assert r["loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_dpo_learns_the_preference(tiny_llama, pairs, tmp_path):
    """The implicit reward margin on the training pairs grows from 0 and ranks most pairs right."""
    train_file = pairs[0]
    last = run_dpo(dpo_config(model=tiny_llama, dataset=train_file, eval_dataset=train_file, output_dir=str(tmp_path / "run"),
                              max_steps=24, learning_rate=3e-3, beta=0.5))
    first = read_metrics(tmp_path / "run")[0]
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert last["eval_rewards/accuracies"] >= 0.85 and last["eval_rewards/margins"] > 1.0
    assert last["eval_loss"] < 0.6 * math.log(2)


def test_cli_preset_simpo_runs_reference_free(tiny_llama, pairs, tmp_path):
    out = tmp_path / "simpo"
    result = run_cli("dpo", "--preset", "simpo", f"model={tiny_llama}", f"dataset={pairs[0]}", f"output_dir={out}",
                     "max_steps=2", "batch_size=8", "max_length=128")
    assert result.returncode == 0, result.stderr
    config = (out / "config.yaml").read_text()
    assert "- simpo" in config and "beta: 2.0" in config
    assert (out / "final" / "model.safetensors").exists()
    assert not (out / "reference_logps.pt").exists()


@pytest.mark.parametrize("rows, args, message", [
    ([{"prompt": "q", "chosen": " a", "rejected": " a"}] * 4, [], "chosen and rejected are identical"),
    ([{"prompt": "q", "chosen": " a", "rejected": "  "}] * 4, [], "is empty"),
    ([{"prompt": "q", "chosen": " a", "rejected": " b", "label": 1.5}] * 4, [], "expected P(chosen ≻ rejected)"),
    ([{"prompt": "q", "chosen": " a", "rejected": " b", "label": 0.5}] * 4, ["loss_type=[hinge]"], "needs hard labels"),
    ([{"prompt": "q", "completions": [" a", " b", " c"], "ranking": [0, 0, 2]}] * 4, [], "expected a permutation"),
    ([{"prompt": "q", "completions": [" a", " b", " c"], "ranking": [0, 1, 3]}] * 4, [], "expected a permutation"),
    ([{"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
       "rejected": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "b"}]}] * 4, [], "different prompts"),
    ([{"prompt": "q", "chosen": " a", "rejected": " b"}] * 4, ["loss_type=[dpo]"], "loss_type: unknown"),
])
def test_bad_preference_data_is_one_line_exit_2(tiny_llama, tmp_path, rows, args, message):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "run"
    result = run_cli("dpo", f"model={tiny_llama}", f"dataset={data}", f"output_dir={out}", "max_steps=1", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (out / "final").exists()


def test_a_row_missing_a_column_lists_the_files_columns_only(tiny_llama, tmp_path):
    """The loader tags every row with its index (to name it after conversions); the error lists what the file has."""
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": " a", "rejected": " b"}, {"prompt": "q", "chosen": " a"}])
    result = run_cli("dpo", f"model={tiny_llama}", f"dataset={data}", f"output_dir={tmp_path / 'run'}", "max_steps=1")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"posttrain: error: {data}, row 1, column 'rejected': missing column 'rejected' "
                                     "(found columns: chosen, prompt); expected preference rows ('prompt', 'chosen', 'rejected')")


def test_invalid_pairs_drop_is_counted(tiny_llama, tmp_path):
    rows = preference_rows(8) + [{"prompt": "q", "chosen": " a", "rejected": " a"}, {"prompt": "q", "chosen": "", "rejected": " b"}]
    data = write_jsonl(tmp_path / "mixed.jsonl", rows)
    result = run_cli("dpo", f"model={tiny_llama}", f"dataset={data}", f"output_dir={tmp_path / 'run'}", "max_steps=1",
                     "batch_size=8", "invalid_pairs=drop")
    assert result.returncode == 0, result.stderr
    assert "dropped 2 pairs (identical sides: 1, empty side: 1)" in result.stdout + result.stderr
