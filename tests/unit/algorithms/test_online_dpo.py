"""Online DPO's loss, labelling and options.

One batch of two prompts x two completions (fixed token ids) on a tiny Llama whose policy is perturbed
away from its reference. TRL's OnlineDPOTrainer takes its `training_step` on exactly these
completions (its `_generate` returns them): its loss is ours for sigmoid. For every loss type ours is
also checked against the closed form computed from TRL's own per-token log-probs (`_forward`):

    ρ = Σ_t log π_θ − Σ_t log π_ref,  Δ = ρ_w − ρ_l
    sigmoid  −log σ(βΔ)              hinge  max(0, 1 − βΔ)       kl/sequence_k1  mean ρ over the samples
    ipo      (ρ_w/|y_w| − ρ_l/|y_l| − 1/(2β))²   (TRL's online IPO uses Δ unnormalised; ours, like our
             offline IPO and TRL's DPOTrainer, the per-token means)

TRL's log-probs are at T = 1 (it never divides by the sampling temperature), so ours run with temperature=1.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

online_dpo = pytest.importorskip("trl.experimental.online_dpo")
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from conftest import make_model_dir  # noqa: E402
from posttrain.algorithms.online_dpo import PRESETS, OnlineDPO, OnlineDPOConfig  # noqa: E402
from posttrain.config import build_config  # noqa: E402
from posttrain.errors import ConfigError  # noqa: E402
from posttrain.online.estimators import ESTIMATORS, EstimatorContext  # noqa: E402
from posttrain.online.experience import Sample, collate_samples, policy_outputs  # noqa: E402

BETA = 0.1
PROMPTS = [[5, 6, 7], [8, 9, 10]]  # equal lengths: no left padding on TRL's side
FIRST = [[11, 12, 13, 14], [15, 16]]  # completion 1 of each prompt (TRL's first half)
SECOND = [[17, 18], [19, 20, 21]]
REWARD = {11: 1.0, 15: 0.0, 17: 0.0, 19: 2.0}  # by first token: prompt 1 prefers FIRST, prompt 2 SECOND


def reward_by_first_token(prompts, completions, completion_ids, **kwargs):
    return [REWARD[ids[0]] for ids in completion_ids]


def padded(rows, width):
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    return ids, torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl-online-dpo")
    path = make_model_dir(root / "model", "llama")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    args = online_dpo.OnlineDPOConfig(output_dir=str(root / "out"), per_device_train_batch_size=2, beta=BETA,
                                                       report_to="none", use_cpu=True, max_length=64)
    trainer = online_dpo.OnlineDPOTrainer(
        model=model, reward_funcs=reward_by_first_token, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": "a"}, {"prompt": "b"}]))
    torch.manual_seed(1)
    with torch.no_grad():  # the policy away from its reference, so every log-ratio is non-zero
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompt_ids, prompt_mask = padded(PROMPTS * 2, 3)
    completion_ids, completion_mask = padded(FIRST + SECOND, 4)
    trainer._generate = lambda model, prompts, images=None: (prompt_ids, prompt_mask, completion_ids, completion_mask, None)
    trainer.fixed = (prompt_ids, prompt_mask, completion_ids, completion_mask)
    return trainer


def our_batch(trainer):
    """The same four completions as our Samples (group-major), labelled by our estimator, with the
    reference's per-token log-probs as the experience maker gives them."""
    samples = [Sample(p, c, [0.0] * len(c), g) for g, (p, pair) in enumerate(zip(PROMPTS, zip(FIRST, SECOND))) for c in pair]
    rewards = torch.tensor([REWARD[s.completion_ids[0]] for s in samples])
    batch = collate_samples(samples, 0)
    labels, _ = ESTIMATORS["preference"].compute(rewards, torch.zeros(4, 4), batch["completion_mask"].float(), None, 2,
                                                 EstimatorContext(None))
    with torch.no_grad():
        ref = policy_outputs(trainer.ref_model, batch, 1.0).logps
    for s, label, row in zip(samples, labels.tolist(), ref):
        s.advantage, s.ref_logps = label, row[:len(s.completion_ids)].tolist()
    return collate_samples(samples, 0)


def ours(trainer, loss_type):
    config = build_config(OnlineDPOConfig, {"beta": BETA, "loss_type": loss_type, "temperature": 1.0, "batch_size": 4,
                                            "prompts_per_step": 2, "device": "cpu"})
    algorithm = OnlineDPO(config, trainer.processing_class, None)
    batch = our_batch(trainer)
    loss, metrics = algorithm.loss(trainer.model, batch)
    return float(loss.detach()) / algorithm.batch_weight(batch), metrics, algorithm.batch_weight(batch)


def closed_forms(trainer):
    """Every loss type's mean over the two pairs, from TRL's per-token log-probs."""
    prompt_ids, prompt_mask, completion_ids, completion_mask = trainer.fixed
    with torch.no_grad():
        policy = (trainer._forward(trainer.model, *trainer.fixed) * completion_mask).sum(-1)
        ref = (trainer._forward(trainer.ref_model, *trainer.fixed) * completion_mask).sum(-1)
    rho, length = policy - ref, completion_mask.sum(-1).float()
    chosen, rejected = torch.tensor([0, 3]), torch.tensor([2, 1])  # prompt 1: FIRST wins; prompt 2: SECOND wins
    delta = rho[chosen] - rho[rejected]
    h = rho[chosen] / length[chosen] - rho[rejected] / length[rejected]
    return {"sigmoid": float(-F.logsigmoid(BETA * delta).mean()), "hinge": float(torch.relu(1 - BETA * delta).mean()),
            "ipo": float(((h - 1 / (2 * BETA)) ** 2).mean()), "margins": float(BETA * delta.mean()), "kl": float(rho.mean())}


