"""Our preference losses against TRL's own, on identical inputs, to 1e-5.

DPO family: one real `trl.DPOTrainer` on a tiny Llama; its policy is perturbed so it differs from
its reference. For each loss type we take TRL's collated batch and `compute_loss`, and compute ours
from the same batch with our log-prob code (`sequence_logprobs`) and the same two models.
CPO, SimPO and ORPO: TRL 1.16 keeps them in `trl.experimental`, with the preference terms as
methods on per-sequence log-probs (`cpo_loss`, `odds_ratio_loss`); we call those on the same tensors.

Deliberate differences, each tested against its closed form instead:
- the NLL / SFT term (cpo, orpo, sft, RPO): ours is each chosen completion's mean token NLL,
  averaged over pairs (the ORPO and RPO papers' form, and exact under gradient accumulation); TRL
  takes one token mean over the whole batch. They agree when all chosen completions have the same
  length, which the last test checks;
- `sigmoid` with label_smoothing > 0 is cDPO here; TRL 1.16's `sigmoid` ignores label_smoothing.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from conftest import make_model_dir, preference_rows  # noqa: E402
from posttrain.losses.preference import PairLogps, PreferenceParams, implicit_rewards, preference_loss  # noqa: E402
from posttrain.models.logprobs import sequence_logprobs  # noqa: E402

TRL_DPO_TYPES = ["sigmoid", "hinge", "ipo", "robust", "apo_zero", "apo_down", "bco_pair", "nca_pair", "sppo_hard", "discopop"]


@pytest.fixture(scope="module")
def dpo_trainer(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl-dpo")
    path = make_model_dir(root / "model", "llama")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    args = trl.DPOConfig(output_dir=str(root / "out"), per_device_train_batch_size=8, report_to="none", beta=0.1,
                         max_length=None, disable_dropout=True, use_cpu=True)
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(preference_rows(8)),
                             processing_class=tokenizer)
    torch.manual_seed(1)
    with torch.no_grad():  # move the policy away from its reference so every log-ratio is non-zero
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, batch


def _ours(trainer, batch, loss_type: str, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    inputs = dict(input_ids=batch["input_ids"], target_mask=batch["completion_mask"], attention_mask=batch["attention_mask"])
    with torch.no_grad():
        policy = sequence_logprobs(trainer.model, **inputs)
        ref = sequence_logprobs(trainer.ref_model, **inputs)
    n = batch["input_ids"].shape[0] // 2
    p = PairLogps(*policy.sums.split(n), *ref.sums.split(n), *policy.counts.split(n))
    return preference_loss(p, PreferenceParams(beta=beta, label_smoothing=label_smoothing), [loss_type]).mean()


@pytest.mark.parametrize("loss_type", TRL_DPO_TYPES)
def test_dpo_losses_equal_trl(dpo_trainer, loss_type):
    trainer, batch = dpo_trainer
    smoothing = 0.1 if loss_type == "robust" else 0.0
    trainer.loss_types, trainer.loss_weights = [loss_type], [1.0]
    trainer.beta, trainer.label_smoothing = 0.1, smoothing
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)
    ours = _ours(trainer, batch, loss_type, 0.1, smoothing)
    assert abs(float(theirs)) > 1e-3  # a non-trivial value, not a 0 == 0 comparison
    # 1e-5 absolute, or float32 rounding (1e-6 relative) for sppo_hard's losses of ~50
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5, rel=1e-6)


def test_weighted_loss_list_equals_trl(dpo_trainer):
    trainer, batch = dpo_trainer
    trainer.loss_types, trainer.loss_weights, trainer.beta, trainer.label_smoothing = ["sigmoid", "ipo"], [0.7, 0.3], 0.2, 0.0
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)
    ours = 0.7 * _ours(trainer, batch, "sigmoid", 0.2) + 0.3 * _ours(trainer, batch, "ipo", 0.2)
    assert float(ours) == pytest.approx(float(theirs), abs=1e-5)


# ------------------------------------------------------------------- CPO, SimPO, ORPO (experimental)

def _logps(seed: int = 0, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    chosen_tokens = torch.randint(3, 12, (n,), generator=g).float()
    rejected_tokens = torch.randint(3, 12, (n,), generator=g).float()
    chosen = -chosen_tokens * (0.2 + torch.rand(n, generator=g))  # log-probs: negative sums
    rejected = -rejected_tokens * (0.2 + torch.rand(n, generator=g))
    return PairLogps(chosen, rejected, chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens)


def _trl_self(**attrs):
    return SimpleNamespace(accelerator=SimpleNamespace(device=torch.device("cpu")), alpha=0.0, **attrs)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cpo_preference_term_equals_trl(smoothing):
    from trl.experimental.cpo import CPOTrainer

    p, params = _logps(), PreferenceParams(beta=0.3, label_smoothing=smoothing)
    theirs, _, _ = CPOTrainer.cpo_loss(_trl_self(beta=0.3, loss_type="sigmoid", label_smoothing=smoothing),
                                       p.policy_chosen, p.policy_rejected)
    ours = preference_loss(p, params, ["cpo"]) - preference_loss(p, params, ["sft"])  # CPO minus its NLL term
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_simpo_equals_trl_cpo_simpo():
    from trl.experimental.cpo import CPOTrainer

    p, params = _logps(1), PreferenceParams(beta=2.0, simpo_gamma=0.8)
    chosen, rejected = p.mean_logps()  # TRL averages log-probs for simpo (average_log_prob=True)
    theirs, _, _ = CPOTrainer.cpo_loss(_trl_self(beta=2.0, loss_type="simpo", simpo_gamma=0.8, label_smoothing=0.0),
                                       chosen, rejected)
    torch.testing.assert_close(preference_loss(p, params, ["simpo"]), theirs, atol=1e-5, rtol=0)


def test_orpo_odds_ratio_term_equals_trl():
    from trl.experimental.orpo import ORPOTrainer

    p, params = _logps(2), PreferenceParams(orpo_lambda=0.25)
    chosen, rejected = p.mean_logps()
    theirs, *_ = ORPOTrainer.odds_ratio_loss(_trl_self(beta=0.25), chosen, rejected)  # TRL's β is ORPO's λ
    ours = preference_loss(p, params, ["orpo"]) - preference_loss(p, params, ["sft"])
    torch.testing.assert_close(ours, -theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("loss_type, trainer", [("simpo", "cpo"), ("cpo", "cpo"), ("orpo", "orpo")])
def test_logged_rewards_equal_what_trl_logs(loss_type, trainer):
    """rewards/chosen, rewards/rejected (and so margins, accuracies) of the reference-free losses: TRL feeds
    SimPO and ORPO the per-token mean log-probs and logs β times those (ORPO's β is its λ), CPO the sums."""
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    p = _logps(4)
    p.rejected_tokens = p.rejected_tokens * 3  # long rejected answers: the sums and the means order pairs differently
    params = PreferenceParams(beta=2.0, simpo_gamma=0.8, orpo_lambda=0.25)
    if trainer == "orpo":
        _, theirs_w, theirs_l, _, _ = ORPOTrainer.odds_ratio_loss(_trl_self(beta=0.25), *p.mean_logps())
    else:
        logps = p.mean_logps() if loss_type == "simpo" else (p.policy_chosen, p.policy_rejected)
        _, theirs_w, theirs_l = CPOTrainer.cpo_loss(
            _trl_self(beta=2.0, loss_type="simpo" if loss_type == "simpo" else "sigmoid", simpo_gamma=0.8, label_smoothing=0.0), *logps)
    ours_w, ours_l = implicit_rewards(p, params, [loss_type, "sft"])
    torch.testing.assert_close(ours_w, theirs_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours_l, theirs_l, atol=1e-6, rtol=0)
    if loss_type != "cpo":  # the normalised rewards are not the summed ones: a pair's order flips
        summed = params.beta * (p.policy_chosen - p.policy_rejected)
        assert ((ours_w > ours_l) != (summed > 0)).any()


def test_sft_term_equals_batch_token_mean_when_lengths_are_equal():
    p = _logps(3)
    p.chosen_tokens = torch.full_like(p.chosen_tokens, 7.0)
    batch_token_mean = -p.policy_chosen.sum() / p.chosen_tokens.sum()  # TRL's NLL term
    assert float(preference_loss(p, PreferenceParams(), ["sft"]).mean()) == pytest.approx(float(batch_token_mean), abs=1e-6)


# ---------------------------------------------------------------------- closed forms without TRL

def test_cdpo_and_soft_labels_closed_form():
    p = PairLogps(torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0]), torch.tensor([-3.5, -4.5]),
                  torch.tensor([-3.5, -4.5]), label=torch.tensor([1.0, 0.5]))
    # Δ = (−3 + 3.5) − (−4 + 3.5) = 1.0 ;  (−5 + 4.5) − (−4 + 4.5) = −1.0 ;  β = 1, ε = 0.1
    loss = preference_loss(p, PreferenceParams(beta=1.0, label_smoothing=0.1), ["sigmoid"])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    q0 = 0.9
    expected0 = -q0 * math.log(sig(1.0)) - (1 - q0) * math.log(sig(-1.0))
    expected1 = -0.5 * math.log(sig(-1.0)) - 0.5 * math.log(sig(1.0))  # a tie: q = 0.5 whatever ε
    torch.testing.assert_close(loss, torch.tensor([expected0, expected1]), atol=1e-6, rtol=0)


