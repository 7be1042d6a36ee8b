"""The generation engine: agreement with `model.generate`, exact log-probs, sampling semantics."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from posttrain.errors import ConfigError
from posttrain.generation import SamplingParams, generate
from posttrain.generation.kv_cache import PreallocatedLayer
from posttrain.generation.logits import filter_top_p, sample_next_token
from tiny_tokenizers import chatml_tokenizer, plain_tokenizer

PROMPT_TEXTS = ["The quick brown fox", "Hi", "What is 2 + 2? The answer is", "The sky"]


def make_model(arch: str, attn: str = "sdpa"):
    """A tiny random model; a larger init than usual makes its next-token distributions peaked."""
    tokenizer = plain_tokenizer() if arch == "gpt2" else chatml_tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    if arch == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                            initializer_range=0.2, **ids)
        model = GPT2LMHeadModel(config)
    else:
        config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
        config = config_class(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                              initializer_range=0.2, **ids)
        model = model_class(config)
    model.config._attn_implementation = attn
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def llama():
    return make_model("llama")


def encode(tokenizer, texts=PROMPT_TEXTS):
    return [tokenizer.encode(text) for text in texts]


def reference_logprobs(model, prompt, completion, temperature, top_k, top_p):
    """Log-probs of `completion` from one full forward pass, filtered and renormalised like the sampler."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1].double()
    if temperature == 0:
        scores = logits
    else:
        scores = logits / temperature
        if top_k:
            kth = scores.topk(top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, -math.inf)
        if top_p < 1:
            sorted_scores = scores.sort(dim=-1, descending=True).values
            probs = sorted_scores.softmax(-1)
            kept = (probs.cumsum(-1) - probs) < top_p
            cutoff = sorted_scores.masked_fill(~kept, math.inf).amin(-1, keepdim=True)
            scores = scores.masked_fill(scores < cutoff, -math.inf)
    return scores.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("arch,attn", [("llama", "sdpa"), ("qwen2", "sdpa"), ("gpt2", "sdpa"), ("llama", "eager")])
def test_greedy_matches_hf_generate_with_left_padding(arch, attn):
    model, tokenizer = make_model(arch, attn)
    prompts = encode(tokenizer)
    assert len({len(p) for p in prompts}) > 1
    out = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=24, temperature=0.0))
    for i, prompt in enumerate(prompts):
        with torch.no_grad():
            ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 do_sample=False, max_new_tokens=24, pad_token_id=tokenizer.pad_token_id or 0)
        assert out.token_ids[i] == ref[0, len(prompt):].tolist(), f"prompt {i}"


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 20, 1.0), (1.3, 0, 0.8), (0.9, 30, 0.9), (0.0, 0, 1.0)])
def test_logprobs_equal_a_fresh_forward_pass(llama, monkeypatch, temperature, top_k, top_p):
    model, tokenizer = llama
    model.generation_config.eos_token_id = list(range(10, 60))  # rows end at different steps
    compactions = []
    select = PreallocatedLayer.batch_select_indices
    monkeypatch.setattr(PreallocatedLayer, "batch_select_indices",
                        lambda self, keep: (compactions.append(len(keep)), select(self, keep))[1])
    prompts = encode(tokenizer)
    params = SamplingParams(max_new_tokens=20, temperature=temperature, top_k=top_k, top_p=top_p, n=3, seed=1)
    out = generate(model, tokenizer, prompts, params)
    assert compactions or temperature == 0  # finished rows were dropped from the batch and the cache mid-way
    for i, tokens in enumerate(out.token_ids):
        ref = reference_logprobs(model, prompts[out.prompt_index[i]], tokens, temperature, top_k, top_p)
        assert len(out.logprobs[i]) == len(tokens)
        torch.testing.assert_close(torch.tensor(out.logprobs[i], dtype=torch.float64), ref, atol=1e-4, rtol=0)


