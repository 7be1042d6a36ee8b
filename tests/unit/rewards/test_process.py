"""Process rewards: step splitting, aggregation, step scores against a hand-built forward of a PRM,
token-level reward tensors, the registered `process_reward_model` reward, and PPO receiving the
step rewards at the step-end tokens (hand-computed GAE)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

from posttrain.algorithms.ppo import PPOConfig, ppo_algorithm
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.models.loading import load_tokenizer
from posttrain.rewards import RewardFunctions, registry
from posttrain.rewards.process import (
    aggregate_scores, load_prm, split_steps, step_end_tokens, step_scores, step_spans, token_level_rewards,
)
from posttrain.rollout.engine import Rollouts


def hand_scores(prm_dir, prompt: str, steps: list[str], separator: str = "\n") -> list[float]:
    """P(good) at each step's separator, from one unpadded forward of ids assembled piece by piece."""
    model = AutoModelForTokenClassification.from_pretrained(prm_dir).eval()
    tok = load_tokenizer(prm_dir)
    ids, ends = list(tok(prompt)["input_ids"]), []
    for step in steps:
        ids += tok.encode(step, add_special_tokens=False) + tok.encode(separator, add_special_tokens=False)
        ends.append(len(ids) - 1)
    with torch.no_grad():
        good = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)[:, 1]
    return good[ends].tolist()


# -------------------------------------------------------------------------------- pure pieces


def test_step_spans_and_split_steps():
    assert step_spans("a\nb\n", "\n") == [(0, 2), (2, 4)] and split_steps("a\nb\n") == ["a", "b"]
    assert step_spans("a\n\n  \nb", "\n") == [(0, 2), (6, 7)] and split_steps("a\n\n  \nb") == ["a", "b"]
    assert split_steps("x=1 ки\ny=2 ки\n", " ки\n") == ["x=1", "y=2"] and step_spans("x=1 ки\ny", " ки\n") == [(0, 7), (7, 8)]
    assert step_spans("", "\n") == [] and split_steps("one step") == ["one step"]
    with pytest.raises(ConfigError, match="non-empty"):
        step_spans("a", "")


def test_aggregates():
    scores = [0.9, 0.5, 0.8]
    assert aggregate_scores(scores, "min") == 0.5 and aggregate_scores(scores, "last") == 0.8
    assert aggregate_scores(scores, "mean") == pytest.approx(2.2 / 3) and aggregate_scores(scores, "prod") == pytest.approx(0.36)
    assert aggregate_scores([], "min") == 0.0
    with pytest.raises(ConfigError, match="aggregate must be one of min, last, mean, prod"):
        aggregate_scores(scores, "max")


def test_token_level_rewards_score_and_diff():
    got = token_level_rewards([[0.9, 0.5, 0.8], [0.3]], [[1, 4, 6], [2]], 7)
    want = torch.tensor([[0, 0.9, 0, 0, 0.5, 0, 0.8], [0, 0, 0.3, 0, 0, 0, 0]])
    torch.testing.assert_close(got, want)
    diff = token_level_rewards([[0.9, 0.5, 0.8]], [[1, 4, 6]], 7, mode="diff")
    torch.testing.assert_close(diff, torch.tensor([[0, 0.9, 0, 0, -0.4, 0, 0.3]]))
    assert float(diff.sum()) == pytest.approx(0.8)  # the last step's score
    torch.testing.assert_close(token_level_rewards([[0.5, 0.25]], [[3, 3]], 4), torch.tensor([[0, 0, 0, 0.75]]))


def test_step_end_tokens_on_the_policy_tokens(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    text = "2+2=4\nso the answer is 4\n\nHello world"
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    ends = step_end_tokens(tok, ids, text)
    assert [tok.decode(ids[:e + 1]) for e in ends] == ["2+2=4\n", "2+2=4\nso the answer is 4\n", text]
    assert all(len(tok.decode(ids[:e])) < len(tok.decode(ids[:e + 1])) for e in ends)  # the first token that gets there
    cut = "2+2=4\nso the"  # text cut at a stop string: the last step ends where the text does
    assert [tok.decode(ids[:e + 1]) for e in step_end_tokens(tok, ids, cut)] == ["2+2=4\n", cut]


# -------------------------------------------------------------------------------- with a PRM


def test_step_scores_match_a_hand_built_forward(prm_dir):
    model, tok = load_prm(prm_dir, "cpu")
    prompts = ["What is 2 + 2?", "Hi", "What is 2 + 2?"]
    completions = ["2+2=4\nso 4", [{"role": "assistant", "content": "a\n\nb\nc\n"}], "one long step with no separator"]
    got = step_scores(model, tok, prompts, completions, batch_size=2)  # two batches, padded rows
    want = [hand_scores(prm_dir, "What is 2 + 2?", ["2+2=4", "so 4"]), hand_scores(prm_dir, "Hi", ["a", "b", "c"]),
            hand_scores(prm_dir, "What is 2 + 2?", ["one long step with no separator"])]
    assert [len(s) for s in got] == [2, 3, 1]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-5)


