"""`policy_loss` against TRL 1.16's GRPO loss (`GRPOTrainer._compute_loss`), to 1e-5.

One real `trl.GRPOTrainer` on a tiny random Llama (CPU, fp32, no vLLM). We hand its `_compute_loss`
an `inputs` dict of our own (left-padded prompts, right-padded completions of different lengths,
advantages of both signs, old and reference log-probs perturbed from the model's so that ratios
fall on both sides of both clip bounds) and compare with `policy_loss` on the log-probs we compute
from the same model and tokens (log-softmax of its logits at the completion positions). Loss
values, parameter gradients and TRL's logged metrics (clip fractions, KL) are compared for
loss_type grpo / bnpo / dr_grpo / dapo, importance_sampling_level token / sequence, beta 0 / 0.04
(TRL's k3), epsilon_high = epsilon and ≠ epsilon, and TRL's `delta`.

Loss-type mapping: grpo -> "grpo", bnpo and dapo -> "token_mean", dr_grpo -> "dr_grpo" (with
max_completion_length = TRL's). They agree exactly for one micro-batch on one process (tested here).
Where TRL's semantics differ beyond that (by design, not tested):
- bnpo: TRL divides each micro-batch by its own token count and then averages the micro-batches
  (over accumulation, and over processes through gradient averaging): a mean of token means, so a
  micro-batch with few tokens weighs more per token. Our token_mean is one token mean over the whole
  optimizer step (DAPO's equation), whatever the split.
- dapo: TRL divides by num_items_in_batch (tokens of the whole generation batch, over all
  processes) × gradient_accumulation_steps / steps_per_generation / num_processes. That is our
  token_mean exactly when one generation batch makes one optimizer step; when it feeds several
  (steps_per_generation > gradient_accumulation_steps) TRL divides every step by the AVERAGE tokens
  per step, ours by that step's own count.
- grpo / dr_grpo: TRL averages per-micro-batch means, equal to ours when micro-batches hold equal
  numbers of sequences (our loop divides by the step's total sequence count in any case).
- use_bias_correction_kl=True (TRL 1.16's default; our kl_importance_weight=True): the same loss
  and gradient, but TRL's logged `kl` is then the token mean of r·KL, ours stays that of KL.
- sequence-level clip fractions: TRL counts a clipped sequence once per sequence; ours once per
  completion token (the loss itself is identical). Only token-level clip metrics are compared.
"""

from __future__ import annotations

import pytest
import torch

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from conftest import make_model_dir  # noqa: E402
from posttrain.losses.policy import policy_loss  # noqa: E402

AGGREGATION = {"grpo": "grpo", "bnpo": "token_mean", "dapo": "token_mean", "dr_grpo": "dr_grpo"}
MAX_COMPLETION = 8
PROMPT_LEN, COMPLETION_LEN = 5, 6
LENGTHS = [6, 4, 5, 2]  # completion tokens per row; the rest is right padding
ADVANTAGES = [1.5, -0.5, 0.8, -0.3]  # both signs, a mean far from 0 (so is every loss)


def _zero_reward(prompts, completions, **kwargs):
    return [0.0] * len(prompts)


