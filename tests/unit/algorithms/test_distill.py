"""The distill stage's parts on tiny models: the student's and teacher's completion tokens line up (with
and without a system prompt for the teacher), `Distill.loss` equals TRL's GKD loss on the same
batch, the on-policy source, the random-init student of another size, and the errors."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from conftest import sft_rows, write_jsonl
from posttrain.algorithms.distill import (Distill, DistillConfig, DistillSource, build_student, load_items, load_teacher,
                                          read_system_prompt, with_system_prompt)
from posttrain.config import build_config
from posttrain.data.collate import IGNORE_INDEX
from posttrain.errors import ConfigError
from posttrain.models.loading import load_causal_lm, load_tokenizer

SYSTEM = "Answer briefly and kindly."


def distill_config(**values) -> DistillConfig:
    defaults = dict(teacher="embedded", max_length=128, batch_size=2, device="cpu", beta=0.5, temperature=1.3)
    return build_config(DistillConfig, {**defaults, **values})


@pytest.fixture(scope="module")
def setup(tiny_qwen2, tmp_path_factory):
    """(tokenizer, teacher = the tiny Qwen2, student = a random Qwen2 of another size, data file)."""
    data = write_jsonl(tmp_path_factory.mktemp("distill") / "d.jsonl", sft_rows(4))
    config = distill_config(model=tiny_qwen2, teacher=tiny_qwen2, student_config={"hidden_size": 48, "num_hidden_layers": 1})
    torch.manual_seed(0)
    student = build_student(config)
    return load_tokenizer(tiny_qwen2), load_causal_lm(tiny_qwen2), student, data


def test_random_init_student_has_the_asked_size_and_a_bad_key_is_named(setup, tiny_qwen2):
    _, teacher, student, _ = setup
    assert student.config.hidden_size == 48 and student.config.num_hidden_layers == 1
    assert student.config.vocab_size == teacher.config.vocab_size and teacher.config.hidden_size == 32
    with pytest.raises(ConfigError, match="student_config: Qwen2Config has no key 'hidden_sise'"):
        build_student(distill_config(model=tiny_qwen2, student_config={"hidden_sise": 8}))


def test_teacher_system_prompt_changes_only_the_teachers_prompt(setup):
    """The teacher's rows hold the system turn; both sides predict the same completion tokens, in the same order."""
    tokenizer, _, _, data = setup
    config = distill_config()
    plain = load_items(tokenizer, data, None, config, None)
    items = load_items(tokenizer, data, None, config, SYSTEM)
    system_ids = tokenizer(SYSTEM, add_special_tokens=False)["input_ids"]
    for a, b in zip(plain, items):
        assert a["prompt_ids"] == a["teacher_prompt_ids"] == b["prompt_ids"] and a["completion_ids"] == b["completion_ids"]
        text = tokenizer.decode(b["teacher_prompt_ids"])
        assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n") and len(b["teacher_prompt_ids"]) > len(b["prompt_ids"]) + len(system_ids)
    batch = Distill.__new__(Distill)
    batch.tokenizer = tokenizer
    batch = Distill.collate(batch, items)
    student_targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
    teacher_targets = batch["teacher_labels"][batch["teacher_labels"] != IGNORE_INDEX]
    assert torch.equal(student_targets, teacher_targets) and len(student_targets) == sum(sum(it["completion_mask"]) for it in items)
    assert batch["hard"] is True


def test_with_system_prompt_forms():
    assert with_system_prompt("What is 2 + 2?", "Be brief.") == "Be brief.\n\nWhat is 2 + 2?"
    user = [{"role": "user", "content": "Hi"}]
    assert with_system_prompt(user, "Be brief.") == [{"role": "system", "content": "Be brief."}] + user
    assert with_system_prompt([{"role": "system", "content": "You help."}] + user, "Be brief.") == [
        {"role": "system", "content": "Be brief.\n\nYou help."}] + user


def test_system_prompt_is_text_or_a_file(tmp_path):
    path = tmp_path / "constitution.txt"
    path.write_text("Be honest.\nBe kind.\n")
    assert read_system_prompt(str(path)) == "Be honest.\nBe kind."
    assert read_system_prompt("Be honest.") == "Be honest." and read_system_prompt(None) is None


