"""PPO end to end on a tiny model: the value head, what is logged and saved, the KL controller,
warm starts and rewards from a reward model, and learning a simple reward."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import read_metrics, run_cli, write_jsonl
from posttrain.algorithms.ppo import PPOConfig, ppo_algorithm, run_ppo
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.models.loading import load_tokenizer
from posttrain.online.experience import Sample, policy_outputs

REWARDS = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]
'''


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "rewards.py").write_text(REWARDS)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(16)])
    return prompts, f"{tmp_path / 'rewards.py'}:letter_a"


def ppo_config(model, prompts, reward, out, **values) -> PPOConfig:
    defaults = dict(model=model, dataset=prompts, reward_funcs=[reward], output_dir=str(out), max_steps=8,
                    prompts_per_step=16, max_new_tokens=12, max_length=64, batch_size=8, learning_rate=3e-3,
                    logging_steps=1, device="cpu")
    if "reward_model" in values:  # the reward model scores: reward_funcs would never be read
        defaults.pop("reward_funcs")
    return build_config(PPOConfig, {**defaults, **values})


@pytest.mark.parametrize("critic", ["value_head", "model"])
def test_values_come_from_the_final_hidden_state(tiny_llama, setup, tmp_path, critic):
    """V(s_t) is the head on the hidden state that predicts completion token t: the actor's own
    (value_head) or the separate critic trunk's (model); the log-probs come from the same forward."""
    prompts, reward = setup
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = load_tokenizer(tiny_llama)
    algorithm = ppo_algorithm(ppo_config(tiny_llama, prompts, reward, tmp_path, critic=critic), tokenizer, rewards=None)
    algorithm.setup(model)
    torch.nn.init.normal_(model.v_head.weight)
    if critic == "model":  # a trunk of its own: make it differ from the actor's
        torch.nn.init.normal_(model.critic_trunk.layers[0].mlp.down_proj.weight)
    samples = [Sample([1, 5, 9], [7, 8, 2], [0.0] * 3, 0), Sample([3], [4, 6, 6, 2], [0.0] * 4, 1)]
    batch = algorithm.collate(samples)
    with torch.no_grad():
        out = policy_outputs(model, batch, critic=algorithm.critic)
        for r, s in enumerate(samples):
            ids = torch.tensor([s.prompt_ids + s.completion_ids])
            full = model(input_ids=ids, output_hidden_states=True)
            trunk = full.hidden_states[-1] if critic == "value_head" else model.critic_trunk(input_ids=ids).last_hidden_state
            hidden = trunk[0, len(s.prompt_ids) - 1:-1]  # the states that predict each completion token
            want = model.v_head(hidden)[:, 0]
            torch.testing.assert_close(out.values[r, :len(s.completion_ids)], want, atol=1e-5, rtol=1e-5)
            lp = torch.log_softmax(full.logits[0, len(s.prompt_ids) - 1:-1], -1).gather(-1, torch.tensor(s.completion_ids)[:, None])[:, 0]
            torch.testing.assert_close(out.logps[r, :len(s.completion_ids)], lp, atol=1e-5, rtol=1e-5)


def test_run_logs_ppo_metrics_and_saves_the_actor_alone(tiny_llama, setup, tmp_path):
    prompts, reward = setup
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "run"))
    records = read_metrics(tmp_path / "run")
    first = records[0]
    for key in ("value_loss", "value_clip_fraction", "kl_coef", "kl/sequence_k1", "kl/k1", "entropy", "returns/mean",
                "clip_ratio/region", "reward/mean"):
        assert key in first, key
    assert first["ratio/mean"] == pytest.approx(1.0, abs=1e-4) and first["kl/k1"] == pytest.approx(0.0, abs=1e-6)
    assert all(math.isfinite(r["loss"]) for r in records)
    saved = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert not any("v_head" in k for k in saved)
    AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")  # loads as a plain causal LM


def test_adaptive_kl_halves_beta_while_the_kl_is_below_target(tiny_llama, setup, tmp_path):
    prompts, reward = setup
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "run", kl_coef=0.1, target_kl=100.0,
                       kl_controller="double_halve", num_iterations=1, num_minibatches=1, max_steps=3))
    coefs = [r["kl_coef"] for r in read_metrics(tmp_path / "run")]
    assert coefs == pytest.approx([0.05, 0.025, 0.0125])  # measured KL ≪ target / 1.5 each round