def test_dpo_gradient_matches_seed_formula():
    """Seed 003 L2251: ∇L = −β σ(r̂_l − r̂_w)(∇log π(y_w) − ∇log π(y_l)), here w.r.t. the log-probs."""
    chosen, rejected = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.5], requires_grad=True)
    p = PairLogps(chosen, rejected, torch.tensor([-2.2]), torch.tensor([-2.1]))
    beta = 0.5
    preference_loss(p, PreferenceParams(beta=beta), ["sigmoid"]).sum().backward()
    r_w, r_l = beta * (-2.0 + 2.2), beta * (-2.5 + 2.1)
    weight = 1 / (1 + math.exp(-(r_l - r_w)))
    assert float(chosen.grad) == pytest.approx(-beta * weight, abs=1e-6)
    assert float(rejected.grad) == pytest.approx(beta * weight, abs=1e-6)


def test_orpo_stable_for_near_certain_sequences():
    p = PairLogps(torch.tensor([-1e-7, -30.0]), torch.tensor([-40.0, -1e-6]), chosen_tokens=torch.ones(2),
                  rejected_tokens=torch.ones(2))
    loss = preference_loss(p, PreferenceParams(orpo_lambda=0.1), ["orpo"]).double()
    # log odds = log P − log(1 − P): −1e-7 − log(1e-7) ≈ 16.118 and −1e-6 − log(1e-6) ≈ 13.816; ≈ log P for P ≪ 1
    odds_w = (-1e-7 - math.log(1e-7), -30.0)
    odds_l = (-40.0, -1e-6 - math.log(1e-6))
    expected = [-c + 0.1 * math.log1p(math.exp(-(w - l))) for c, w, l in zip((-1e-7, -30.0), odds_w, odds_l)]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def test_mdpo_anchor_is_trls_bco_pair_without_its_rejected_half(dpo_trainer):
    """TRL has no MDPO anchor; its bco_pair (no running shift in 1.16) is −log σ(βρ_w) − log σ(−βρ_l), so
    our mdpo list [sigmoid, anchor] plus the rejected half, computed here, must equal TRL's [sigmoid, bco_pair]."""
    trainer, batch = dpo_trainer
    trainer.loss_types, trainer.loss_weights, trainer.beta, trainer.label_smoothing = ["sigmoid", "bco_pair"], [1.0, 1.0], 0.1, 0.0
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)
        inputs = dict(input_ids=batch["input_ids"], target_mask=batch["completion_mask"], attention_mask=batch["attention_mask"])
        policy, ref = sequence_logprobs(trainer.model, **inputs), sequence_logprobs(trainer.ref_model, **inputs)
    n = batch["input_ids"].shape[0] // 2
    p = PairLogps(*policy.sums.split(n), *ref.sums.split(n))
    ours = preference_loss(p, PreferenceParams(beta=0.1), ["sigmoid", "anchor"]).mean()
    rejected_half = -torch.nn.functional.logsigmoid(-0.1 * p.rejected_logratios).mean()
    assert float(ours + rejected_half) == pytest.approx(float(theirs), abs=1e-5)