@pytest.mark.parametrize("beta,hard_weight", [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.5, 0.3)])
def test_loss_equals_trl_gkd_loss_on_the_same_batch(setup, beta, hard_weight):
    """TRL's compute_loss convention: full-sequence logits of both models (attention mask, pads at the end),
    shifted by one, labels -100 off the completion, reduction 'sum'. Ours runs the heads only at the
    completion positions; the sums agree, plus hard_weight x the student's cross-entropy."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    tokenizer, teacher, student, data = setup
    config = distill_config(beta=beta, hard_weight=hard_weight)
    algorithm = Distill(teacher, tokenizer, config)
    algorithm.setup(student)
    items = load_items(tokenizer, data, None, config, None)
    batch = algorithm.collate(items)
    loss, metrics = algorithm.loss(student, batch)

    ids, width = batch["input_ids"], batch["input_ids"].shape[1]
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, IGNORE_INDEX)
    for r, it in enumerate(items):
        n, c = len(it["prompt_ids"]), it["completion_ids"]
        mask[r, :n + len(c)] = 1
        labels[r, n:n + len(c)] = torch.tensor([t if m else IGNORE_INDEX for t, m in zip(c, it["completion_mask"])])
    assert width == max(mask.sum(1))
    with torch.no_grad():
        s_logits = student(input_ids=ids, attention_mask=mask).logits[:, :-1]
        t_logits = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]
    theirs = gkd.GKDTrainer.generalized_jsd_loss(s_logits, t_logits, labels=labels[:, 1:], beta=beta, temperature=config.temperature, reduction="sum")
    hard = torch.nn.functional.cross_entropy(s_logits.reshape(-1, s_logits.shape[-1]), labels[:, 1:].reshape(-1), reduction="sum")
    assert float(loss.detach()) == pytest.approx(float((1 - hard_weight) * theirs + hard_weight * hard), rel=1e-4)
    assert float(metrics["divergence"]) == pytest.approx(float(theirs), rel=1e-4)
    assert float(metrics["ce"]) == pytest.approx(float(hard), rel=1e-4)
    assert algorithm.batch_weight(batch) == int((labels != IGNORE_INDEX).sum()) > 0
    loss.backward()  # the gradient reaches the student only
    assert all(p.grad is None for p in teacher.parameters()) and any(p.grad is not None for p in student.parameters())
    student.zero_grad(set_to_none=True)


def test_on_policy_steps_sample_from_the_student(setup):
    """lmbda=1: every step's completions are the student's samples (no hard targets), reproducible for
    (seed, step); lmbda=0: never; lmbda=0.5: about half the steps, the same draws every time."""
    tokenizer, teacher, student, data = setup
    config = distill_config(lmbda=1.0, max_new_tokens=5, seed=3)
    items = load_items(tokenizer, data, None, config, None)
    algorithm = Distill(teacher, tokenizer, config)
    algorithm.setup(student)
    source = DistillSource(items, algorithm, config)
    first, again = source.next_step(0), source.next_step(0)
    assert source.metrics() == {"on_policy": 1.0} and first[0]["hard"] is False
    assert torch.equal(first[0]["input_ids"], again[0]["input_ids"])
    completion_tokens = (first[0]["labels"] != IGNORE_INDEX).sum(1)
    assert ((completion_tokens >= 1) & (completion_tokens <= 5)).all()  # at most max_new_tokens, not the data's ~20
    offline = DistillSource(items, algorithm, distill_config(lmbda=0.0))
    assert all(offline.next_step(step)[0]["hard"] for step in range(3)) and offline.metrics() == {"on_policy": 0.0}
    half = DistillSource(items, algorithm, distill_config(lmbda=0.5, max_new_tokens=2))
    draws = [not half.next_step(step)[0]["hard"] for step in range(16)]
    assert 3 <= sum(draws) <= 13 and draws == [not half.next_step(step)[0]["hard"] for step in range(16)]


def test_a_teacher_with_another_tokenizer_is_a_config_error(tiny_llama, tiny_qwen2):
    config = distill_config(model=tiny_qwen2, teacher=tiny_llama)
    with pytest.raises(ConfigError, match=r"teacher=.* has another tokenizer than model=.*same tokenizer"):
        load_teacher(config, load_tokenizer(tiny_qwen2))


def test_a_teacher_head_of_another_size_is_a_config_error(setup):
    tokenizer, teacher, _, _ = setup
    model = copy.deepcopy(teacher)
    model.resize_token_embeddings(model.config.vocab_size + 8)
    with pytest.raises(ConfigError, match=r"the student has \d+ output logits and teacher=embedded \d+"):
        Distill(teacher, tokenizer, distill_config()).setup(model)


@pytest.mark.parametrize("values,message", [
    ({"teacher": None}, "distill needs teacher=PATH"),
    ({"beta": 1.5}, "config key 'beta' must be in [0, 1], got 1.5"),
    ({"lmbda": -0.1}, "config key 'lmbda' must be in [0, 1], got -0.1"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"student_config": "big"}, "config key 'student_config' must be a mapping"),
    ({"sample_temperature": 0.7}, "config key 'sample_temperature' is set (0.7) but this run never reads it: it applies only with lmbda > 0"),
    ({"lmbda": 1.0, "hard_weight": 0.5}, "config key 'hard_weight' is set (0.5) but this run never reads it: it applies only with lmbda < 1"),
])
def test_config_errors(values, message):
    with pytest.raises(ConfigError) as err:
        distill_config(**values)
    assert message in str(err.value)