def test_reward_model_scores_and_warm_starts_the_critic(tiny_llama, setup, tmp_path):
    from posttrain.models.reward_model import load_reward_model, score_head

    prompts, reward = setup
    tokenizer = load_tokenizer(tiny_llama)
    torch.manual_seed(3)
    rm = load_reward_model(tiny_llama, tokenizer.pad_token_id)
    rm.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    config = ppo_config(tiny_llama, prompts, reward, tmp_path / "run", reward_model=str(tmp_path / "rm"), max_steps=2,
                        monitor_funcs=[reward])  # letter_a as the gold beside the learned reward
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    algorithm = ppo_algorithm(config, tokenizer, rewards=None)
    algorithm.setup(model)
    torch.testing.assert_close(model.v_head.weight, score_head(rm).weight)
    run_ppo(config)
    first = read_metrics(tmp_path / "run")[0]
    assert "reward/reward_model/mean" in first and first["reward/std"] > 0
    assert first["monitor/letter_a/mean"] == pytest.approx(first["monitor/letter_a/gold"])  # no declared range: own units
    assert first["monitor/letter_a/gap"] == pytest.approx(first["monitor/letter_a/proxy"] - first["monitor/letter_a/gold"])
    assert 0.0 < first["reward/reward_model/at_max"] <= 1.0  # an unbounded score: its largest so far is reached


def test_ppo_learns_a_simple_reward(tiny_llama, setup, tmp_path):
    prompts, reward = setup
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "run", max_steps=48, kl_coef=0.01, logging_steps=8,
                       max_new_tokens=16, num_generations=4, num_iterations=2, num_minibatches=1, batch_size=16))
    curve = [r["reward/mean"] for r in read_metrics(tmp_path / "run")]
    assert sum(curve[-2:]) / 2 > 2 * curve[0], curve  # the share of 'a' about triples in 24 rounds


def test_ptx_term_is_logged_and_trains_on_the_sft_data(tiny_llama, setup, tmp_path):
    from conftest import sft_rows

    prompts, reward = setup
    sft = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "run", ptx_coef=1.0, ptx_dataset=sft, max_steps=6,
                       num_iterations=3, num_minibatches=2))
    ptx = [r["ptx_loss"] for r in read_metrics(tmp_path / "run")]
    assert all(math.isfinite(v) and v > 0 for v in ptx)
    assert ptx[-1] < ptx[0]  # the next-token loss on the SFT data falls
    first = read_metrics(tmp_path / "run")[0]
    assert -10 < first["values/explained_variance"] <= 1.0


def test_resume_with_the_kl_controller_and_ptx_ends_where_the_uninterrupted_run_ends(tiny_llama, setup, tmp_path):
    """SIGKILL after step 3 of 6, then resume=true: the adaptive KL coefficient, the ptx data position and the
    reference moved at step 2 (ref_sync=soft: at step 4 it mixes into that one) come back from the checkpoint, so the weights (torch.equal) and every logged number but timings equal the
    uninterrupted run's."""
    from conftest import final_weights, run_cli, sft_rows, without_timing

    prompts, reward = setup
    sft = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
    common = dict(max_steps=6, num_iterations=1, num_minibatches=2, prompts_per_step=8, save_steps=1, kl_coef=0.1,
                  target_kl=100.0, kl_controller="double_halve", ptx_coef=1.0, ptx_dataset=sft, ref_sync="soft", ref_sync_steps=2,
                  ref_sync_alpha=0.5)
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "full", **common))
    args = [f"{key}={value}" for key, value in {**common, "model": tiny_llama, "dataset": prompts, "reward_funcs": f"[{reward}]",
                                                 "output_dir": tmp_path / "cut", "max_new_tokens": 12, "max_length": 64,
                                                 "batch_size": 8, "learning_rate": 3e-3, "logging_steps": 1, "device": "cpu"}.items()]
    result = run_cli("ppo", *args, env={"POSTTRAIN_STOP_AFTER_STEP": "3"})
    assert result.returncode != 0  # killed after step 3, between the two minibatch steps of round 2
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "cut", resume=True, **common))
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert len([r for r in full if "kl_coef" in r]) == 3 and len(cut) == len(full) == 6
    assert without_timing(cut) == without_timing(full)  # kl_coef and ptx_loss among them
    full_weights, cut_weights = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert full_weights.keys() == cut_weights.keys()
    assert all(torch.equal(full_weights[k], cut_weights[k]) for k in full_weights)


@pytest.mark.parametrize("values", [{"critic": "model", "critic_learning_rate": 1e-2}, {"advantage": "reinforce", "whiten_advantages": False},
                                    {"ratio_level": "sequence", "beta": 0.05, "kl_estimator": "k1", "packing": True},
                                    {"kl_coef": 0.0, "beta": 0.01}, {"policy_loss": "penalty"},
                                    {"policy_loss": "clip_penalty", "penalty_target_kl": 0.0, "penalty_coef": 0.5}],
                         ids=["separate-critic-own-lr", "reinforce-critic-baseline", "loss-options", "kl-in-loss", "penalty", "clip-penalty"])
