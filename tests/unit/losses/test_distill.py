"""The distillation loss: the generalized JSD of GKD against a closed form on a 2-token vocabulary
and against TRL 1.16's `GKDTrainer.generalized_jsd_loss` on identical random logits; the soft/hard mix."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from posttrain.losses.distill import distill_loss, generalized_jsd


def _closed_form(s: list[float], p: list[float], beta: float) -> float:
    """Written out with plain floats: s = student probs, p = teacher probs."""
    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))
    if beta == 0:
        return kl(p, s)
    if beta == 1:
        return kl(s, p)
    m = [beta * pt + (1 - beta) * st for st, pt in zip(s, p)]
    return beta * kl(p, m) + (1 - beta) * kl(s, m)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_closed_form_on_two_tokens(beta):
    """Student logits (0, log 3) -> S = (1/4, 3/4); teacher logits (log 2, 0) -> P = (2/3, 1/3).
    E.g. beta = 0: KL(P||S) = 2/3 log(8/3) + 1/3 log(4/9) = 0.38361..."""
    student, teacher = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[math.log(2.0), 0.0]])
    expected = _closed_form([0.25, 0.75], [2 / 3, 1 / 3], beta)
    if beta == 0:
        assert expected == pytest.approx(2 / 3 * math.log(8 / 3) + 1 / 3 * math.log(4 / 9))
    assert float(generalized_jsd(student, teacher, beta)) == pytest.approx(expected, rel=1e-5)


def test_temperature_divides_both_logits():
    """T = 2 on logits (0, 2 log 3) and (2 log 2, 0) is T = 1 on the test above's logits."""
    student, teacher = torch.tensor([[0.0, 2 * math.log(3.0)]]), torch.tensor([[2 * math.log(2.0), 0.0]])
    assert float(generalized_jsd(student, teacher, 0.5, temperature=2.0)) == pytest.approx(
        _closed_form([0.25, 0.75], [2 / 3, 1 / 3], 0.5), rel=1e-5)


def test_identical_distributions_have_zero_divergence_and_beta_is_checked():
    logits = torch.randn(3, 7)
    for beta in (0.0, 0.3, 1.0):
        assert generalized_jsd(logits, logits.clone(), beta).abs().max() < 1e-6
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(logits, logits, 1.5)


def test_hard_weight_mixes_soft_and_hard_targets():
    """(1 - a) * sum D + a * sum CE, with CE at temperature 1 whatever T is."""
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 11, generator=g), torch.randn(5, 11, generator=g)
    labels = torch.tensor([1, 4, 0, 10, 3])
    soft = generalized_jsd(student, teacher, 0.5, 2.0).sum()
    hard = F.cross_entropy(student, labels, reduction="sum")
    loss, per_token = distill_loss(student, teacher, labels, beta=0.5, temperature=2.0, hard_weight=0.25)
    assert float(loss) == pytest.approx(float(0.75 * soft + 0.25 * hard), rel=1e-6)
    assert per_token.shape == (5,)
    assert float(distill_loss(student, teacher, labels, beta=0.5, temperature=2.0)[0]) == pytest.approx(float(soft), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.0])
def test_matches_trl_generalized_jsd_loss(beta, temperature):
    """TRL's loss on (batch, length, vocab) logits with -100 labels, 'batchmean' (a token mean) and
    'sum': ours on the same logits at the unmasked positions, with the gradient too."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    g = torch.Generator().manual_seed(int(beta * 10) + int(temperature * 100))
    student = (3 * torch.randn(2, 6, 32, generator=g, dtype=torch.float64)).float().requires_grad_(True)
    teacher = 3 * torch.randn(2, 6, 32, generator=g)
    labels = torch.randint(0, 32, (2, 6), generator=g)
    labels[0, :2] = -100  # a prompt
    labels[1, 4:] = -100  # padding
    theirs = gkd.GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta, temperature=temperature)
    their_sum = gkd.GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta, temperature=temperature, reduction="sum")
    (their_grad,) = torch.autograd.grad(theirs, student)
    mask = labels != -100
    ours, _ = distill_loss(student[mask], teacher[mask], labels[mask], beta=beta, temperature=temperature)
    (our_grad,) = torch.autograd.grad(ours / mask.sum(), student)
    torch.testing.assert_close(ours / mask.sum(), theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, their_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-4, atol=1e-6)
