"""Tiny offline tokenizers for tests: no hub downloads, built in-process in a few milliseconds.

All three are byte-level BPE tokenizers (GPT-2 style pre-tokenization and decoding, so every string
round-trips exactly through encode/decode) with a few merges learned from a fixed corpus, plus special
tokens. They differ in their chat template and special tokens:

- `chatml_tokenizer()`  Qwen2-like: `<|im_start|>role\\ncontent<|im_end|>\\n`, eos `<|im_end|>`,
  pad `<|endoftext|>`, no bos.
- `llama3_tokenizer()`  Llama-3-Instruct-like: bos `<|begin_of_text|>` (added by the post-processor and by
  the template), `<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>`, eos `<|eot_id|>`;
  the template trims message content, like the real one.
- `plain_tokenizer()`   GPT-2-like: no chat template, `<|endoftext|>` is bos = eos = unk, nothing added.

Each call builds a fresh tokenizer (callers may mutate it). `save_tokenizer(tok, path)` writes one to a
directory that `AutoTokenizer.from_pretrained(path)` loads.
"""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 2 + 2? The answer is 4. What is 3 + 5? The answer is 8.",
    "Hello! How are you today? I am fine, thank you. Hello world.",
    "The sky is blue. The sun is in the sky. The sea is green.",
    "This movie was great, I loved it. This movie was terrible, I hated it.",
    "<think>reasoning</think><answer>42</answer> user assistant system",
]


@functools.lru_cache(maxsize=None)
def _trained_json(special_tokens: tuple[str, ...], vocab_size: int) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok.to_str()


def _build(special_tokens: tuple[str, ...], vocab_size: int) -> Tokenizer:
    tok = Tokenizer.from_str(_trained_json(special_tokens, vocab_size))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def chatml_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A Qwen2-like tokenizer with a ChatML template; eos `<|im_end|>`, pad `<|endoftext|>`, no bos."""
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_build(specials, vocab_size),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def llama3_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A Llama-3-Instruct-like tokenizer: bos added to plain text, header tokens, eos `<|eot_id|>`."""
    specials = (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    )
    backend = _build(specials, vocab_size)
    bos_id = backend.token_to_id("<|begin_of_text|>")
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos_id)],
            ),
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
    )
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def plain_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A GPT-2-like tokenizer: no chat template; `<|endoftext|>` is bos, eos and unk; adds nothing."""
    specials = ("<|endoftext|>",)
    return PreTrainedTokenizerFast(
        tokenizer_object=_build(specials, vocab_size),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def all_tokenizers() -> dict[str, PreTrainedTokenizerFast]:
    """The three tiny tokenizers by name, for parametrized tests."""
    return {"chatml": chatml_tokenizer(), "llama3": llama3_tokenizer(), "plain": plain_tokenizer()}


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path) -> str:
    """Write `tokenizer` to the directory `path` (AutoTokenizer-loadable) and return the path as a string."""
    tokenizer.save_pretrained(str(path))
    return str(path)
