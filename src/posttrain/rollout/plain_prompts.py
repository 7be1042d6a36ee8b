"""One warning when plain-string prompts leave a chat model with nothing to say.

A prompt given as a string is TRL's "standard" format: it is tokenized as it is, without the chat
template, on purpose (the embedded sentiment task's prompts are text for the model to continue). A
model trained on chat messages often answers such a prompt by ending its turn at once: every
completion is empty, every score is 0, and nothing says why. So the sampling stages pass each
batch here; when at least half of its completions are empty while its prompts are strings and the
tokenizer has a chat template, one line goes to stderr, once per process, naming the fix.
"""

from __future__ import annotations

import sys

import posttrain.ranks as ranks

EMPTY_SHARE = 0.5  # the share of empty completions that makes a batch suspect
EXAMPLE_FILE = "examples/prompts.jsonl"
_warned = False


def plain_prompt_warning(tokenizer, prompts: list, texts: list[str]) -> str | None:
    """The warning line for a batch (`prompts` as given, `texts` the decoded completions), or None
    when it does not look like plain-string prompts to a chat model."""
    if not texts or not prompts or not getattr(tokenizer, "chat_template", None):
        return None
    if not all(isinstance(prompt, str) for prompt in prompts):
        return None
    empty = sum(not text.strip() for text in texts)
    if empty < EMPTY_SHARE * len(texts):
        return None
    return (f"posttrain: warning: {empty} of {len(texts)} completions are empty: the prompts are plain strings, "
            "which are tokenized without the chat template, and this chat model ends its turn at once; give each "
            'prompt as a message list, {"prompt": [{"role": "user", "content": "..."}]}, as in ' + EXAMPLE_FILE)


def warn_if_plain_prompts_unanswered(tokenizer, prompts: list, texts: list[str]) -> None:
    """Print `plain_prompt_warning` to stderr (main process) the first time a batch earns it."""
    global _warned
    if _warned:
        return
    line = plain_prompt_warning(tokenizer, prompts, texts)
    if line is None:
        return
    _warned = True
    if ranks.is_main():
        print(line, file=sys.stderr, flush=True)