@pytest.fixture(scope="module")
def grpo(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl-grpo")
    path = make_model_dir(root / "model", "llama")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    args = trl.GRPOConfig(output_dir=str(root / "out"), per_device_train_batch_size=4, num_generations=2,
                          max_completion_length=MAX_COMPLETION, report_to="none", use_cpu=True, bf16=False,
                          use_vllm=False, temperature=1.0, beta=0.0, gradient_accumulation_steps=1)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=_zero_reward, args=args,
                              train_dataset=Dataset.from_list([{"prompt": "What is 2 + 2?"}] * 4),
                              processing_class=tokenizer)
    trainer.model.train()  # TRL's "train" branch: divides by current_gradient_accumulation_steps
    trainer.current_gradient_accumulation_steps = 1  # normally set inside Trainer.train()

    g = torch.Generator().manual_seed(0)
    vocab, pad = model.config.vocab_size, tokenizer.pad_token_id
    prompt_ids = torch.randint(0, vocab, (4, PROMPT_LEN), generator=g)
    prompt_mask = torch.ones(4, PROMPT_LEN, dtype=torch.long)
    prompt_mask[1, :2] = 0  # a left-padded prompt
    prompt_ids[1, :2] = pad
    completion_mask = (torch.arange(COMPLETION_LEN)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    completion_ids = torch.randint(0, vocab, (4, COMPLETION_LEN), generator=g).masked_fill(completion_mask == 0, pad)

    with torch.no_grad():
        logps = _our_logps(trainer.model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    # π_old and π_ref away from π_θ, so ratios land beyond both clip bounds and the KL is not 0
    old = logps + 0.3 * torch.randn(logps.shape, generator=g)
    ref = logps + 0.3 * torch.randn(logps.shape, generator=g)
    inputs = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                  completion_mask=completion_mask, advantages=torch.tensor(ADVANTAGES),
                  old_per_token_logps=old, ref_per_token_logps=ref,
                  num_items_in_batch=completion_mask.sum())
    return trainer, inputs


def _our_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """log π(o_t | q, o_<t) of each completion token: the logits one position earlier."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, PROMPT_LEN - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def _configure(trainer, loss_type, level, beta, eps_low, eps_high, delta=None, kl_weight=False):
    trainer.loss_type, trainer.importance_sampling_level, trainer.beta = loss_type, level, beta
    trainer.epsilon_low, trainer.epsilon_high, trainer.args.delta = eps_low, eps_high, delta
    trainer.args.use_bias_correction_kl = kl_weight
    trainer._metrics["train"].clear()


def _ours(trainer, inputs, loss_type, level, beta, eps_low, eps_high, delta=None, kl_weight=False, grad=False):
    with torch.set_grad_enabled(grad):
        logps = _our_logps(trainer.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                           inputs["completion_mask"])
    out = policy_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], inputs["completion_mask"].float(),
                      ref_logps=inputs["ref_per_token_logps"] if beta > 0 else None, beta=beta,
                      kl_estimator="k3", ratio_level=level, epsilon_low=eps_low, epsilon_high=eps_high,
                      aggregation=AGGREGATION[loss_type], max_completion_length=trainer.max_completion_length, delta=delta,
                      kl_importance_weight=kl_weight)
    return out.loss / out.weight, out


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.2, 0.28)])
@pytest.mark.parametrize("beta,kl_weight", [(0.0, False), (0.04, False), (0.04, True)])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_loss_equals_trl(grpo, loss_type, level, beta, kl_weight, eps_low, eps_high):
    trainer, inputs = grpo
    _configure(trainer, loss_type, level, beta, eps_low, eps_high, kl_weight=kl_weight)
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, inputs)
    ours, out = _ours(trainer, inputs, loss_type, level, beta, eps_low, eps_high, kl_weight=kl_weight)
    assert abs(float(theirs)) > 1e-3  # a real value, not 0 == 0
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    if beta > 0 and not kl_weight:  # TRL then logs the mean of r·KL, we the mean of KL
        kl_num, kl_den = out.metrics["kl"]
        assert float(kl_num / kl_den) == pytest.approx(logged["kl"], abs=1e-5)
    if level == "token":  # TRL counts sequence-level clipping per sequence, we per token
        for name in ("low", "high", "region"):
            num, den = out.metrics[f"clip_ratio/{name}"]
            assert float(num / den) == pytest.approx(logged[f"clip_ratio/{name}_mean"], abs=1e-6)


def test_inputs_exercise_both_clip_bounds(grpo):
    trainer, inputs = grpo
    _, out = _ours(trainer, inputs, "grpo", "token", 0.0, 0.2, 0.28)
    low, high = (float(out.metrics[k][0]) for k in ("clip_ratio/low", "clip_ratio/high"))
    assert low > 0 and high > 0


@pytest.mark.parametrize("kl_weight", [False, True])
@pytest.mark.parametrize("loss_type,level", [("grpo", "token"), ("bnpo", "token"), ("dr_grpo", "token"),
                                             ("dapo", "token"), ("grpo", "sequence"), ("dapo", "sequence")])
def test_gradients_equal_trl(grpo, loss_type, level, kl_weight):
    trainer, inputs = grpo
    args = (loss_type, level, 0.04, 0.2, 0.28)
    _configure(trainer, *args, kl_weight=kl_weight)
    model = trainer.model
    model.zero_grad()
    trainer._compute_loss(model, inputs).backward()
    theirs = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ours, _ = _ours(trainer, inputs, *args, kl_weight=kl_weight, grad=True)
    ours.backward()
    assert len(theirs) > 10
    for name, p in model.named_parameters():
        if name in theirs:
            torch.testing.assert_close(p.grad, theirs[name], atol=1e-6, rtol=1e-4, msg=name)
    assert max(g.abs().max() for g in theirs.values()) > 1e-3
    model.zero_grad()


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_delta_equals_trl(grpo, level):
    """TRL's `delta` (INTELLECT-2's two-sided clip): ratios of negative-advantage tokens capped at δ."""
    trainer, inputs = grpo
    args = ("grpo", level, 0.04, 0.2, 0.28)
    _configure(trainer, *args, delta=1.3)
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, inputs)
    ours, _ = _ours(trainer, inputs, *args, delta=1.3)
    unbounded, _ = _ours(trainer, inputs, *args)
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5)
    if level == "token":
        assert abs(float(ours) - float(unbounded)) > 1e-4  # delta really bites on these inputs
    trainer.args.delta = None
