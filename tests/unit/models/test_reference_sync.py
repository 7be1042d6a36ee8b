"""posttrain.models.reference.ReferenceSync: TR-DPO's soft and hard reference updates, against TRL's own
update (SyncRefModelCallback._sync_target_model) on identical weights; only on multiples of τ; the state
that makes a resumed run score with the same reference; the runs that have no reference to move."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.callbacks import SyncRefModelCallback

from posttrain.errors import ConfigError
from posttrain.models.loading import apply_lora, load_causal_lm
from posttrain.models.reference import ReferencePolicy, ReferenceSync


@pytest.fixture
def policy(tiny_llama):
    torch.manual_seed(0)
    return load_causal_lm(tiny_llama)


def nudge(model, seed: int) -> None:
    """Move every weight of the policy, as an optimizer step would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_soft_update_is_trls_mixup_and_only_every_tau_steps(policy):
    """θ_ref ← α θ + (1 − α) θ_ref at steps 3 and 6 (τ = 3, α = 0.6), the same bits as TRL's update."""
    reference = ReferencePolicy(policy)
    sync = ReferenceSync(reference, policy, "soft", steps=3, alpha=0.6)
    trl_ref = ReferencePolicy(policy).frozen  # TRL's callback applied to its own copy of the same start
    start = weights(reference.frozen)
    logged, at = [], {}
    for step in range(1, 7):
        nudge(policy, step)
        logged.append(sync.after_step(policy, step)["ref_syncs"])
        if step % 3 == 0:
            at[step] = weights(policy)
            SyncRefModelCallback._sync_target_model(policy, trl_ref, 0.6)
        if step == 2:  # no update before step 3
            assert all(torch.equal(start[k], v) for k, v in reference.frozen.named_parameters())
    assert logged == [0, 0, 1, 1, 1, 2]
    ours, theirs = weights(reference.frozen), weights(trl_ref)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    for k in ours:  # by hand: two mixes, θ_ref = 0.6 θ_6 + 0.4 (0.6 θ_3 + 0.4 θ_0)
        torch.testing.assert_close(ours[k], 0.6 * at[6][k] + 0.4 * (0.6 * at[3][k] + 0.4 * start[k]))


def test_hard_update_copies_the_policy(policy):
    reference = ReferencePolicy(policy)
    sync = ReferenceSync(reference, policy, "hard", steps=2, alpha=0.6)  # α is not read by hard
    nudge(policy, 1)
    sync.after_step(policy, 1)
    assert not torch.equal(reference.frozen.lm_head.weight, policy.lm_head.weight)
    nudge(policy, 2)
    assert sync.after_step(policy, 2) == {"ref_syncs": 1}
    now = weights(policy)
    assert all(torch.equal(now[k], v) for k, v in reference.frozen.named_parameters())
    assert reference.frozen.lm_head.weight.requires_grad is False  # still frozen


def test_state_restores_the_moved_reference(policy, tiny_llama):
    """A fresh run (the starting reference) that loads the state scores with the moved one."""
    reference = ReferencePolicy(policy)
    sync = ReferenceSync(reference, policy, "soft", steps=1, alpha=0.25)
    assert sync.state_dict() == {"syncs": 0}  # the starting weights: nothing to store
    nudge(policy, 5)
    sync.after_step(policy, 1)
    state = sync.state_dict()
    fresh_policy = load_causal_lm(tiny_llama)
    fresh = ReferenceSync(ReferencePolicy(fresh_policy), fresh_policy, "soft", steps=1, alpha=0.25)
    fresh.load_state_dict(state)
    assert fresh.syncs == 1
    moved = weights(reference.frozen)
    assert all(torch.equal(moved[k], v) for k, v in fresh.model.named_parameters())


def test_no_reference_of_its_own_is_a_config_error(policy, tiny_gpt2):
    lora = apply_lora(policy, 4, 8, 0.0, ["all-linear"])
    with pytest.raises(ConfigError, match="adapter-disabled base"):
        ReferenceSync(ReferencePolicy(lora), lora, "hard", 1, 1.0)
    other = ReferencePolicy(policy, path=tiny_gpt2)  # ref_model_path of another architecture
    with pytest.raises(ConfigError, match="other parameters"):
        ReferenceSync(other, policy, "soft", 1, 0.5)
