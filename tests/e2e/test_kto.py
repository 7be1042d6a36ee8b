"""KTO end to end: equal to TRL's KTOTrainer loss, the algorithm's wiring and gradient, learning on a
tiny model, precomputed reference = frozen copy, LoRA, and `posttrain kto` through the CLI."""

import copy
import os
import random
import re
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import REPO, preference_rows, read_metrics, run_cli, without_timing, write_jsonl
from posttrain.algorithms.kto import KTO, KTOConfig, load_examples, run_kto
from posttrain.config import build_config
from posttrain.data.converters import pairs_to_unpaired
from posttrain.errors import DataError
from posttrain.losses.kto import kto_loss
from posttrain.models.loading import load_tokenizer
from posttrain.models.logprobs import sequence_logprobs
from posttrain.models.reference import ReferencePolicy


def kto_config(**values) -> KTOConfig:
    defaults = dict(max_length=128, batch_size=4, learning_rate=1e-3, logging_steps=1, lr_scheduler="constant", device="cpu")
    return build_config(KTOConfig, {**defaults, **values})


def perturbed(model_dir, seed: int, scale: float = 0.05):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


# ------------------------------------------------------------------------------------ TRL parity


@pytest.mark.parametrize("policy_is_perturbed", [False, True], ids=["z0>0", "z0-clamped"])
def test_loss_equals_trl_kto_trainer(tiny_llama, tmp_path, policy_is_perturbed):
    """TRL 1.16 computes the KTO loss inside KTOTrainer._compute_loss (no pure function), so a tiny
    KTOTrainer gets the same weights and batch, and its compute_loss is compared with ours.
    Deliberate differences, held equal here: TRL pairs each prompt with the completion of the previous
    row in its block of batch_size rows, we use a seeded cycle over the whole data set (fixed per
    example, so `ref_model=precompute` stays exact); we feed TRL's pairing to our collator. TRL means
    the losses per micro-batch and averages z0 as a mean of per-rank means; we sum and the loop divides
    by the step's example count, and z0 is the mean over all mismatched pairs of all ranks: equal for
    equal micro-batch sizes, and ours stays the large-batch loss when they differ."""
    from datasets import Dataset
    from trl import KTOConfig as TRLKTOConfig, KTOTrainer

    tokenizer = load_tokenizer(tiny_llama)
    rows = pairs_to_unpaired(preference_rows(3))
    original = AutoModelForCausalLM.from_pretrained(tiny_llama)
    policy, ref = (perturbed(tiny_llama, 0), original) if policy_is_perturbed else (original, perturbed(tiny_llama, 0))
    args = TRLKTOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=len(rows), beta=0.5,
                        desirable_weight=1.3, undesirable_weight=0.7, report_to="none", use_cpu=True, max_length=None,
                        bf16=False)  # TRL's default bf16 autocasts its prepared ref model
    trainer = KTOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    processed = [trainer.train_dataset[i] for i in range(len(rows))]
    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, trainer.data_collator(processed))
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    algorithm = KTO(kto_config(beta=0.5, desirable_weight=1.3, undesirable_weight=0.7), tokenizer.pad_token_id)
    algorithm.reference = ReferencePolicy(ref)
    examples = [{"prompt_ids": r["prompt_ids"], "completion_ids": r["completion_ids"], "completion_mask": [1] * len(r["completion_ids"]),
                 "kl_completion_ids": r["KL_completion_ids"], "kl_completion_mask": [1] * len(r["KL_completion_ids"]),
                 "label": r["label"]} for r in processed]
    batch = algorithm.collate(examples)
    policy.train()
    loss_sum, metrics = algorithm.loss(policy, batch)

    n = algorithm.batch_weight(batch)
    assert n == 6
    assert float(loss_sum.detach()) / n == pytest.approx(float(trl_loss.detach()), abs=1e-5)
    if policy_is_perturbed:
        assert trl_metrics["kl"] == 0.0 and float(metrics["kl"][0]) == 0.0
    else:
        assert trl_metrics["kl"] > 0.05
        assert float(metrics["kl"][0]) == pytest.approx(trl_metrics["kl"], abs=1e-5)
    for ours, theirs in (("rewards/desirable", "rewards/chosen"), ("rewards/undesirable", "rewards/rejected"),
                         ("logps/desirable", "logps/chosen"), ("logps/undesirable", "logps/rejected")):
        num, den = metrics[ours]
        assert float(num) / float(den) == pytest.approx(trl_metrics[theirs], abs=1e-4)


# --------------------------------------------------------------------------- wiring and gradient


