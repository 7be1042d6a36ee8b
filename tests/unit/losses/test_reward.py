"""Reward-model losses: closed forms, K-wise rankings, and equality with TRL's RewardTrainer.

TRL parity: one real `trl.RewardTrainer` on a tiny Llama classifier; we take a batch from its own
data collator and its `compute_loss`, and compute ours (`RewardModeling.loss`, padded and packed
layouts) on the same model and the same token sequences.

Deliberate difference, tested against the closed form instead of TRL: soft labels μ (ties at 0.5,
seed 002). TRL's RewardTrainer has no label column (every pair is μ = 1); with μ = 1 ours is TRL's.
"""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.reward import (
    bradley_terry_loss,
    centering_penalty,
    pair_accuracy,
    ranking_loss,
    ranking_pairs,
    trajectory_bradley_terry_loss,
    trajectory_returns,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bradley_terry_closed_forms():
    c, r = torch.tensor([0.0, 1.0, -0.5, 2.0]), torch.tensor([0.0, 0.0, 0.5, 3.0])
    loss = bradley_terry_loss(c, r)
    # −log σ(Δ) = softplus(−Δ); Δ = 0 gives log 2
    expected = [math.log(2), softplus(-1.0), softplus(1.0), softplus(1.0)]
    assert loss.tolist() == pytest.approx(expected, abs=1e-6)
    margin = torch.tensor([0.5, 0.5, 0.0, 1.0])
    assert bradley_terry_loss(c, r, margin=margin).tolist() == pytest.approx(
        [softplus(0.5), softplus(-0.5), softplus(1.0), softplus(2.0)], abs=1e-6)


def test_soft_labels_and_ties():
    c, r = torch.tensor([1.0, 1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])
    mu = torch.tensor([1.0, 0.0, 0.5, 0.5])
    loss = bradley_terry_loss(c, r, label=mu)
    # μ = 0: the rejected side is preferred, −log σ(−Δ); μ = 0.5: the mean of both directions
    assert loss.tolist() == pytest.approx(
        [softplus(-1), softplus(1), 0.5 * (softplus(-1) + softplus(1)), math.log(2)], abs=1e-6)
    # a tie is minimised at Δ = 0: zero gradient there; a hard label pushes with −σ(−Δ) = −1/2
    delta = torch.zeros(2, requires_grad=True)
    bradley_terry_loss(delta, torch.zeros(2), label=torch.tensor([0.5, 1.0])).sum().backward()
    assert delta.grad.tolist() == pytest.approx([0.0, -0.5], abs=1e-7)
    # margin with a soft label: the preferred side must win by m in either direction
    m = torch.tensor([1.0])
    out = bradley_terry_loss(torch.tensor([0.3]), torch.tensor([0.0]), label=torch.tensor([0.25]), margin=m)
    assert out.item() == pytest.approx(0.25 * softplus(-(0.3 - 1)) + 0.75 * softplus(-(-0.3 - 1)), abs=1e-6)


def test_ranking_pairs_and_kwise_loss():
    # completions [ok, best, bad]: ranking[i] = rank of completion i
    assert ranking_pairs([1, 0, 2]) == [(1, 0), (1, 2), (0, 2)]
    assert len(ranking_pairs([3, 1, 4, 0, 2])) == 10  # C(5, 2)
    rewards = torch.tensor([0.2, 1.0, -0.4])
    by_hand = (softplus(-(1.0 - 0.2)) + softplus(-(1.0 + 0.4)) + softplus(-(0.2 + 0.4))) / 3
    assert ranking_loss(rewards, [1, 0, 2]).item() == pytest.approx(by_hand, abs=1e-6)


def test_accuracy_counts_ties_out_and_centering():
    c, r = torch.tensor([1.0, 0.0, 2.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0])
    correct, decided = pair_accuracy(c, r, torch.tensor([1.0, 0.0, 0.5, 1.0, 0.2]))
    assert (int(correct), int(decided)) == (2, 4)  # the tie is not counted; equal rewards count as wrong
    assert centering_penalty(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])).tolist() == [2.25, 1.0]


# ------------------------------------------------------------------------------------- TRL parity


