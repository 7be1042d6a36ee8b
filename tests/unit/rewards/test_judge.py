"""LLM judges on tiny real models: the logprob method against a hand forward, generation against
transformers' greedy decode, position swap, the group tournament reward, RLAIF labelling, and the
registry. The verdict parsers and templates are in tests/unit/data/test_judge_format.py."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.errors import ConfigError, UserError
from posttrain.models.loading import load_causal_lm, load_tokenizer
from posttrain.rewards import registry
from posttrain.data.judge_format import PAIRWISE_TEMPLATE, POINTWISE_TEMPLATE, fill, parse_score
from posttrain.rewards.judge import PairwiseJudge, PointwiseJudge, pairwise_judge
from posttrain.rewards.rlaif import label_pairs

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
ANSWERS = [" The answer is 4.", " It is 5, I think.", " Four.", "4"]


def hand_probs(path, text: str, prefill: str = "") -> torch.Tensor:
    """Next-token probabilities after the judge's input, built by hand: the text as a user turn, then the prefill."""
    tok = AutoTokenizer.from_pretrained(path)
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    # the prefill is the start of the answer, tokenized on its own as the judge would generate it
    ids = tok(rendered, add_special_tokens=False)["input_ids"] + tok(prefill, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        return torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)


def mass(tok, probs: torch.Tensor, label: str) -> float:
    """The probability of `label`'s one-token spellings, with and without a leading space."""
    ids = {tuple(tok(s, add_special_tokens=False)["input_ids"]) for s in (label, " " + label)}
    return sum(float(probs[t[0]]) for t in ids if len(t) == 1)


def p_first(path, a: str, b: str, prompt=PROMPT) -> float:
    """P(A) / (P(A) + P(B)) with `a` shown as response A, from the hand forward."""
    tok = AutoTokenizer.from_pretrained(path)
    text = PAIRWISE_TEMPLATE.replace("{prompt}", prompt[0]["content"]).replace("{completion_a}", a).replace("{completion_b}", b)
    probs = hand_probs(path, text)
    return mass(tok, probs, "A") / (mass(tok, probs, "A") + mass(tok, probs, "B"))