def test_algorithm_loss_and_gradient_match_a_direct_computation(tiny_llama, tmp_path):
    """One stacked reference pass and a no-grad mismatched policy pass give the loss computed row by
    row, and the gradient is that of the loss with z0 a constant."""
    data = write_jsonl(tmp_path / "d.jsonl", preference_rows(3))
    tokenizer = load_tokenizer(tiny_llama)
    config = kto_config(beta=0.3, desirable_weight=1.5)
    examples = load_examples(tokenizer, data, None, config, seed=0)
    policy, ref = AutoModelForCausalLM.from_pretrained(tiny_llama), perturbed(tiny_llama, 1, 0.02)  # z0 > 0
    algorithm = KTO(config, tokenizer.pad_token_id)
    algorithm.reference = ReferencePolicy(ref)
    policy.eval()
    loss_sum, metrics = algorithm.loss(policy, algorithm.collate(examples))
    loss_sum.backward()
    grads = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()

    def logp(model, ids, mask):
        return sequence_logprobs(model, torch.tensor([ids]), torch.tensor([mask])).sums[0]

    pol = torch.stack([logp(policy, e["prompt_ids"] + e["completion_ids"], [0] * len(e["prompt_ids"]) + e["completion_mask"]) for e in examples])
    with torch.no_grad():
        r = torch.stack([logp(ref, e["prompt_ids"] + e["completion_ids"], [0] * len(e["prompt_ids"]) + e["completion_mask"]) for e in examples])
        kl_diff = [logp(m, e["prompt_ids"] + e["kl_completion_ids"], [0] * len(e["prompt_ids"]) + e["kl_completion_mask"])
                   for e in examples for m in (policy, ref)]
    z0 = max(0.0, float(sum(kl_diff[0::2]) - sum(kl_diff[1::2])) / len(examples))
    assert z0 > 0 and float(metrics["kl"][0]) == pytest.approx(z0, abs=1e-5)
    labels = torch.tensor([e["label"] for e in examples])
    expected, _ = kto_loss(pol, r, labels, z0, beta=0.3, desirable_weight=1.5)
    assert float(loss_sum.detach()) == pytest.approx(float(expected.sum().detach()), abs=1e-5)
    expected.sum().backward()
    for got, want in zip(grads, (p.grad for p in policy.parameters())):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------- training


def _mean_logratios(run_dir, start_dir, examples) -> tuple[float, float]:
    final, start = AutoModelForCausalLM.from_pretrained(run_dir / "final"), AutoModelForCausalLM.from_pretrained(start_dir)
    ratios = {True: [], False: []}
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e["prompt_ids"] + e["completion_ids"]])
            mask = torch.tensor([[0] * len(e["prompt_ids"]) + e["completion_mask"]])
            ratios[e["label"]].append(float(sequence_logprobs(final, ids, mask).sums - sequence_logprobs(start, ids, mask).sums))
    return sum(ratios[True]) / len(ratios[True]), sum(ratios[False]) / len(ratios[False])


