"""posttrain.hub's push side: the checks push_to_hub=true makes before any work, and the hub's
failures turned into one-line UserErrors (the probe side is tested through the loaders)."""

from __future__ import annotations

import pytest

from posttrain import hub as hub_module
from posttrain.errors import ConfigError, UserError


@pytest.fixture
def token(monkeypatch, tmp_path):
    """HF_TOKEN set, no cached login (HF_HOME in tmp_path), offline mode off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    for name in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test")


def test_push_with_a_repo_id_and_a_token_passes(token):
    hub_module.check_push_options(True, "me/model", None)
    hub_module.check_push_options(True, "model", True)
    hub_module.check_push_options(False, None, None)


@pytest.mark.parametrize("args, fragments", [
    ((True, None, None), ("push_to_hub=true needs hub_model_id=NAMESPACE/NAME",)),
    ((True, "me/bad name", None), ("hub_model_id 'me/bad name' is not a Hub repo id",)),
    ((False, "me/model", None), ("config key 'hub_model_id' is set ('me/model') but this run never reads it", "push_to_hub=true")),
    ((False, None, False), ("config key 'hub_private_repo' is set (False)",)),
])
def test_bad_push_options(token, args, fragments):
    with pytest.raises(ConfigError) as err:
        hub_module.check_push_options(*args)
    assert all(fragment in str(err.value) for fragment in fragments), err.value


def test_offline_mode_refuses_push(token, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="push_to_hub=true but offline mode is on .*set push_to_hub=false"):
        hub_module.check_push_options(True, "me/model", None)


def test_no_token_names_the_login(token, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ConfigError, match="no Hugging Face token was found; run `huggingface-cli login` or set HF_TOKEN"):
        hub_module.check_push_options(True, "me/model", None)


def test_cli_refuses_push_before_any_work(token, monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants

    from posttrain.cli import main

    monkeypatch.delenv("HF_TOKEN")
    out = tmp_path / "run"
    assert main(["sft", "push_to_hub=true", f"output_dir={out}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "posttrain: error: push_to_hub=true needs hub_model_id=NAMESPACE/NAME (or NAME, under your account): the Hub repo to create or update"]
    assert main(["sft", "push_to_hub=true", "hub_model_id=me/model", f"output_dir={out}"]) == 2
    assert "no Hugging Face token was found" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1, as huggingface_hub read it at import
    assert main(["sft", "push_to_hub=true", "hub_model_id=me/model", f"output_dir={out}"]) == 2
    assert capsys.readouterr().err.startswith("posttrain: error: push_to_hub=true but offline mode is on")
    assert not out.exists()


def test_unreachable_hub_is_one_user_error(token, hub):
    """`hub` (tests/conftest.py): the endpoint is a closed port. (push_folder's upload retries a refused
    connection for ~25 s, as it should after a long run; its errors are tested at a 401 in
    tests/e2e/test_hub_push.py.)"""
    with pytest.raises(UserError, match=r"^could not create the Hub repo me/model: the Hub at http://127.0.0.1:9 cannot be reached "
                                        r"\(ConnectError\); check the network \(or HF_ENDPOINT\)$"):
        hub_module.create_repo("me/model", None)


def test_resume_may_turn_the_push_on(token, tmp_path):
    """Where final/ goes is not what the run computes: a run may be resumed with push_to_hub=true."""
    from posttrain import config_for
    from posttrain.train.rundir import check_run_dir, prepare_run_dir, run_dir

    out = str(tmp_path / "run")
    prepare_run_dir(run_dir(out), config_for("sft", output_dir=out))
    check_run_dir(config_for("sft", output_dir=out, resume=True, push_to_hub=True, hub_model_id="me/m", hub_private_repo=True))
    with pytest.raises(ConfigError, match="resume=true but learning_rate differ"):
        check_run_dir(config_for("sft", output_dir=out, resume=True, learning_rate=1.0))
