"""Tiny random-init reward-model directories for the reward tests (cascade, step reward)."""

import torch
from transformers import AutoModelForSequenceClassification

from conftest import ARCHS
from tiny_tokenizers import save_tokenizer


def make_reward_model_dir(path, arch: str = "llama", seed: int = 0, head_std: float = 1.0) -> str:
    """A tiny random-init reward model (one output) saved at `path`; a wider head spreads its scores out."""

    make_config, make_tokenizer = ARCHS[arch]
    tokenizer = make_tokenizer()
    config = make_config(len(tokenizer))
    config.num_labels, config.pad_token_id = 1, tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        model.score.weight.normal_(0, head_std)
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return str(path)