def test_ppo_compositions_train(tiny_llama, setup, tmp_path, values):
    """PPO's parts compose: a separate critic trunk (trained with its own learning rate and gradient clip, left
    out of final/), REINFORCE with the critic as its baseline, the policy-loss options GRPO has (they are read:
    a KL term appears in the loss), the KL in the loss instead of the reward (verl's use_kl_loss), PPO-penalty
    and clip + KL (KL(π_old‖π_θ) in the loss, logged as kl_old with its coefficient)."""
    prompts, reward = setup
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "run", max_steps=4, **values))
    records = read_metrics(tmp_path / "run")
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["value_loss"]) for r in records)
    saved = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert not any("v_head" in k or "critic_trunk" in k for k in saved)
    if "beta" in values:
        assert "kl" in records[-1]  # the loss's KL term (k1) beside kl/k1, kl/k3
    if values.get("kl_coef") == 0.0:
        assert records[0]["kl_coef"] == 0.0 and records[-1]["kl"] > 0  # no KL in the reward, one in the loss
    if "critic_learning_rate" in values:
        assert all(r["grad_norm/own"] > 0 for r in records)
    if "policy_loss" in values:
        assert records[0]["kl_old"] == pytest.approx(0.0, abs=1e-6) and records[-1]["kl_old"] > 1e-6  # π_θ leaves π_old
        assert [r["penalty_coef"] for r in records] == [values.get("penalty_coef", 1.0)] * 4  # a round is 8 steps


def test_ppo_refreshes_its_reference_every_tau_steps(tiny_llama, setup, tmp_path):
    """ref_sync=hard, τ = 2, one optimizer step per round: the round sampled after the refresh at step 2 has
    π_ref = π_θ = π_old, so its KL to the reference is 0 (kl/k1, kl/k3 and the round's kl/sequence_k1),
    while the rounds before a refresh measure the drift."""
    prompts, reward = setup
    run_ppo(ppo_config(tiny_llama, prompts, reward, tmp_path / "run", max_steps=4, num_iterations=1, num_minibatches=1,
                       kl_coef=0.1, ref_sync="hard", ref_sync_steps=2))
    records = read_metrics(tmp_path / "run")
    assert [r["ref_syncs"] for r in records] == [0, 1, 1, 2]
    for r in records:
        fresh = r["step"] in (1, 3)
        assert (abs(r["kl/k3"]) < 1e-6) == fresh and (abs(r["kl/sequence_k1"]) < 1e-5) == fresh


@pytest.mark.parametrize("values, message", [
    ({"scale_rewards": "batch"}, "unknown config key 'scale_rewards'"),
    ({"advantage": "grpo"}, "config key 'advantage' got 'grpo'; expected one of reinforce, gae"),
    ({"advantage": "reinforce", "lam": 0.9}, "'lam' is set (0.9) but this run never reads it: it applies only with advantage=gae"),
    ({"kl_controller": "double_halve"}, "'kl_controller' is set ('double_halve') but this run never reads it: it applies only with an adaptive KL controller"),
    ({"ptx_dataset": "x.jsonl"}, "'ptx_dataset'"),
    ({"process_reward_mode": "diff"}, "'process_reward_mode'"),
    ({"kl_estimator": "k1"}, "'kl_estimator'"),
    ({"kl_coef": 0.0, "ref_sync": "hard"}, "ref_sync=hard updates the reference policy, but with beta = 0 and kl_coef = 0 no reference is loaded"),
    ({"critic_learning_rate": 0.0}, "critic_learning_rate must be > 0 (null: the actor's learning_rate), got 0.0"),
    ({"policy_loss": "penalty", "penalty_coef": 0.0}, "penalty_coef must be > 0"),
])
def test_ppo_refuses_options_it_never_reads(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(PPOConfig, values)


@pytest.mark.parametrize("args", [["reward_model={path}"], ["reward_funcs=[reward_model:path={path}]"]],
                         ids=["reward_model", "reward_funcs"])
def test_a_missing_reward_model_is_not_found_naming_reward_model(setup, tmp_path, args):
    prompts, _ = setup
    missing = tmp_path / "runs" / "nope" / "final"
    proc = run_cli("ppo", f"dataset={prompts}", *(a.format(path=missing) for a in args), "max_steps=1", "device=cpu",
                   f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"posttrain: error: reward_model path not found: {missing}; give the final/ directory of a "
                                   "`posttrain rm` run (or any sequence classifier with num_labels=1)")
