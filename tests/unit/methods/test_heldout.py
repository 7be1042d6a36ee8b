"""Held-out evaluation (`methods.heldout.evaluate`): greedy scores match an independent model.generate + scorer."""

import sys

import pytest

from posttrain.methods.heldout import evaluate


def test_greedy_scores_match_independent_generate(tiny_run):
    tmp_path, model, tok, rows = tiny_run
    sys.path.insert(0, str(tmp_path))
    try:
        from scorer import even_length
    finally:
        sys.path.pop(0)
    report = evaluate(model, tok, rows, {"score": even_length}, max_new_tokens=12, batch_size=4)
    expected = []
    for r in rows:
        ids = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        out = model.generate(ids, do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        expected.append(float(len(text) % 2 == 0))
    assert report["score"] == pytest.approx(sum(expected) / len(expected))
    assert report["pass@1"] == pytest.approx(report["score"]) and report["num_prompts"] == 6