@pytest.fixture(scope="module")
def reward_trainer(tmp_path_factory):
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoTokenizer

    from conftest import make_model_dir, preference_rows
    from posttrain.models.reward_model import load_reward_model

    root = tmp_path_factory.mktemp("trl-rm")
    path = make_model_dir(root / "model", "llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = load_reward_model(path, tokenizer.pad_token_id)
    with torch.no_grad():  # a head that scores sequences differently, so every Δ is non-zero
        model.score.weight.normal_(0, 1.0)
    rows = [{**row, "margin": 0.25 * (i % 4)} for i, row in enumerate(preference_rows(8, conversational=True))]
    args = trl.RewardConfig(output_dir=str(root / "out"), per_device_train_batch_size=8, report_to="none",
                            disable_dropout=True, use_cpu=True, max_length=None)
    trainer = trl.RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    return trainer, [trainer.train_dataset[i] for i in range(8)]


def _ours(trainer, examples, margin: bool, center: float = 0.0, packing: bool = True) -> float:
    from posttrain.algorithms.rm import RewardModeling

    algorithm = RewardModeling(trainer.processing_class.pad_token_id, center_rewards_coefficient=center, packing=packing)
    algorithm.setup(trainer.model)
    items = [{"sequences": [ex["chosen_ids"], ex["rejected_ids"]], "pairs": [(0, 1)], "label": [1.0],
              "margin": [ex["margin"] if margin else 0.0]} for ex in examples]
    batch = algorithm.collate(items)
    with torch.no_grad():
        loss, _ = algorithm.loss(trainer.model, batch)
    return float(loss) / algorithm.batch_weight(batch)


@pytest.mark.parametrize("margin", [False, True])
def test_bt_loss_equals_trl(reward_trainer, margin):
    trainer, examples = reward_trainer
    feed = examples if margin else [{k: v for k, v in ex.items() if k != "margin"} for ex in examples]
    inputs = trainer.data_collator(feed)
    assert ("margin" in inputs) == margin
    trainer.model.eval()
    with torch.no_grad():
        theirs = float(trainer.compute_loss(trainer.model, inputs))
    assert theirs > 0.2  # not a degenerate batch
    for packing in (True, False):
        assert _ours(trainer, examples, margin, packing=packing) == pytest.approx(theirs, abs=1e-5)


def test_centering_equals_trl(reward_trainer):
    trainer, examples = reward_trainer
    feed = [{k: v for k, v in ex.items() if k != "margin"} for ex in examples]
    trainer.args.center_rewards_coefficient = 0.05
    try:
        with torch.no_grad():
            theirs = float(trainer.compute_loss(trainer.model, trainer.data_collator(feed)))
    finally:
        trainer.args.center_rewards_coefficient = None
    assert _ours(trainer, examples, margin=False, center=0.05) == pytest.approx(theirs, abs=1e-5)
    assert theirs > _ours(trainer, examples, margin=False) + 1e-3  # the term is really there


def test_trajectory_bradley_terry_hand_values():
    """Seed 002 L98-110: P(τ¹ ≻ τ²) = exp ΣR¹ / (exp ΣR¹ + exp ΣR²). Three trajectories of 3, 2 and 1 steps:
    R = (0.5 + 1.0 − 0.5, 0.2 − 0.2, −1.5) = (1.0, 0.0, −1.5). Pairs (0 ≻ 1), (2 ≻ 1) and (0 ≻ 2) with μ = 0.5:
    −log σ(1) = log(1 + e^−1) = 0.313262; −log σ(−1.5) = log(1 + e^1.5) = 1.701413;
    the tie: ½ (softplus(−2.5) + softplus(2.5)) = ½ (0.078889 + 2.578889) = 1.328889."""
    steps = torch.tensor([0.5, 1.0, -0.5, 0.2, -0.2, -1.5], requires_grad=True)
    owner = torch.tensor([0, 0, 0, 1, 1, 2])
    assert trajectory_returns(steps, owner, 3).tolist() == pytest.approx([1.0, 0.0, -1.5], abs=1e-6)
    loss = trajectory_bradley_terry_loss(steps, owner, 3, torch.tensor([0, 2, 0]), torch.tensor([1, 1, 2]),
                                         label=torch.tensor([1.0, 1.0, 0.5]))
    assert loss.tolist() == pytest.approx([0.313262, 1.701413, 1.328889], abs=1e-6)
    loss[0].backward()  # every step of τ_w gets −(1 − σ(1)), every step of τ_l +(1 − σ(1)); τ_3 nothing
    g = 1 - 1 / (1 + math.exp(-1.0))
    assert steps.grad.tolist() == pytest.approx([-g, -g, -g, g, g, 0.0], abs=1e-6)
    # one step per trajectory is the pairwise loss
    c, r = torch.tensor([0.3, -1.0]), torch.tensor([0.1, 2.0])
    assert trajectory_bradley_terry_loss(torch.cat([c, r]), torch.arange(4), 4, torch.tensor([0, 1]), torch.tensor([2, 3])).tolist() \
        == pytest.approx(bradley_terry_loss(c, r).tolist(), abs=1e-7)
