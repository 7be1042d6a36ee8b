"""SFT's data: completion_only_loss=true counts only the completion tokens of a batch."""

from conftest import sft_config, sft_rows, write_jsonl
from posttrain.algorithms.sft import SFT, as_rows, load_examples
from posttrain.models.loading import load_tokenizer


def test_completion_only_loss_option(tiny_qwen2, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows(4))
    tokenizer = load_tokenizer(tiny_qwen2)
    counts = {}
    for completion_only in (True, False):
        config = sft_config(dataset=data, completion_only_loss=completion_only)
        rows = as_rows(load_examples(tokenizer, data, None, config), config)
        batch = SFT(tokenizer.pad_token_id).collate(rows)
        counts[completion_only] = SFT(tokenizer.pad_token_id).batch_weight(batch)
    total = sum(len(r[0]["input_ids"]) - 1 for r in rows)
    assert 0 < counts[True] < counts[False] == total
