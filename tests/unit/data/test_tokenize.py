import pytest
from tiny_tokenizers import CHATML_TEMPLATE, chatml_tokenizer, llama3_tokenizer, plain_tokenizer

from posttrain.data import render, tokenize_example, tokenize_preference, tokenize_prompt, tokenize_rows
from posttrain.errors import DataError

TOKENIZERS = {"chatml": chatml_tokenizer(), "llama3": llama3_tokenizer(), "plain": plain_tokenizer()}
CHAT = ["chatml", "llama3"]
END = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "plain": "<|endoftext|>"}
BOS = {"chatml": "", "llama3": "<|begin_of_text|>", "plain": ""}


def user(text):
    return [{"role": "user", "content": text}]


def bot(text):
    return [{"role": "assistant", "content": text}]


def tok_ex(tok, row, **kw):
    kw.setdefault("max_length", None)
    kw.setdefault("truncation", False)
    return tokenize_example(tok, row, source="d.jsonl", row_index=3, **kw)


def masked(tok, out, ids_key="input_ids", mask_key="completion_mask"):
    ids, mask = out[ids_key], out[mask_key]
    assert len(ids) == len(mask)
    return tok.decode([i for i, m in zip(ids, mask) if m])


def unmasked(tok, out):
    return tok.decode([i for i, m in zip(out["input_ids"], out["completion_mask"]) if not m])


# ------------------------------------------------------------------------------------- standard rows


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_standard_prompt_completion_boundary(name):
    tok = TOKENIZERS[name]
    out = tok_ex(tok, {"prompt": "What is 2 + 2? The answer is", "completion": " 4."})
    assert masked(tok, out) == " 4." + END[name]
    assert unmasked(tok, out) == BOS[name] + "What is 2 + 2? The answer is"
    # the mask is a single block of ones at the end
    mask = out["completion_mask"]
    assert mask == [0] * mask.index(1) + [1] * (len(mask) - mask.index(1))


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_standard_completion_already_ending_with_eos(name):
    tok = TOKENIZERS[name]
    out = tok_ex(tok, {"prompt": "Q", "completion": " A" + tok.eos_token})
    assert masked(tok, out) == " A" + END[name]


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_text_all_tokens_count(name):
    tok = TOKENIZERS[name]
    out = tok_ex(tok, {"text": "Hello world"})
    assert all(out["completion_mask"])
    assert tok.decode(out["input_ids"]) == BOS[name] + "Hello world" + END[name]


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_completion_only_false(name):
    tok = TOKENIZERS[name]
    out = tok_ex(tok, {"prompt": "Q", "completion": " A"}, completion_only=False)
    assert all(out["completion_mask"])


def test_unpaired_rows_tokenize_like_prompt_completion():
    tok = TOKENIZERS["chatml"]
    out = tok_ex(tok, {"prompt": user("Sky?"), "completion": bot("Blue."), "label": False})
    assert masked(tok, out) == "Blue.<|im_end|>"


# --------------------------------------------------------------------------------- conversational rows


@pytest.mark.parametrize("name", CHAT)
def test_conversational_prompt_completion_boundary(name):
    tok = TOKENIZERS[name]
    row = {"prompt": [{"role": "system", "content": "Be brief."}] + user("What is 2 + 2?"), "completion": bot("4")}
    out = tok_ex(tok, row)
    assert masked(tok, out) == "4" + END[name]
    prompt_ids = tokenize_prompt(tok, row["prompt"])
    assert out["input_ids"][: len(prompt_ids)] == prompt_ids
    assert not any(out["completion_mask"][: len(prompt_ids)])
    assert tok.decode(prompt_ids).endswith("assistant\n" if name == "chatml" else "assistant<|end_header_id|>\n\n")


def test_chatml_trailing_newline_after_im_end_does_not_count():
    tok = TOKENIZERS["chatml"]
    out = tok_ex(tok, {"prompt": user("Q"), "completion": bot(" 4 ")})
    assert masked(tok, out) == " 4 <|im_end|>"
    assert tok.decode(out["input_ids"][-1:]) == "\n" and out["completion_mask"][-1] == 0


@pytest.mark.parametrize("name", CHAT)
def test_multi_turn_assistant_masks(name):
    tok = TOKENIZERS[name]
    messages = [{"role": "system", "content": "Be brief."}] + user("Hi") + bot("Hello there") + user("2+2?") + bot("4")
    out = tok_ex(tok, {"messages": messages})
    assert masked(tok, out) == "Hello there" + END[name] + "4" + END[name]
    # exactly two blocks of ones, each ending right after an end-of-turn token
    mask = out["completion_mask"]
    blocks = [i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1])]
    assert len(blocks) == 2
    assert "assistant" not in masked(tok, out)  # headers never count
    everything = tok_ex(tok, {"messages": messages}, completion_only=False)
    assert all(everything["completion_mask"]) and everything["input_ids"] == out["input_ids"]


@pytest.mark.parametrize("name", CHAT)
def test_multi_turn_completion_with_tool_turn(name):
    tok = TOKENIZERS[name]
    completion = bot("call") + [{"role": "tool", "content": "42"}] + bot("It is 42.")
    out = tok_ex(tok, {"prompt": user("Q"), "completion": completion})
    assert masked(tok, out) == "call" + END[name] + "It is 42." + END[name]


def test_messages_without_assistant_turn_is_an_error():
    with pytest.raises(DataError, match=r"d\.jsonl, row 3, column 'messages': no token counts in the loss"):
        tok_ex(TOKENIZERS["chatml"], {"messages": user("only a question")})