def test_registered_process_reward_aggregates_step_scores(prm_dir):
    prompts, completions = ["What is 2 + 2?"] * 3, ["2+2=4\nso 4", "4", ""]
    model, tok = load_prm(prm_dir, "cpu")
    steps = step_scores(model, tok, prompts, completions)
    for how in ("min", "last", "mean", "prod"):
        name, fn = registry.build(f"process_reward_model:path={prm_dir}:aggregate={how}:device=cpu")
        assert name == "process_reward_model"
        got = fn(prompts, completions, answer=["4"] * 3)
        assert got == pytest.approx([aggregate_scores(s, how) for s in steps], abs=1e-6) and got[2] == 0.0
    _, fn = registry.build(f"process_reward_model:path={prm_dir}:device=cpu")
    assert fn.prm.separator == "\n"  # the separator stored in the PRM's config
    with pytest.raises(ConfigError, match="aggregate must be one of min, last, mean, prod, got 'max'"):
        registry.build(f"process_reward_model:path={prm_dir}:aggregate=max")
    with pytest.raises(ConfigError, match="missing option"):
        registry.build("process_reward_model")


# ------------------------------------------------------------------------------------------ PPO


def ppo_with_prm(tiny_llama, prm_dir, tmp_path, **values):
    config = build_config(PPOConfig, {"model": tiny_llama, "output_dir": str(tmp_path / "run"), "device": "cpu",
                                      "process_reward_model": prm_dir, "kl_coef": 0.0, "whiten_advantages": False,
                                      "max_new_tokens": 16, "max_length": 64, **values})
    tok = load_tokenizer(tiny_llama)
    outcome = RewardFunctions({"outcome": lambda prompts, completions, **_: [1.0, -1.0]})
    from posttrain.rewards.process import ProcessRewardModel

    algorithm = ppo_algorithm(config, tok, outcome, process_rewards=ProcessRewardModel(prm_dir, device="cpu"))
    algorithm.setup(AutoModelForCausalLM.from_pretrained(tiny_llama))  # value head starts at 0: V = 0
    return algorithm, tok


@pytest.mark.parametrize("gamma, lam, mode, coef", [(1.0, 1.0, "score", 1.0), (0.9, 0.8, "diff", 2.0)])
def test_ppo_gae_receives_step_rewards_at_the_step_end_tokens(tiny_llama, prm_dir, tmp_path, gamma, lam, mode, coef):
    algorithm, tok = ppo_with_prm(tiny_llama, prm_dir, tmp_path, gamma=gamma, lam=lam, process_reward_mode=mode,
                                  process_reward_coef=coef)
    prompt = "What is 2 + 2?"
    texts = ["2+2=4\nso 4", "4"]
    completion_ids = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts]
    rollouts = Rollouts([tok(prompt)["input_ids"]] * 2, completion_ids, [[0.0] * len(c) for c in completion_ids], texts,
                        [False, False], [0, 0], 2)
    groups, result = algorithm.experience.score(rollouts, [{"prompt": prompt}])
    samples = [s for g in groups for s in g]
    algorithm.experience.finish(samples)

    first = len(tok.encode("2+2=4\n", add_special_tokens=False)) - 1  # the "\n" that ends step 1
    steps = [(hand_scores(prm_dir, prompt, ["2+2=4", "so 4"]), [first, len(completion_ids[0]) - 2]),
             (hand_scores(prm_dir, prompt, ["4"]), [len(completion_ids[1]) - 2])]  # last step: before eos
    for sample, outcome, (scores, ends), ids in zip(samples, [1.0, -1.0], steps, completion_ids):
        rewards = [0.0] * len(ids)
        rewards[-1] += outcome  # the outcome reward at the last token, as without a PRM
        previous = 0.0
        for p, t in zip(scores, ends):
            rewards[t] += coef * (p - previous if mode == "diff" else p)
            previous = p
        want, running = [0.0] * len(ids), 0.0
        for t in reversed(range(len(ids))):  # GAE with V = 0: Â_t = r_t + γλ Â_{t+1}
            running = rewards[t] + gamma * lam * running
            want[t] = running
        assert sample.extra["returns"] == pytest.approx(want, abs=1e-5)
        assert sample.advantage == pytest.approx(want, abs=1e-5)
        assert sum(sample.extra["step_rewards"]) == pytest.approx(sum(rewards) - outcome, abs=1e-5)
    assert result.per_function["process_reward"] == pytest.approx([sum(s.extra["step_rewards"]) for s in samples])