def always_answering(path, answer: str):
    """The tiny model rewired to answer `answer` (one token) to anything: attention and MLP outputs zeroed,
    every embedding equal, and only `answer`'s row of the LM head nonzero."""
    tokenizer, model = load_tokenizer(path), load_causal_lm(path)
    (token,) = tokenizer(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[token] = 1.0
    return model, tokenizer


def test_logprob_pairwise_with_position_swap_equals_the_hand_forward(tiny_llama):
    judge = PairwiseJudge(load_causal_lm(tiny_llama), load_tokenizer(tiny_llama), PAIRWISE_TEMPLATE, method="logprob",
                          batch_size=3)  # batches of mixed lengths: left padding must not change anything
    pairs = [(ANSWERS[0], ANSWERS[1]), (ANSWERS[2], ANSWERS[3]), (ANSWERS[1], ANSWERS[3])]
    got = judge.preferences([PROMPT] * 3, [a for a, _ in pairs], [b for _, b in pairs])
    expected = [(p_first(tiny_llama, a, b) + 1 - p_first(tiny_llama, b, a)) / 2 for a, b in pairs]
    assert got == pytest.approx(expected, abs=1e-5)
    one_order = PairwiseJudge(judge.model, judge.tokenizer, PAIRWISE_TEMPLATE, method="logprob", position_swap=False)
    assert one_order.preferences([PROMPT], [ANSWERS[0]], [ANSWERS[1]]) == pytest.approx(
        [p_first(tiny_llama, ANSWERS[0], ANSWERS[1])], abs=1e-5)
    assert judge.compare(PROMPT, ANSWERS[0], ANSWERS[1]) == pytest.approx(expected[0], abs=1e-5)


def test_group_tournament_reward_is_the_win_rate(tiny_llama):
    model, tok = load_causal_lm(tiny_llama), load_tokenizer(tiny_llama)
    other = [{"role": "user", "content": "What is 3 + 5?"}]
    lonely = [{"role": "user", "content": "Hello!"}]
    prompts = [PROMPT, other, PROMPT, lonely, other, PROMPT]
    completions = [[{"role": "assistant", "content": a}] for a in (ANSWERS[0], " 8.", ANSWERS[1], "Hi", " Eight.", ANSWERS[2])]
    groups = [[0, 2, 5], [1, 4]]
    for rule in ("borda", "copeland"):
        judge = PairwiseJudge(model, tok, PAIRWISE_TEMPLATE, method="logprob", rule=rule)
        got = judge(prompts, completions)
        assert got[3] is None  # alone with its prompt: nothing to compare with
        for members in groups:
            for i in members:
                wins = [judge.compare(prompts[i], completions[i], completions[j]) for j in members if j != i]
                won = wins if rule == "borda" else [float(p > 0.5) for p in wins]
                assert got[i] == pytest.approx(sum(won) / len(won), abs=1e-6)
    borda = PairwiseJudge(model, tok, PAIRWISE_TEMPLATE, method="logprob")(prompts, completions)
    assert sum(borda[i] for i in groups[0]) == pytest.approx(1.5, abs=1e-6)  # win rates of a group sum to C(n,2)/(n-1)


def test_position_swap_turns_a_position_biased_judge_into_ties(tiny_llama):
    for letter, unswapped in (("A", 1.0), ("B", 0.0)):
        model, tok = always_answering(tiny_llama, letter)
        for method in ("generate", "logprob"):
            options = dict(method=method, max_new_tokens=1)
            swapped = PairwiseJudge(model, tok, PAIRWISE_TEMPLATE, **options)
            assert swapped.first_wins([PROMPT], [ANSWERS[0]], [ANSWERS[1]]) == [pytest.approx(unswapped)]
            assert swapped.preferences([PROMPT] * 2, ANSWERS[:2], ANSWERS[2:]) == [0.5, 0.5]  # it followed the position
            plain = PairwiseJudge(model, tok, PAIRWISE_TEMPLATE, position_swap=False, **options)
            assert plain.preferences([PROMPT], [ANSWERS[0]], [ANSWERS[1]]) == [pytest.approx(unswapped)]
            assert swapped([PROMPT] * 3, ANSWERS[:3]) == [0.5, 0.5, 0.5]
            copeland = PairwiseJudge(model, tok, PAIRWISE_TEMPLATE, rule="copeland", **options)
            assert copeland([PROMPT] * 3, ANSWERS[:3]) == [0.0, 0.0, 0.0]  # ties are not wins


def test_generate_reads_transformers_greedy_decode(tiny_llama):
    model, tok = load_causal_lm(tiny_llama), load_tokenizer(tiny_llama)
    judge = PointwiseJudge(model, tok, POINTWISE_TEMPLATE, max_new_tokens=6, prefill="Score:")
    texts = [fill(POINTWISE_TEMPLATE, prompt="What is 2 + 2?", completion=a, min_score=1, max_score=10) for a in ANSWERS[:2]]
    got = judge.generate(texts)
    hf_tok = AutoTokenizer.from_pretrained(tiny_llama)
    for text, out in zip(texts, got):
        rendered = hf_tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
        ids = torch.tensor([hf_tok(rendered, add_special_tokens=False)["input_ids"] + hf_tok("Score:")["input_ids"]])
        with torch.no_grad():
            greedy = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=hf_tok.eos_token_id,
                                    pad_token_id=hf_tok.pad_token_id)[0, ids.shape[1]:]
        assert out == hf_tok.decode(greedy, skip_special_tokens=True)
    assert judge([PROMPT] * 2, ANSWERS[:2]) == [parse_score(t, 1, 10) for t in got]


def test_pointwise_scores_by_generation_and_by_probability(tiny_llama):
    seven_model, seven_tok = always_answering(tiny_llama, "7")
    judge = PointwiseJudge(seven_model, seven_tok, POINTWISE_TEMPLATE, max_new_tokens=1)
    assert judge([PROMPT, "plain prompt"], [ANSWERS[0], [{"role": "assistant", "content": "x"}]]) == [pytest.approx(6 / 9)] * 2
    model, tok = load_causal_lm(tiny_llama), load_tokenizer(tiny_llama)
    judge = PointwiseJudge(model, tok, POINTWISE_TEMPLATE, method="logprob", min_score=1, max_score=5)
    got = judge([PROMPT], [ANSWERS[0]])[0]
    probs = hand_probs(tiny_llama, fill(POINTWISE_TEMPLATE, prompt="What is 2 + 2?", completion=ANSWERS[0], min_score=1,
                                        max_score=5), prefill="Score:")
    masses = [mass(tok, probs, str(s)) for s in range(1, 6)]
    assert got == pytest.approx(sum(m * (s - 1) / 4 for m, s in zip(masses, range(1, 6))) / sum(masses), abs=1e-5)
    with pytest.raises(ConfigError, match="'10' to be one token"):
        PointwiseJudge(model, tok, POINTWISE_TEMPLATE, method="logprob", max_score=10)
    garbage = PointwiseJudge(model, tok, POINTWISE_TEMPLATE, max_new_tokens=3, prefill="")
    assert all(v is None or 0 <= v <= 1 for v in garbage([PROMPT] * 3, ANSWERS[:3]))