def test_conversation_without_chat_template_is_an_error():
    with pytest.raises(DataError, match=r"row 3, column 'prompt': is a conversation but the tokenizer has no chat "
                                        r"template"):
        tok_ex(TOKENIZERS["plain"], {"prompt": user("Q"), "completion": bot("A")})


def test_template_breaking_the_prefix_property_is_an_error():
    tok = chatml_tokenizer()
    # Like Qwen3: earlier assistant turns lose their <think> block once a later turn exists.
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "{{ '<|im_start|>assistant\\n' + m['content'].split('</think>')[-1] + '<|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    messages = user("Q") + bot("<think>hmm</think>A") + user("Q2") + bot("B")
    with pytest.raises(DataError, match=r"row 3, column 'messages': the chat template does not render"):
        tok_ex(tok, {"messages": messages})
    # A generation prompt that differs from how the answer turn is rendered.
    tok.chat_template = CHATML_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>'")
    with pytest.raises(DataError, match="the prompt rendered with the generation prompt"):
        tok_ex(tok, {"prompt": user("Q"), "completion": bot("A")})


def test_render():
    tok = TOKENIZERS["chatml"]
    assert render(tok, "plain text") == "plain text"
    assert render(tok, user("Hi"), add_generation_prompt=True) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_tokenize_prompt_standard_adds_bos_like_the_tokenizer():
    assert TOKENIZERS["llama3"].decode(tokenize_prompt(TOKENIZERS["llama3"], "Q")) == "<|begin_of_text|>Q"
    assert TOKENIZERS["plain"].decode(tokenize_prompt(TOKENIZERS["plain"], "Q")) == "Q"


# ------------------------------------------------------------------------------------------- length


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_truncation_keeps_the_start(name):
    tok = TOKENIZERS[name]
    row = {"prompt": "Q:", "completion": " the quick brown fox jumps over the lazy dog"}
    full = tok_ex(tok, row)
    out = tok_ex(tok, row, max_length=len(full["input_ids"]) - 3, truncation=True)
    assert out["input_ids"] == full["input_ids"][:-3]
    assert out["completion_mask"] == full["completion_mask"][:-3]


def test_too_long_without_truncation_is_an_error():
    tok = TOKENIZERS["chatml"]
    with pytest.raises(DataError, match=r"d\.jsonl, row 3, column 'completion': \d+ tokens is longer than "
                                        r"max_length=5; set truncation=true or raise max_length"):
        tok_ex(tok, {"prompt": "What is 2 + 2?", "completion": " 4"}, max_length=5)


def test_truncation_that_leaves_no_completion_is_an_error():
    tok = TOKENIZERS["chatml"]
    row = {"prompt": "What is 2 + 2? The answer is", "completion": " 4"}
    prompt_len = len(tokenize_prompt(tok, row["prompt"]))
    with pytest.raises(DataError, match="no token counts in the loss"):
        tok_ex(tok, row, max_length=prompt_len, truncation=True)


def test_tokenize_rows_names_the_failing_row():
    tok = TOKENIZERS["chatml"]
    rows = [{"text": "a"}, {"messages": user("no answer")}]
    with pytest.raises(DataError, match=r"^d\.jsonl, row 1, column 'messages'"):
        tokenize_rows(tok, rows, max_length=None, truncation=False, source="d.jsonl")


# --------------------------------------------------------------------------------------- preference


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_preference_standard(name):
    tok = TOKENIZERS[name]
    out = tokenize_preference(tok, {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
                              max_length=None, truncation=False)
    assert tok.decode(out["prompt_ids"]) == BOS[name] + "The sky is"
    assert tok.decode(out["chosen_ids"]) == " blue." + END[name] and all(out["chosen_mask"])
    assert tok.decode(out["rejected_ids"]) == " green." + END[name] and all(out["rejected_mask"])


@pytest.mark.parametrize("name", CHAT)
def test_preference_implicit_conversational(name):
    tok = TOKENIZERS[name]
    row = {"chosen": user("Sky?") + bot("Blue."), "rejected": user("Sky?") + bot("Green.")}
    out = tokenize_preference(tok, row, max_length=None, truncation=False)
    assert out["prompt_ids"] == tokenize_prompt(tok, user("Sky?"))
    assert masked(tok, out, "chosen_ids", "chosen_mask") == "Blue." + END[name]
    assert masked(tok, out, "rejected_ids", "rejected_mask") == "Green." + END[name]


def test_preference_length():
    tok = TOKENIZERS["plain"]
    row = {"prompt": "Q", "chosen": " a long long answer", "rejected": " b"}
    with pytest.raises(DataError, match=r"column 'chosen': \d+ tokens is longer than max_length=4"):
        tokenize_preference(tok, row, max_length=4, truncation=False)
    out = tokenize_preference(tok, row, max_length=4, truncation=True)
    assert len(out["prompt_ids"]) + len(out["chosen_ids"]) == 4
    with pytest.raises(DataError, match="the prompt alone has"):
        tokenize_preference(tok, {"prompt": "What is 2 + 2?", "chosen": " 4", "rejected": " 5"}, max_length=2,
                            truncation=True)


def test_template_closing_the_conversation_with_an_extra_special_token():
    tok = chatml_tokenizer()
    # Like phi-3: the full conversation ends with eos, which a non-final turn never gets.
    tok.chat_template = CHATML_TEMPLATE + "{% if not add_generation_prompt %}{{ '<|endoftext|>' }}{% endif %}"
    messages = user("Hi") + bot("Hello") + user("2+2?") + bot("4")
    out = tok_ex(tok, {"messages": messages})
    assert masked(tok, out) == "Hello<|im_end|>4<|im_end|>\n<|endoftext|>"
