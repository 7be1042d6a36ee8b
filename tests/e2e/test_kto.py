"""KTO end to end: learning on a tiny model, precomputed reference = frozen copy, LoRA, two processes
sharing one reference point, `posttrain kto` through the CLI, and bad data."""

import os
import random
import re
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import REPO, kto_config, preference_rows, read_metrics, run_cli, without_timing, write_jsonl
from posttrain.algorithms.kto import load_examples, run_kto
from posttrain.data.converters import pairs_to_unpaired
from posttrain.errors import DataError
from posttrain.models.loading import load_tokenizer
from posttrain.models.logprobs import sequence_logprobs


# ------------------------------------------------------------------------------------- training


def _mean_logratios(run_dir, start_dir, examples) -> tuple[float, float]:
    final, start = AutoModelForCausalLM.from_pretrained(run_dir / "final"), AutoModelForCausalLM.from_pretrained(start_dir)
    ratios = {True: [], False: []}
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e["prompt_ids"] + e["completion_ids"]])
            mask = torch.tensor([[0] * len(e["prompt_ids"]) + e["completion_mask"]])
            ratios[e["label"]].append(float(sequence_logprobs(final, ids, mask).sums - sequence_logprobs(start, ids, mask).sums))
    return sum(ratios[True]) / len(ratios[True]), sum(ratios[False]) / len(ratios[False])


