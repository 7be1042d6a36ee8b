"""`posttrain eval scorer=[...]`: every reward spec scores held-out samples. The embedded model answers a few sums; its
report's per-scorer means and pass rates equal the built-in functions called directly on the completions it saved,
and a hand count of the right <answer>s; a file.py:function returning None leaves samples out of its mean."""

import json
import re

import pytest

from conftest import write_jsonl
from posttrain.cli import main
from posttrain.rewards.format import think_answer_format
from posttrain.rewards.math import math_accuracy

SUMS = [(3, 4), (12, 5), (20, 31), (7, 8)]
ANSWER_DIGITS = '''
import re

def answer_digits(prompts, completions, **columns):
    """How many digits the <answer> holds; None (does not apply) when there is no <answer>."""
    found = [re.search(r"<answer>(.*?)</answer>", c[-1]["content"], re.S) for c in completions]
    return [None if m is None else float(sum(ch.isdigit() for ch in m.group(1))) for m in found]
'''


def test_reward_specs_as_scorers_match_the_functions_on_the_saved_completions(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "answer": str(a + b)} for a, b in SUMS]
    (tmp_path / "digits.py").write_text(ANSWER_DIGITS)
    out = tmp_path / "report.json"
    rc = main(["eval", "model=embedded", f"dataset={write_jsonl(tmp_path / 'sums.jsonl', rows)}", "device=cpu",
               f"scorer=[math_accuracy, format:strict=true, {tmp_path / 'digits.py'}:answer_digits]", "max_new_tokens=48",
               "show_samples=4", "success_threshold=1.5", f"output_file={out}"])
    assert rc == 0
    report = json.loads(out.read_text())
    texts = [s["completion"] for s in report["samples"]]
    completions = [[{"role": "assistant", "content": t}] for t in texts]  # what the scorers were given: chat rows
    prompts, answers = [r["prompt"] for r in rows], [r["answer"] for r in rows]

    accuracy = math_accuracy()(prompts=prompts, completions=completions, answer=answers)
    by_hand = [float(re.findall(r"<answer>\s*(\S+?)\s*</answer>", t)[-1:] == [a]) for t, a in zip(texts, answers)]
    assert accuracy == by_hand and 0 < sum(by_hand) < len(rows)  # the embedded model gets some sums right, not all
    assert report["math_accuracy"] == report["score"] == pytest.approx(sum(by_hand) / len(rows))
    assert report["math_accuracy_pass_rate"] == report["pass@1"] == 0.0  # no score of 1 reaches success_threshold=1.5

    formats = think_answer_format(strict=True)(prompts=prompts, completions=completions)
    assert report["format"] == pytest.approx(sum(formats) / len(formats))

    digits = [None if "<answer>" not in t else sum(ch.isdigit() for ch in t.split("<answer>")[1].split("</answer>")[0])
              for t in texts]
    scored = [d for d in digits if d is not None]
    assert report["answer_digits"] == pytest.approx(sum(scored) / len(scored))
    assert report["answer_digits_pass_rate"] == pytest.approx(sum(d >= 1.5 for d in scored) / len(scored))
    assert [s["score"] for s in report["samples"]] == accuracy  # a sample's score is the headline scorer's
