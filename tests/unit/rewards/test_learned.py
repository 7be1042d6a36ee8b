"""`reward_model` as a reward function: the RM's own tokenizer and template, batching, running
normalization, clipping, and the registry (the offset a `posttrain rm` run stores:
tests/e2e/test_rm_learned_reward.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import ARCHS, conversations, hand_reward
from posttrain.errors import ConfigError
from posttrain.rewards import registry
from posttrain.rewards.learned import RunningMoments, reward_model
from tiny_tokenizers import chatml_tokenizer, save_tokenizer


def make_rm_dir(path, arch: str, seed: int = 0, head_std: float = 1.0) -> str:
    """A random tiny sequence classifier with one output (a reward model as plain transformers saves it)."""
    make_config, make_tokenizer = ARCHS[arch]
    tokenizer = make_tokenizer()
    config = make_config(len(tokenizer))
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        model.score.weight.normal_(0, head_std)  # scores of order 1, so rows differ visibly
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return str(path)


@pytest.fixture(scope="module")
def rm_dirs(tmp_path_factory) -> dict[str, str]:
    return {arch: make_rm_dir(tmp_path_factory.mktemp(f"rm-{arch}"), arch) for arch in ARCHS}


@pytest.mark.parametrize("arch,conversational", [("llama", True), ("qwen2", True), ("gpt2", True), ("gpt2", False)])
def test_scores_equal_a_hand_forward_on_the_rm_template(rm_dirs, arch, conversational):
    prompts, completions = conversations(5)
    if not conversational:
        prompts, completions = [p[0]["content"] for p in prompts], [" " + c[0]["content"] for c in completions]
    score = reward_model(path=rm_dirs[arch])
    got = score(prompts, completions)
    expected = [hand_reward(rm_dirs[arch], p, c) for p, c in zip(prompts, completions)]
    assert got == pytest.approx(expected, abs=1e-5)
    assert max(expected) - min(expected) > 1e-2  # the rows really differ


def test_rm_tokenizer_and_template_differ_from_the_policy(rm_dirs):
    """A ChatML (Qwen-like) policy's conversations, scored by a Llama-3-template RM and a GPT-2-style RM."""
    policy = chatml_tokenizer()
    prompts, completions = conversations(4, seed=1)
    policy_ids = [policy.apply_chat_template(p + c, tokenize=True) for p, c in zip(prompts, completions)]
    for arch in ("llama", "gpt2"):
        rm_tok = AutoTokenizer.from_pretrained(rm_dirs[arch])
        assert rm_tok.get_vocab() != policy.get_vocab() or rm_tok.chat_template != policy.chat_template
        score = reward_model(path=rm_dirs[arch])
        # the policy's token ids travel along as a column; the RM must re-tokenize the text, not read them
        got = score(prompts, completions, completion_ids=policy_ids, answer=["x"] * 4)
        assert got == pytest.approx([hand_reward(rm_dirs[arch], p, c) for p, c in zip(prompts, completions)], abs=1e-5)
    # a message-list prompt with a plain-string completion is treated as one conversation
    llama = reward_model(path=rm_dirs["llama"])
    assert llama(prompts[:1], [completions[0][0]["content"]]) == pytest.approx(llama(prompts[:1], completions[:1]), abs=1e-6)


def test_batching_does_not_change_scores(rm_dirs):
    prompts, completions = conversations(7, seed=2)
    for arch in ("llama", "gpt2"):
        one = reward_model(path=rm_dirs[arch], batch_size=1)(prompts, completions)
        for size in (3, 16):
            assert reward_model(path=rm_dirs[arch], batch_size=size)(prompts, completions) == pytest.approx(one, abs=1e-5)


def test_running_normalization_matches_numpy_on_the_stream(rm_dirs):
    raw_fn = reward_model(path=rm_dirs["qwen2"])
    norm_fn = reward_model(path=rm_dirs["qwen2"], normalize=True)
    seen = []
    for seed, n in ((3, 1), (4, 5), (5, 3), (6, 6)):
        prompts, completions = conversations(n, seed)
        raw = raw_fn(prompts, completions)
        seen += raw
        got = norm_fn(prompts, completions)
        mean = np.mean(seen)
        std = np.std(seen, ddof=1) if len(seen) > 1 else 0.0
        expected = [(r - mean) / std if std > 0 else r - mean for r in raw]
        assert got == pytest.approx(expected, abs=1e-6)
        assert norm_fn.moments.count == len(seen)
        assert norm_fn.moments.mean == pytest.approx(mean, abs=1e-9) and norm_fn.moments.std == pytest.approx(std, abs=1e-9)
    assert got[0] != pytest.approx(raw[0], abs=1e-3)  # normalization really changed something


def test_running_moments_merge_equals_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, size=200)
    moments = RunningMoments()
    for chunk in np.array_split(values, [1, 7, 50, 51, 130]):
        moments.update(chunk.tolist())
    assert moments.count == 200
    assert moments.mean == pytest.approx(values.mean(), rel=1e-12) and moments.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert RunningMoments().normalize(2.5) == 2.5


def test_clipping_after_normalization(rm_dirs, tmp_path):
    loud = make_rm_dir(tmp_path / "loud", "llama", head_std=40.0)
    prompts, completions = conversations(8, seed=7)
    raw = reward_model(path=loud)(prompts, completions)
    assert max(abs(r) for r in raw) > 1.5
    clipped = reward_model(path=loud, clip=1.5)(prompts, completions)
    assert clipped == pytest.approx([min(max(r, -1.5), 1.5) for r in raw], abs=1e-6)
    normed = reward_model(path=loud, normalize=True)(prompts, completions)
    both = reward_model(path=loud, normalize=True, clip=0.5)(prompts, completions)
    assert both == pytest.approx([min(max(r, -0.5), 0.5) for r in normed], abs=1e-6)
    assert any(abs(r) > 0.5 for r in normed)


def test_registry_builds_it_and_refuses_bad_options(rm_dirs, tiny_llama, tmp_path):
    name, fn = registry.build(f"reward_model:path={rm_dirs['llama']}:batch_size=2:clip=3")
    prompts, completions = conversations(3)
    assert name == "reward_model" and fn(prompts, completions) == pytest.approx(
        reward_model(path=rm_dirs["llama"], clip=3)(prompts, completions), abs=1e-6)
    with pytest.raises(ConfigError, match="missing option"):
        registry.build("reward_model")
    with pytest.raises(ConfigError, match="not a reward model"):
        registry.build(f"reward_model:path={tiny_llama}")  # a causal LM: its score head would be random
    with pytest.raises(ConfigError, match="^reward_model path not found: /nonexistent/rm; give the final/ directory"):
        registry.build("reward_model:path=/nonexistent/rm")
    with pytest.raises(ConfigError, match="has no config.json"):
        registry.build(f"reward_model:path={tmp_path}")
    with pytest.raises(ConfigError, match="clip must be"):
        registry.build(f"reward_model:path={rm_dirs['llama']}:clip=-1")
