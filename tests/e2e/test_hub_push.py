"""push_to_hub=true end to end, against tests/hub_standin.py (a local stand-in of the Hub's API on
127.0.0.1, over real HTTP): a 1-step `posttrain sft` uploads every file of final/ byte for
byte, with its model card; a refused token fails in one line, exit 2, before training (at the repo's
creation) or after it (at the commit) with final/ intact."""

from __future__ import annotations

import pytest
import yaml

from conftest import sft_rows, write_jsonl
from hub_standin import HubStandIn


@pytest.fixture
def sft_args(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(4))
    return [f"model={tiny_llama}", f"dataset={data}", "device=cpu", "max_steps=1", "batch_size=2", "max_length=128",
            "logging_steps=1", f"output_dir={tmp_path / 'run'}", "push_to_hub=true"]


@pytest.fixture
def cli_with(monkeypatch, capsys):
    """`posttrain.cli.main(argv)` in this process, against `standin`: (exit code, stdout, stderr). In
    process, since a second start of torch and transformers would cost the suite seconds per test;
    huggingface_hub read HF_ENDPOINT when it was imported, so its constant is set instead."""
    from huggingface_hub import constants

    from posttrain.cli import main

    def run(standin: HubStandIn, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(constants, "ENDPOINT", standin.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_standin_token")
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_push_uploads_every_file_of_final_and_the_model_card(tmp_path, sft_args, cli_with):
    with HubStandIn() as standin:
        code, out, err = cli_with(standin, "sft", *sft_args, "hub_model_id=tiny-sft", "hub_private_repo=true")
    assert code == 0, err
    final = tmp_path / "run" / "final"
    assert f"posttrain: pushed {final} to {standin.url}/tester/tiny-sft" in out
    repo = standin.repos["tester/tiny-sft"]  # a bare NAME goes under the token's account
    on_disk = {p.relative_to(final).as_posix(): p.read_bytes() for p in final.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(on_disk)
    assert any(name.startswith("figures/") for name in on_disk)  # the report's curves, drawn for the card
    assert repo["files"] == on_disk  # every file, identical bytes
    assert repo["private"] is True and repo["commits"] == ["posttrain sft: run"]
    # (huggingface_hub may also ask once a day for /api/agent-harnesses, to name the caller in its user agent)
    assert {path for name, path, _ in standin.requests if name == "unknown"} <= {"/api/agent-harnesses"}
    assert [name for name, *_ in standin.requests if name != "unknown"] == ["create", "validate-yaml", "preupload", "commit"]
    assert all(headers["authorization"] == "Bearer hf_standin_token" for name, _, headers in standin.requests if name != "unknown")

    card = repo["files"]["README.md"].decode()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "posttrain" and meta["pipeline_tag"] == "text-generation"
    assert meta["tags"][:2] == ["posttrain", "sft"] and "base_model" not in meta  # a local model dir is no hub id
    assert 'AutoModelForCausalLM.from_pretrained("tester/tiny-sft")' in body
    assert "push_to_hub: true" in body and "hub_model_id: tiny-sft" in body and "hf_standin_token" not in card
    loss = [line for line in body.splitlines() if line.startswith("| loss |")]
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1]
    assert len(loss) == 1 and f"{yaml.safe_load(metrics)['loss']:.6g}" in loss[0]
    for path in (name for name in on_disk if name.startswith("figures/")):
        assert f"]({path})" in body


def _one_line_error(code: int, stderr: str, *fragments) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posttrain: error: ") and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_commit_refused_after_training_keeps_final(tmp_path, sft_args, cli_with):
    with HubStandIn(reject=("commit",)) as standin:
        code, _, stderr = cli_with(standin, "sft", *sft_args, "hub_model_id=tester/tiny-sft")
    final = tmp_path / "run" / "final"
    _one_line_error(code, stderr, "could not push", "refused the token (401)", "huggingface-cli login", "HF_TOKEN",
                    f"{final} is intact", f"huggingface-cli upload tester/tiny-sft {final}")
    assert (final / "model.safetensors").is_file() and (final / "README.md").is_file()
    assert standin.repos["tester/tiny-sft"]["files"] == {}


def test_token_refused_before_training_starts(tmp_path, sft_args, cli_with):
    with HubStandIn(reject=("create", "info")) as standin:  # a token the Hub does not know
        code, _, stderr = cli_with(standin, "sft", *sft_args, "hub_model_id=tester/tiny-sft")
    _one_line_error(code, stderr, "could not create the Hub repo tester/tiny-sft", "refused the token (401)", "huggingface-cli login")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    assert [name for name, *_ in standin.requests if name != "unknown"] == ["create", "info"]
