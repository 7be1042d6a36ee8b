"""Build the embedded tokenizer: byte-level BPE trained on the synthetic corpus, every digit its own
token ("12" is "1", "2"; a space before a number is a token of its own, so each digit has
exactly one token, which makes copying digits easy).

Special tokens: <|bos|> (bos), <|end|> (eos: ends every turn, so generation stops after the assistant
turn), <|pad|> (pad, distinct from eos), and the role markers <|system|>, <|user|>, <|assistant|>.
<think>, </think>, <answer>, </answer> are ordinary added tokens: one token each, kept by decode.

The chat template renders

    <|bos|><|user|>\n{content}<|end|>\n<|assistant|>\n{content}<|end|>

and `add_generation_prompt` appends `\n<|assistant|>\n`, so a prompt rendered with the generation
prompt is a prefix of the prompt plus its completion. The template adds bos itself; the tokenizer's
post-processor adds nothing (no double bos when rendered text is tokenized again).
"""

from __future__ import annotations

from typing import Iterable

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    # tools= (JSON schemas): one compact line naming each tool and its arguments (the model has 512 positions)
    "{% if tools %}{{ '<|system|>\\nTools:' }}{% for tool in tools %}"
    "{% set f = tool['function'] if tool['function'] is defined else tool %}"
    "{% set p = f['parameters']['properties'] if f['parameters'] is defined and f['parameters']['properties'] is defined else {} %}"
    "{{ ' ' + f['name'] + '(' + (p | list | join(', ')) + ')' }}"
    "{% endfor %}{{ eos_token + '\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\\n' }}{% endif %}"
    # structured tool calls: after the content, in the hermes form agents/tool_calls.py parses
    "{% if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{{ '<|' + message['role'] + '|>\\n' }}{% if message['content'] %}{{ message['content'] + '\\n' }}{% endif %}"
    "{% for call in message['tool_calls'] %}"
    "{% set c = call['function'] if call['function'] is defined else call %}"
    "{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ '<tool_call>\\n{\"name\": ' + (c['name'] | tojson) + ', \"arguments\": ' }}"
    "{{ c['arguments'] if c['arguments'] is string else (c['arguments'] | tojson) }}{{ '}\\n</tool_call>' }}"
    "{% endfor %}{{ eos_token }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n<|assistant|>\\n' }}{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Train byte-level BPE on `texts` and wrap it as a transformers PreTrainedTokenizerFast."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(ROLE_TOKENS),
        padding_side="right",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