def test_top_k_1_and_tiny_top_p_equal_greedy(llama):
    model, tokenizer = llama
    prompts = encode(tokenizer)
    greedy = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=16, temperature=0.0))
    top_k = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=16, temperature=1.0, top_k=1, seed=3))
    top_p = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=16, temperature=1.0, top_p=1e-6, seed=4))
    assert top_k.token_ids == greedy.token_ids == top_p.token_ids
    assert all(lp == 0.0 for row in top_k.logprobs + top_p.logprobs for lp in row)  # a one-token distribution


def test_seed_gives_identical_samples_and_other_seeds_differ(llama):
    model, tokenizer = llama
    prompts = encode(tokenizer)
    run = lambda seed: generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=16, n=2, seed=seed))
    first, again, other = run(7), run(7), run(8)
    assert first.token_ids == again.token_ids and first.logprobs == again.logprobs
    assert first.token_ids != other.token_ids
    torch.manual_seed(5)
    unseeded = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=16))
    torch.manual_seed(5)
    assert generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=16)).token_ids == unseeded.token_ids


def test_a_prompts_samples_do_not_depend_on_its_batch_mates(llama, monkeypatch):
    """With one seed per prompt, a prompt's n completions are the same alone, in a batch, or with other
    batch-mates at another position (rows finishing at other steps, other left padding): what lets N
    processes that each sample their share of the prompts draw what one process draws."""
    model, tokenizer = llama
    monkeypatch.setattr(model.generation_config, "eos_token_id", list(range(10, 60)))  # rows end at different steps
    prompts, seeds = encode(tokenizer), [11, 22, 33, 44]

    def params(seeds):
        return SamplingParams(max_new_tokens=16, n=3, temperature=1.2, top_k=40, seeds=seeds)

    together = generate(model, tokenizer, prompts, params(seeds))
    per_prompt = [together.token_ids[3 * i:3 * i + 3] for i in range(4)]
    assert len({tuple(t) for t in together.token_ids}) > 8 and len({len(t) for t in together.token_ids}) > 1
    for i in range(4):
        alone = generate(model, tokenizer, [prompts[i]], params([seeds[i]]))
        assert alone.token_ids == per_prompt[i], i
        for got, want in zip(alone.logprobs, together.logprobs[3 * i:3 * i + 3]):  # padding moves them by ulps
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=0)
    swapped = generate(model, tokenizer, [prompts[3], prompts[1]], params([seeds[3], seeds[1]]))
    assert swapped.token_ids == per_prompt[3] + per_prompt[1]
    other = generate(model, tokenizer, [prompts[1]], params([99]))
    assert other.token_ids != per_prompt[1]
    # one `seed`: prompt i draws from a seed made of `seed` and i, so its samples don't depend on later prompts
    first = generate(model, tokenizer, prompts[:2], SamplingParams(max_new_tokens=16, n=3, seed=5))
    assert generate(model, tokenizer, prompts[:3], SamplingParams(max_new_tokens=16, n=3, seed=5)).token_ids[:6] == first.token_ids
    with pytest.raises(ConfigError, match="one seed per prompt"):
        generate(model, tokenizer, prompts, params(seeds[:3]))
    with pytest.raises(ConfigError, match="not both"):
        generate(model, tokenizer, prompts, SamplingParams(seed=1, seeds=seeds))


def test_n_samples_are_prompt_major(llama):
    model, tokenizer = llama
    prompts = encode(tokenizer)[:3]
    out = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=12, n=4, seed=0))
    assert out.prompt_index == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert len(out.token_ids) == len(out.texts) == len(out.logprobs) == len(out.finish_reasons) == 12
    assert len({tuple(t) for t in out.token_ids[:4]}) > 1  # independent samples of one prompt
    # sample j of prompt i is a sample from prompt i: its log-probs come from that prompt's context
    for i, tokens in enumerate(out.token_ids):
        ref = reference_logprobs(model, prompts[out.prompt_index[i]], tokens, 1.0, 0, 1.0)
        torch.testing.assert_close(torch.tensor(out.logprobs[i], dtype=torch.float64), ref, atol=1e-4, rtol=0)