def arithmetic_feedback(n: int, seed: int = 0) -> list[dict]:
    """Unpaired rows: the right sum is desirable, a refusal undesirable (each prompt has both)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        rows.append({"prompt": f"What is {a} + {b}?", "completion": f" {a + b}", "label": True})
        rows.append({"prompt": f"What is {a} + {b}?", "completion": " I do not know.", "label": False})
    return rows


def test_learns_desirable_up_undesirable_down(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "feedback.jsonl", arithmetic_feedback(16))
    out = tmp_path / "run"
    config = kto_config(model=tiny_llama, dataset=data, output_dir=str(out), batch_size=8, max_steps=16, beta=0.5)
    run_kto(config)
    records = read_metrics(out)
    assert len(records) == 16 and records[0]["rewards/desirable"] == 0.0 and records[0]["loss"] == pytest.approx(0.5)  # policy = reference
    examples = load_examples(load_tokenizer(tiny_llama), data, None, config, seed=0)
    desirable, undesirable = _mean_logratios(out, tiny_llama, examples)
    assert desirable > 1.0 and undesirable < -3.0, (desirable, undesirable)  # log πθ/π_ref of the final model
    last = records[-1]
    assert last["rewards/desirable"] > 0 > last["rewards/undesirable"] and last["loss"] < 0.3


def test_precomputed_reference_gives_the_same_run_as_the_copy(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    held_out = write_jsonl(tmp_path / "eval.jsonl", preference_rows(3, seed=1))
    runs = {}
    for ref_model in ("copy", "precompute"):
        out = tmp_path / ref_model
        run_kto(kto_config(model=tiny_llama, dataset=data, eval_dataset=held_out, output_dir=str(out), max_steps=3, ref_model=ref_model))
        runs[ref_model] = without_timing(read_metrics(out))
    assert (tmp_path / "precompute" / "reference_logps.pt").is_file() and (tmp_path / "precompute" / "reference_logps_eval.pt").is_file()
    assert runs["copy"][-1]["kl"] > 0 and "eval_kl" in runs["copy"][-1] and "eval_rewards/desirable" in runs["copy"][-1]
    for a, b in zip(runs["copy"], runs["precompute"]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


def test_lora_reference_is_the_adapter_free_base(tiny_qwen2, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(4, conversational=True))
    out = tmp_path / "run"
    run_kto(kto_config(model=tiny_qwen2, dataset=data, output_dir=str(out), max_steps=2, lora=True, lora_r=4))
    first, second = read_metrics(out)
    assert first["rewards/desirable"] == 0.0 and first["rewards/undesirable"] == 0.0 and first["kl"] == 0.0
    assert second["rewards/desirable"] != 0.0 and (out / "final" / "config.json").is_file()


def test_two_processes_share_one_reference_point(tiny_llama, tmp_path):
    """Under torchrun (2 processes x 2 examples) z0 is the mean over both processes' mismatched pairs,
    so the run equals one process reading batches of 4. Mostly desirable data makes z0 > 0."""
    rows = [r for i, r in enumerate(arithmetic_feedback(12)) if r["label"] or i % 6 == 1]  # 12 desirable, 4 not
    common = dict(model=tiny_llama, dataset=write_jsonl(tmp_path / "d.jsonl", rows), max_steps=4, learning_rate=3e-3,
                  eval_dataset=write_jsonl(tmp_path / "e.jsonl", arithmetic_feedback(2, seed=1)))
    run_kto(kto_config(**common, output_dir=str(tmp_path / "single"), batch_size=4))
    same_as_kto_config = dict(max_length=128, lr_scheduler="constant", logging_steps=1, device="cpu")
    args = [f"{k}={v}" for k, v in {**common, **same_as_kto_config, "batch_size": 2, "output_dir": tmp_path / "multi"}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "posttrain", "kto", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "multi")
    assert len(two) == 4 and max(r["kl"] for r in one) > 0.5
    for a, b in zip(one, two):
        for key in ("loss", "kl", "grad_norm", "rewards/desirable"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert two[-1]["eval_loss"] == pytest.approx(one[-1]["eval_loss"], rel=1e-4)


# -------------------------------------------------------------------------------------------- CLI


def test_cli_kto_on_unpaired_rows_writes_the_run_dir(tiny_llama, tmp_path):
    rows = pairs_to_unpaired(preference_rows(5))  # 5 desirable, 5 undesirable
    data = write_jsonl(tmp_path / "unpaired.jsonl", rows)
    out = tmp_path / "run"
    proc = run_cli("kto", f"model={tiny_llama}", f"dataset={data}", f"eval_dataset={data}", "device=cpu", "max_steps=2",
                   "batch_size=4", "logging_steps=1", "desirable_weight=2.0", f"output_dir={out}")
    assert proc.returncode == 0, proc.stderr
    assert "outside [1, 4/3]" in proc.stderr and "undesirable_weight in [1.5, 2]" in proc.stderr  # 5 vs 5, λ_D = 2
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2] and {"kl", "eval_loss", "rewards/desirable"} <= records[-1].keys()
    assert (out / "config.yaml").is_file() and (out / "final" / "model.safetensors").is_file()
    assert "beta: 0.1" in (out / "config.yaml").read_text()


def test_cli_label_not_bool_is_one_line_exit_2(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": " b", "label": "yes"},
                                                {"prompt": "c", "completion": " d", "label": False}])
    out = tmp_path / "run"
    proc = run_cli("kto", f"model={tiny_llama}", f"dataset={data}", "device=cpu", "max_steps=1", f"output_dir={out}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == (f"posttrain: error: {data}, row 0, column 'label': expected a bool (true = desirable, "
                        "false = undesirable), got 'yes'")
    assert not out.exists()


def test_cli_row_of_another_format_lists_the_files_columns_only(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "chosen": " b", "rejected": " c"},
                                                  {"prompt": "a", "completion": " b", "label": True}])
    proc = run_cli("kto", f"model={tiny_llama}", f"dataset={data}", "device=cpu", "max_steps=1", f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"posttrain: error: {data}, row 1, column 'chosen': missing column 'chosen' (found columns: "
                                   "completion, label, prompt); rows are preference rows ('prompt', 'chosen', 'rejected') like row 0")


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "completion": " b"}] * 2, "column 'label': the rows are prompt-completion rows ('prompt', 'completion') "
                                                "but this method needs unpaired rows ('prompt', 'completion', 'label')"),
    ([{"prompt": "a", "label": True}] * 2, "column 'completion'"),
    ([{"prompt": "a", "completion": " b", "label": True}], "at least 2 examples"),
])
def test_bad_data_raises_a_data_error(tiny_llama, tmp_path, rows, message):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=re.escape(message)):
        run_kto(kto_config(model=tiny_llama, dataset=data, output_dir=str(tmp_path / "run"), max_steps=1))
    assert not (tmp_path / "run").exists()