def test_label_pairs_rlaif(tiny_llama):
    model, tok = load_causal_lm(tiny_llama), load_tokenizer(tiny_llama)
    judge = PairwiseJudge(model, tok, PAIRWISE_TEMPLATE, method="logprob")
    rows = [{"prompt": PROMPT, "completions": [ANSWERS[0], ANSWERS[1]], "id": 0},
            {"prompt": PROMPT, "completion_a": ANSWERS[2], "completion_b": ANSWERS[3], "id": 1},
            {"prompt": PROMPT, "completions": [ANSWERS[1], ANSWERS[2]], "id": 2}]
    p = [judge.compare(PROMPT, *pair) for pair in ((ANSWERS[0], ANSWERS[1]), (ANSWERS[2], ANSWERS[3]), (ANSWERS[1], ANSWERS[2]))]
    labelled = label_pairs(judge, rows, soft_labels=True)
    assert labelled.counts == {"pairs": 3, "labelled": 3, "ties": 0, "unjudged": 0}
    for row, out, prob in zip(rows, labelled, p):
        a, b = row.get("completions") or [row["completion_a"], row["completion_b"]]
        assert (out["chosen"], out["rejected"]) == ((a, b) if prob > 0.5 else (b, a))
        assert out["label"] == pytest.approx(max(prob, 1 - prob)) and out["id"] == row["id"] and out["prompt"] == PROMPT
    # a margin wider than the closest pair makes it a tie: dropped by default, kept with label 0.5
    closest = min(range(3), key=lambda i: abs(p[i] - 0.5))
    margin = (abs(p[closest] - 0.5) + sorted(abs(x - 0.5) for x in p)[1]) / 2
    dropped = label_pairs(judge, rows, min_margin=margin)
    assert dropped.counts["ties"] == 1 and len(dropped) == 2 and "label" not in dropped[0]
    kept = label_pairs(judge, rows, min_margin=margin, ties="keep")
    assert len(kept) == 3 and [r["label"] for r in kept if "label" in r] == [0.5] and kept.counts["ties"] == 1
    # a judge that always says "A": both orders disagree about content, so every pair is a tie
    biased = PairwiseJudge(*always_answering(tiny_llama, "A"), PAIRWISE_TEMPLATE, max_new_tokens=1)
    assert label_pairs(biased, rows).counts == {"pairs": 3, "labelled": 0, "ties": 3, "unjudged": 0}
    with pytest.raises(UserError, match="exactly two completions"):
        label_pairs(judge, [{"prompt": PROMPT, "completions": ANSWERS[:3]}])


def test_registry_and_bad_options(tiny_llama, tmp_path):
    name, fn = registry.build(f"pairwise_judge:model={tiny_llama}:method=logprob:rule=copeland")
    assert name == "pairwise_judge" and isinstance(fn, PairwiseJudge) and fn.rule == "copeland"
    direct = pairwise_judge(model=tiny_llama, method="logprob", rule="copeland")
    assert fn([PROMPT] * 3, ANSWERS[:3]) == direct([PROMPT] * 3, ANSWERS[:3])
    _, point = registry.build(f"judge:model={tiny_llama}:method=logprob:max_score=5:batch_size=2")
    assert isinstance(point, PointwiseJudge) and all(0 <= v <= 1 for v in point([PROMPT] * 3, ANSWERS[:3]))
    for spec, message in ((f"judge:model={tiny_llama}:method=vibes", "method must be one of"),
                          (f"pairwise_judge:model={tiny_llama}:rule=plurality", "rule must be one of"),
                          (f"judge:model={tiny_llama}:template={tmp_path}/none.txt", "template file not found"),
                          (f"judge:model={tiny_llama}:min_score=5:max_score=5", "max_score must be > min_score"),
                          ("judge:temp=1", "unknown option")):
        with pytest.raises(ConfigError, match=message):
            registry.build(spec)
    long_judge = PointwiseJudge(load_causal_lm(tiny_llama), load_tokenizer(tiny_llama), POINTWISE_TEMPLATE)
    with pytest.raises(UserError, match="more than the judge model's 256 positions"):
        long_judge([PROMPT], ["word " * 300])