def test_eos_ends_a_sequence_and_is_kept(llama):
    model, tokenizer = llama
    extra_eos = [40, 41, 42, 43, 44, 45]
    model.generation_config.eos_token_id = extra_eos
    eos_ids = {tokenizer.eos_token_id, *extra_eos}
    out = generate(model, tokenizer, encode(tokenizer), SamplingParams(max_new_tokens=30, n=8, seed=0))
    assert "eos" in out.finish_reasons and "length" in out.finish_reasons
    for tokens, reason, text in zip(out.token_ids, out.finish_reasons, out.texts):
        assert not eos_ids & set(tokens[:-1])  # nothing after an eos
        if reason == "eos":
            assert tokens[-1] in eos_ids
        else:
            assert reason == "length" and len(tokens) == 30 and tokens[-1] not in eos_ids
        assert text == tokenizer.decode(tokens, skip_special_tokens=True)
    assert out.truncated == [r == "length" for r in out.finish_reasons]
    ignored = generate(model, tokenizer, encode(tokenizer), SamplingParams(max_new_tokens=30, n=8, seed=0), ignore_eos=True)
    assert set(ignored.finish_reasons) == {"length"} and all(len(t) == 30 for t in ignored.token_ids)


def test_stop_strings_cut_the_text_before_the_stop(llama):
    model, tokenizer = llama
    model.generation_config.eos_token_id = None
    prompts = encode(tokenizer)
    free = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=24, temperature=0.0))
    text = free.texts[0]
    stop = text[8:11]  # a 3-character stop string from the middle of prompt 0's greedy text
    out = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=24, temperature=0.0, stop=[stop, "@@@"]))
    assert out.finish_reasons[0] == "stop"
    assert out.texts[0] == text[: text.find(stop)] and stop not in out.texts[0]
    # the tokens run up to the one that completed the stop string, and not beyond
    tokens = out.token_ids[0]
    assert tokens == free.token_ids[0][: len(tokens)]
    assert stop in tokenizer.decode(tokens) and stop not in tokenizer.decode(tokens[:-1])
    for i in range(1, len(prompts)):  # other rows are unaffected unless they contain the stop string too
        if stop not in free.texts[i]:
            assert out.token_ids[i] == free.token_ids[i] and out.finish_reasons[i] == "length"
        else:
            assert out.finish_reasons[i] == "stop" and stop not in out.texts[i]


def test_max_new_tokens_gives_length_and_zero_is_empty(llama):
    model, tokenizer = llama
    model.generation_config.eos_token_id = None
    out = generate(model, tokenizer, encode(tokenizer), SamplingParams(max_new_tokens=5, seed=0), ignore_eos=True)
    assert all(len(t) == 5 for t in out.token_ids) and out.truncated == [True] * 4
    empty = generate(model, tokenizer, encode(tokenizer), SamplingParams(max_new_tokens=0, n=2))
    assert empty.token_ids == [[]] * 8 and empty.finish_reasons == ["length"] * 8


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.5, 0), (2.0, 5)])
def test_sampling_frequencies_follow_the_distribution(llama, temperature, top_k):
    model, tokenizer = llama
    prompt = encode(tokenizer)[0]
    samples = 6000
    out = generate(model, tokenizer, [prompt], SamplingParams(max_new_tokens=1, temperature=temperature, top_k=top_k,
                                                               n=samples, seed=0), ignore_eos=True)
    with torch.no_grad():
        scores = model(torch.tensor([prompt])).logits[0, -1] / temperature
    if top_k:
        scores = scores.masked_fill(scores < scores.topk(top_k).values[-1], -math.inf)
    probs = scores.softmax(-1)
    counts = torch.bincount(torch.tensor([t[0] for t in out.token_ids]), minlength=len(probs)).double()
    freq = counts / samples
    assert (counts[probs == 0] == 0).all()
    # each frequency within 5 standard errors of its probability
    tolerance = 5 * (probs * (1 - probs) / samples).sqrt() + 1e-3
    assert ((freq - probs).abs() <= tolerance).all(), (freq - probs).abs().max()


