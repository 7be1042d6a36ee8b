"""`posttrain eval`: the CLI writes a report with pass@k; bad input is one line and exit 2; plain-string
prompts that the embedded chat model leaves unanswered get one warning per run."""

import json
import subprocess
import sys

import pytest

from conftest import arithmetic_prompts_file, run_cli, warning_lines
from posttrain.cli import main


def test_cli_eval_writes_report_with_pass_at_k(tiny_run):
    tmp_path = tiny_run[0]
    out = tmp_path / "report.json"
    rc = main(["eval", f"model={tmp_path / 'model'}", f"dataset={tmp_path / 'prompts.jsonl'}",
               f"scorer={tmp_path / 'scorer.py'}:even_length", "num_samples=4", "temperature=1.0",
               "max_new_tokens=8", f"output_file={out}"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["pass@1"] <= report["pass@2"] <= report["pass@4"]
    assert report["avg@4"] == pytest.approx(report["score"])
    assert 0 < report["mean_length"] <= 8 and len(report["samples"]) == 3


@pytest.mark.parametrize("override,message", [
    ("scorer=nope.py:f", "scorer file not found"),
    ("num_samples=4", "temperature"),
    ("bogus=1", "unknown config key 'bogus'"),
    ("scorer=[format, nosuch]", "scorer: unknown reward 'nosuch' in scorer; give a built-in (cascade, code_tests, format, judge, "),
    ("harness=lm_eval", "harness=lm_eval needs tasks=[NAME, ...]"),
])
def test_cli_eval_bad_input_is_one_line_exit_2(tiny_run, override, message):
    tmp_path = tiny_run[0]
    args = ["eval", f"model={tmp_path / 'model'}", f"dataset={tmp_path / 'prompts.jsonl'}",
            *([] if override.startswith(("scorer=", "harness=")) else [f"scorer={tmp_path / 'scorer.py'}:even_length"]), override]
    proc = subprocess.run([sys.executable, "-m", "posttrain", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("as_messages", [False, True])
def test_plain_string_prompts_to_a_chat_model_warn_once(tmp_path, as_messages):
    prompts = arithmetic_prompts_file(tmp_path / "prompts.jsonl", as_messages)
    proc = run_cli("eval", "model=embedded", f"dataset={prompts}", "scorer=task:arithmetic", "batch_size=2",
                   "max_new_tokens=64", f"output_file={tmp_path / 'eval.json'}")
    assert proc.returncode == 0, proc.stderr
    warnings = warning_lines(proc.stderr)
    if as_messages:
        assert warnings == [] and json.loads((tmp_path / "eval.json").read_text())["mean_length"] > 20
    else:  # two batches of 2 empty completions, one line
        assert len(warnings) == 1 and "examples/prompts.jsonl" in warnings[0], proc.stderr
        assert warnings[0].startswith("posttrain: warning: 2 of 2 completions are empty: the prompts are plain strings")
        assert json.loads((tmp_path / "eval.json").read_text())["score"] == 0.0
