"""`posttrain sft` on bad input: one line on stderr, exit code 2, no traceback, nothing written; a hub id
that cannot be had fails within seconds."""

import time

import pytest

from conftest import run_cli, sft_rows, write_jsonl


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("posttrain: error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def good_args(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    return [f"model={tiny_llama}", f"dataset={data}", "device=cpu", "max_steps=1", "batch_size=2"]


def test_unknown_key_lists_valid_keys(tmp_path, good_args):
    out = tmp_path / "run"
    proc = run_cli("sft", *good_args, f"output_dir={out}", "pakcing=true")
    _assert_one_line_error(proc, "unknown config key 'pakcing'", "did you mean 'packing'", "valid keys:", "completion_only_loss")
    assert not out.exists()


def test_wrong_type(tmp_path, good_args):
    out = tmp_path / "run"
    proc = run_cli("sft", *good_args, f"output_dir={out}", "batch_size=eight")
    _assert_one_line_error(proc, "batch_size", "expected an integer")
    assert not out.exists()


def test_missing_dataset_file(tmp_path, good_args):
    out = tmp_path / "run"
    proc = run_cli("sft", *good_args, f"output_dir={out}", f"dataset={tmp_path / 'nope.jsonl'}")
    _assert_one_line_error(proc, "nope.jsonl")
    assert not out.exists()


def test_misspelled_column_and_existing_run_dir_untouched(tmp_path, good_args):
    rows = [{"promt": r["prompt"], "completion": r["completion"]} for r in sft_rows(4)]
    data = write_jsonl(tmp_path / "typo.jsonl", rows)
    out = tmp_path / "run"
    out.mkdir()  # an empty directory the user made is fine, and stays empty
    proc = run_cli("sft", *good_args, f"output_dir={out}", f"dataset={data}")
    _assert_one_line_error(proc, "typo.jsonl", "promt")
    assert list(out.iterdir()) == []


def test_help_lists_options_with_defaults():
    proc = run_cli("sft", "--help")
    assert proc.returncode == 0
    for text in ("completion_only_loss (bool, default: True)", "packing (bool, default: False)",
                 "learning_rate (float, default: 2e-05)", "gradient_accumulation_steps", "resume"):
        assert text in proc.stdout


# A hub id that is neither a local directory nor in the (empty) cache. 127.0.0.1:9 refuses connections, so
# "the hub cannot be reached" holds on any machine; huggingface_hub alone retried that for ~50 s.
UNCACHED = "nobody/does-not-exist"
UNREACHABLE = "http://127.0.0.1:9"


@pytest.mark.parametrize("env, fragments, seconds", [
    ({"HF_HUB_OFFLINE": "1"}, ["model 'nobody/does-not-exist' is neither a local directory nor in the Hugging Face cache",
                               "HF_HUB_OFFLINE=1 allows no download"], 20),
    ({"HF_ENDPOINT": UNREACHABLE, "HF_HUB_OFFLINE": "0"}, ["model 'nobody/does-not-exist' was not found locally", "could not be reached",
                                    "offline? set HF_HUB_OFFLINE=1", "give a local directory"], 30),
    ({"HF_HUB_OFFLINE": "0"}, ["nobody/does-not-exist"], 30),  # the real hub: unreachable here, a missing repo where it answers
], ids=["offline", "unreachable", "default-endpoint"])
def test_an_unknown_hub_id_fails_at_once(tmp_path, good_args, env, fragments, seconds):
    """HF_HUB_OFFLINE is always given: another test file may have set it in this worker's environment."""
    out = tmp_path / "run"
    start = time.monotonic()
    proc = run_cli("sft", *good_args, f"model={UNCACHED}", f"output_dir={out}",
                   env={"HF_HUB_CACHE": str(tmp_path / "hub-cache"), **env})
    elapsed = time.monotonic() - start
    _assert_one_line_error(proc, *fragments)
    assert elapsed < seconds, f"{elapsed:.0f} s"
    assert not out.exists()