def test_model_mode_is_restored(llama):
    model, tokenizer = llama
    model.train()
    generate(model, tokenizer, encode(tokenizer)[:1], SamplingParams(max_new_tokens=2, temperature=0.0))
    assert model.training
    model.eval()
    generate(model, tokenizer, encode(tokenizer)[:1], SamplingParams(max_new_tokens=2, temperature=0.0))
    assert not model.training


def test_bad_params_raise_config_error(llama):
    model, tokenizer = llama
    for bad in [dict(top_p=0.0), dict(temperature=-1.0), dict(n=0), dict(top_k=-2), dict(stop="</answer>")]:
        with pytest.raises(ConfigError):
            generate(model, tokenizer, [[1, 2]], SamplingParams(**bad))
    with pytest.raises(ConfigError):
        generate(model, tokenizer, [[]], SamplingParams())


def test_top_p_with_few_candidates_equals_a_full_sort():
    torch.manual_seed(0)
    scores = torch.randn(64, 300) * torch.linspace(0.1, 6.0, 64)[:, None]  # flat to peaked rows
    for top_p in [0.05, 0.5, 0.9, 0.999]:
        by_sort, by_candidates = filter_top_p(scores, top_p, candidates=300), filter_top_p(scores, top_p, candidates=8)
        assert torch.equal(by_sort.isinf(), by_candidates.isinf()), top_p
        kept_mass = torch.where(by_sort.isinf(), 0.0, scores.softmax(-1)).sum(-1)
        assert (kept_mass >= top_p - 1e-6).all()


@pytest.mark.parametrize("vocab", [300, 1000, 1024])
def test_two_level_sampler_follows_the_distribution(vocab):
    torch.manual_seed(0)
    logits = torch.randn(1, vocab) * 2
    logits[0, 7] = -1e4  # a token that must never be drawn
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next_token(logits.expand(4000, vocab), 1.0, 0, 1.0, generator)[0] for _ in range(10)])
    probs = logits[0].softmax(-1).double()
    freq = torch.bincount(draws, minlength=vocab).double() / len(draws)
    assert freq[7] == 0
    assert ((freq - probs).abs() <= 5 * (probs * (1 - probs) / len(draws)).sqrt() + 2e-4).all()


def test_greedy_logprob_is_under_the_unmodified_model():
    logits = torch.randn(3, 50)
    tokens, logprobs = sample_next_token(logits, 0.0, 5, 0.5, None)
    assert torch.equal(tokens, logits.argmax(-1))
    torch.testing.assert_close(logprobs, logits.log_softmax(-1).max(-1).values)


def test_preallocated_layer_matches_concatenation_and_grows():
    layer = PreallocatedLayer(capacity=3)
    chunks = [torch.randn(2, 2, length, 4) for length in (2, 1, 3)]
    for chunk in chunks:
        keys, values = layer.update(chunk, chunk * 2)
    expected = torch.cat(chunks, dim=2)
    assert layer.get_seq_length() == 6
    assert torch.equal(keys, expected) and torch.equal(values, expected * 2)
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, expected[1:])


def test_lora_wrapped_model_samples_like_its_base():
    peft = pytest.importorskip("peft")
    model, tokenizer = make_model("llama")
    prompts = encode(tokenizer)
    params = SamplingParams(max_new_tokens=12, seed=0)
    base = generate(model, tokenizer, prompts, params)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # B = 0: no change yet
    wrapped = generate(lora, tokenizer, prompts, params)
    assert wrapped.token_ids == base.token_ids
    torch.testing.assert_close(torch.tensor(sum(wrapped.logprobs, [])), torch.tensor(sum(base.logprobs, [])))
