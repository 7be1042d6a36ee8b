"""KTO's algorithm: its loss equals TRL's KTOTrainer (z0 > 0 and clamped), and one stacked reference pass and a
no-grad mismatched policy pass give the loss and gradient of a direct computation."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import kto_config, preference_rows, write_jsonl
from posttrain.algorithms.kto import KTO, load_examples
from posttrain.data.converters import pairs_to_unpaired
from posttrain.losses.kto import kto_loss
from posttrain.models.loading import load_tokenizer
from posttrain.models.logprobs import sequence_logprobs
from posttrain.models.reference import ReferencePolicy


def perturbed(model_dir, seed: int, scale: float = 0.05):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


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