def arithmetic_feedback(n: int, seed: int = 0) -> list[dict]:
    """Unpaired rows: the right sum is desirable, a refusal undesirable (each prompt has both)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        rows.append({"prompt": f"What is {a} + {b}?", "completion": f" {a + b}", "label": True})
        rows.append({"prompt": f"What is {a} + {b}?", "completion": " I do not know.", "label": False})
    return rows


def test_learns_desirable_up_undesirable_down(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "feedback.jsonl", arithmetic_feedback(16))
    out = tmp_path / "run"
    config = kto_config(model=tiny_llama, dataset=data, output_dir=str(out), batch_size=8, max_steps=16, beta=0.5)
    run_kto(config)
    records = read_metrics(out)
    assert len(records) == 16 and records[0]["rewards/desirable"] == 0.0 and records[0]["loss"] == pytest.approx(0.5)  # policy = reference
    examples = load_examples(load_tokenizer(tiny_llama), data, None, config, seed=0)
    desirable, undesirable = _mean_logratios(out, tiny_llama, examples)
    assert desirable > 1.0 and undesirable < -3.0, (desirable, undesirable)  # log πθ/π_ref of the final model
    last = records[-1]
    assert last["rewards/desirable"] > 0 > last["rewards/undesirable"] and last["loss"] < 0.3


def test_precomputed_reference_gives_the_same_run_as_the_copy(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    held_out = write_jsonl(tmp_path / "eval.jsonl", preference_rows(3, seed=1))
    runs = {}
    for ref_model in ("copy", "precompute"):
        out = tmp_path / ref_model
        run_kto(kto_config(model=tiny_llama, dataset=data, eval_dataset=held_out, output_dir=str(out), max_steps=3, ref_model=ref_model))
        runs[ref_model] = without_timing(read_metrics(out))
    assert (tmp_path / "precompute" / "reference_logps.pt").is_file() and (tmp_path / "precompute" / "reference_logps_eval.pt").is_file()
    assert runs["copy"][-1]["kl"] > 0 and "eval_kl" in runs["copy"][-1] and "eval_rewards/desirable" in runs["copy"][-1]
    for a, b in zip(runs["copy"], runs["precompute"]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


def test_lora_reference_is_the_adapter_free_base(tiny_qwen2, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(4, conversational=True))
    out = tmp_path / "run"
    run_kto(kto_config(model=tiny_qwen2, dataset=data, output_dir=str(out), max_steps=2, lora=True, lora_r=4))
    first, second = read_metrics(out)
    assert first["rewards/desirable"] == 0.0 and first["rewards/undesirable"] == 0.0 and first["kl"] == 0.0
    assert second["rewards/desirable"] != 0.0 and (out / "final" / "config.json").is_file()


def test_two_processes_share_one_reference_point(tiny_llama, tmp_path):
    """Under torchrun (2 processes x 2 examples) z0 is the mean over both processes' mismatched pairs,
    so the run equals one process reading batches of 4. Mostly desirable data makes z0 > 0."""
    rows = [r for i, r in enumerate(arithmetic_feedback(12)) if r["label"] or i % 6 == 1]  # 12 desirable, 4 not
    common = dict(model=tiny_llama, dataset=write_jsonl(tmp_path / "d.jsonl", rows), max_steps=4, learning_rate=3e-3,
                  eval_dataset=write_jsonl(tmp_path / "e.jsonl", arithmetic_feedback(2, seed=1)))
    run_kto(kto_config(**common, output_dir=str(tmp_path / "single"), batch_size=4))
    same_as_kto_config = dict(max_length=128, lr_scheduler="constant", logging_steps=1, device="cpu")
    args = [f"{k}={v}" for k, v in {**common, **same_as_kto_config, "batch_size": 2, "output_dir": tmp_path / "multi"}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "posttrain", "kto", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "multi")
    assert len(two) == 4 and max(r["kl"] for r in one) > 0.5
    for a, b in zip(one, two):
        for key in ("loss", "kl", "grad_norm", "rewards/desirable"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert two[-1]["eval_loss"] == pytest.approx(one[-1]["eval_loss"], rel=1e-4)


# -------------------------------------------------------------------------------------------- CLI


def test_cli_kto_on_unpaired_rows_writes_the_run_dir(tiny_llama, tmp_path):
    rows = pairs_to_unpaired(preference_rows(5))  # 5 desirable, 5 undesirable
    data = write_jsonl(tmp_path / "unpaired.jsonl", rows)
    out = tmp_path / "run"
    proc = run_cli("kto", f"model={tiny_llama}", f"dataset={data}", f"eval_dataset={data}", "device=cpu", "max_steps=2",
                   "batch_size=4", "logging_steps=1", "desirable_weight=2.0", f"output_dir={out}")
    assert proc.returncode == 0, proc.stderr
    assert "outside [1, 4/3]" in proc.stderr and "undesirable_weight in [1.5, 2]" in proc.stderr  # 5 vs 5, λ_D = 2
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2] and {"kl", "eval_loss", "rewards/desirable"} <= records[-1].keys()
    assert (out / "config.yaml").is_file() and (out / "final" / "model.safetensors").is_file()
    assert "beta: 0.1" in (out / "config.yaml").read_text()


def test_cli_label_not_bool_is_one_line_exit_2(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": " b", "label": "yes"},
                                                {"prompt": "c", "completion": " d", "label": False}])
    out = tmp_path / "run"
    proc = run_cli("kto", f"model={tiny_llama}", f"dataset={data}", "device=cpu", "max_steps=1", f"output_dir={out}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == (f"posttrain: error: {data}, row 0, column 'label': expected a bool (true = desirable, "
                        "false = undesirable), got 'yes'")
    assert not out.exists()


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "completion": " b"}] * 2, "column 'label': the rows are prompt-completion rows ('prompt', 'completion') "
                                                "but this method needs unpaired rows ('prompt', 'completion', 'label')"),
    ([{"prompt": "a", "label": True}] * 2, "column 'completion'"),
    ([{"prompt": "a", "completion": " b", "label": True}], "at least 2 examples"),
])
def test_bad_data_raises_a_data_error(tiny_llama, tmp_path, rows, message):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=re.escape(message)):
        run_kto(kto_config(model=tiny_llama, dataset=data, output_dir=str(tmp_path / "run"), max_steps=1))
    assert not (tmp_path / "run").exists()