def test_the_sigmoid_loss_is_trls_online_dpo_loss_on_the_same_completions(trainer):
    model_before = copy.deepcopy(trainer.model.state_dict())
    trl_loss = float(trainer.training_step(trainer.model, {"prompt": ["a", "b"]}))
    trainer.model.zero_grad()
    assert all(torch.equal(v, model_before[k]) for k, v in trainer.model.state_dict().items())  # no optimizer step taken
    loss, metrics, pairs = ours(trainer, "sigmoid")
    assert pairs == 2
    assert loss == pytest.approx(trl_loss, abs=1e-5)
    assert float(metrics["rewards/margins"]) / 2 == pytest.approx(trainer.stats["rewards/margins"][-1], abs=1e-5)
    assert float(metrics["rewards/accuracies"]) / 2 == pytest.approx(trainer.stats["rewards/accuracies"][-1])


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_every_loss_type_is_its_closed_form(trainer, loss_type):
    expected = closed_forms(trainer)
    loss, metrics, _ = ours(trainer, loss_type)
    assert loss == pytest.approx(expected[loss_type], rel=1e-5, abs=1e-6)
    assert float(metrics["rewards/margins"]) / 2 == pytest.approx(expected["margins"], rel=1e-5, abs=1e-7)
    kl_sum, samples = metrics["kl/sequence_k1"]  # Σ_t log π_θ/π_ref per completion, mean over all four
    assert float(kl_sum) / samples == pytest.approx(expected["kl"], rel=1e-5, abs=1e-7)


def test_a_tied_pair_is_left_out_and_counted(trainer):
    REWARD[19] = 0.0  # prompt 2's completions now tie
    try:
        loss, metrics, pairs = ours(trainer, "sigmoid")
    finally:
        REWARD[19] = 2.0
    expected = closed_forms(trainer)  # prompt 1's pair alone: its own −log σ(βΔ)
    assert pairs == 1 and metrics["pairs/ties"] == (1.0, 2.0)
    prompt_ids, prompt_mask, completion_ids, completion_mask = trainer.fixed
    with torch.no_grad():
        rho = ((trainer._forward(trainer.model, *trainer.fixed) - trainer._forward(trainer.ref_model, *trainer.fixed)) * completion_mask).sum(-1)
    assert loss == pytest.approx(float(-F.logsigmoid(BETA * (rho[0] - rho[2]))), rel=1e-5)
    assert expected["sigmoid"] != pytest.approx(loss)


def test_bpo_is_the_initial_reference_hard_synced_every_10_steps(trainer):
    """The bpo preset's π_β is the one reference mechanism of every stage (models.reference.ReferenceSync,
    tests/unit/models/test_reference_sync.py): a frozen copy of the starting policy that becomes the policy
    after every 10th optimizer step; reference=behaviour (per round) has no reference model at all."""
    policy = copy.deepcopy(trainer.model)
    config = build_config(OnlineDPOConfig, {**PRESETS["bpo"], "device": "cpu"})
    assert (config.reference, config.ref_sync, config.ref_sync_steps) == ("initial", "hard", 10)
    algorithm = OnlineDPO(config, trainer.processing_class, None)
    algorithm.setup(policy)
    frozen = algorithm.experience.reference.frozen
    assert algorithm.ref_sync.model is frozen and frozen is not policy
    weight = lambda m: next(m.parameters()).detach().clone()  # noqa: E731
    start = weight(policy)
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)  # the policy trains
    assert algorithm.after_step(policy, 9, {}) == {"ref_syncs": 0} and torch.equal(weight(frozen), start)
    assert algorithm.after_step(policy, 10, {}) == {"ref_syncs": 1} and torch.equal(weight(frozen), weight(policy))
    per_round = OnlineDPO(build_config(OnlineDPOConfig, {"reference": "behaviour", "device": "cpu"}), trainer.processing_class, None)
    per_round.setup(copy.deepcopy(trainer.model))
    assert per_round.experience.reference is None and per_round.ref_sync is None  # the anchor: the rollout log-probs


@pytest.mark.parametrize("values, message", [
    ({"num_generations": 1}, "num_generations must be >= 2"),
    ({"prompts_per_step": 3, "num_minibatches": 2}, "a pair must stay in one optimizer step"),
    ({"beta": 0.0}, "beta must be > 0"),
    ({"reference": "behaviour", "ref_sync": "hard"}, "ref_sync=hard updates the reference policy, but with reference=behaviour"),
    ({**PRESETS["bpo"], "lora": True}, "under lora=true the reference is the adapter-disabled base"),
    ({"ref_sync_steps": 4}, "applies only with ref_sync=soft or hard"),
    ({"loss_type": "simpo"}, "loss_type"),
])
def test_impossible_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(OnlineDPOConfig, values)


def test_bpo_per_round_works_under_lora():
    """reference=behaviour reads no reference model, so LoRA (no copy of the policy) is fine."""
    assert build_config(OnlineDPOConfig, {"reference": "behaviour", "lora": True}).ref_sync == "none"

