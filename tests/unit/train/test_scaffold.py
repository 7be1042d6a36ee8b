"""posttrain.train.scaffold and train.rundir's shared pieces: what every stage's run_* does before its
work (check the run directory, load the tokenizer and model its config names, read prompt rows) and
how a non-training stage writes its run directory (config.yaml, a final/ that appears whole)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from conftest import write_jsonl
from posttrain.errors import ConfigError, DataError, UserError
from posttrain.train.rundir import atomic_dir, check_no_final, run_dir, write_config
from posttrain.train.scaffold import load_model_for, load_prompt_rows, load_tokenizer_for, start_run


def model_config(model, tmp_path, **values):
    return SimpleNamespace(model=model, dtype="float32", chat_template=None, trust_remote_code=False, device="cpu",
                           output_dir=str(tmp_path / "run"), resume=False, overwrite_output_dir=False, **values)


def test_start_run_checks_the_directory_before_loading(tiny_llama, tmp_path):
    config = model_config(tiny_llama, tmp_path)
    run, tokenizer = start_run(config)
    assert run.root == tmp_path / "run" and tokenizer.pad_token_id is not None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "final").mkdir()
    with pytest.raises(ConfigError, match="already holds a finished run"):
        start_run(config)


def test_models_load_from_the_config_or_a_named_path(tiny_llama, tmp_path):
    config = model_config("embedded", tmp_path)
    model = load_model_for(config, tiny_llama)
    assert next(model.parameters()).device.type == "cpu" and model.config.hidden_size == 32
    assert load_tokenizer_for(config, tiny_llama).pad_token_id is not None
    assert load_model_for(model_config(tiny_llama, tmp_path), device="cpu").config.hidden_size == 32


def test_prompt_rows_need_a_prompt_column(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "a", "answer": "1"}])
    assert load_prompt_rows(good, None, "x needs") == [{"prompt": "a", "answer": "1"}]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a"}])
    with pytest.raises(ConfigError, match=r"bad.jsonl: pairs need rows with a 'prompt' column \(plus any columns the rewards read\)$"):
        load_prompt_rows(bad, None, "pairs need")
    with pytest.raises(UserError, match=r"constitution needs rows with a 'prompt' column$"):
        load_prompt_rows(bad, None, "constitution needs", hint="")
    later = write_jsonl(tmp_path / "later.jsonl", [{"prompt": "a"}, {"answer": "1"}])
    with pytest.raises(DataError, match=r"later.jsonl, row 1, column 'prompt': missing; x needs a 'prompt' in every row$"):
        load_prompt_rows(later, None, "x needs")
    number = write_jsonl(tmp_path / "number.jsonl", [{"prompt": "a"}, {"prompt": 7}])
    with pytest.raises(DataError, match=r"number.jsonl, row 1, column 'prompt': expected a string or a list of .* got int$"):
        load_prompt_rows(number, None, "x needs")


@dataclass
class Tiny:
    seed: int = 3


def test_run_dir_write_config_and_check_no_final(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; choose a directory"):
        run_dir(tmp_path / "file")
    with pytest.raises(ConfigError, match=r"output_dir .*file/a/b is inside .*file, which is a file; choose a directory that is not inside a file"):
        run_dir(tmp_path / "file" / "a" / "b")
    run = run_dir(tmp_path / "out")
    write_config(run, Tiny())
    assert run.config.read_text() == "seed: 3\n"
    check_no_final(run, overwrite=False, holds="finished pairs")  # no final/ yet
    run.final.mkdir()
    check_no_final(run, overwrite=True, holds="finished pairs")
    with pytest.raises(ConfigError, match="already holds finished pairs; set overwrite_output_dir=true"):
        check_no_final(run, overwrite=False, holds="finished pairs")


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in final.iterdir()] == ["old.txt"]  # untouched
    with atomic_dir(final) as tmp:
        assert list(tmp.iterdir()) == []  # the leftover temp directory was cleared
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"] and not (tmp_path / "final.tmp").exists()


def test_a_continued_adapter_refuses_another_shape(tmp_path, tiny_llama):
    """model=ADAPTER_DIR with lora=true keeps training that adapter: its own r (4 here) may be restated,
    another r or target list is one clear error, never silently ignored."""
    from conftest import sft_config
    from posttrain.models import apply_lora, load_causal_lm, load_tokenizer, save_model

    model = apply_lora(load_causal_lm(tiny_llama), r=4, alpha=8, dropout=0.0, target_modules=["all-linear"])
    save_model(model, load_tokenizer(tiny_llama), tmp_path / "adapter", merge_lora=False)
    adapter = str(tmp_path / "adapter")
    assert load_model_for(sft_config(model=adapter, lora=True, lora_r=4, lora_alpha=8)).continues_adapter
    with pytest.raises(ConfigError, match=rf"^lora_r=8 but model={adapter} is an adapter with r=4, which this LoRA run keeps training; remove it"):
        load_model_for(sft_config(model=adapter, lora=True, lora_r=8))
    with pytest.raises(ConfigError, match="^lora_target_modules is set but model=.* is an adapter whose own target modules"):
        load_model_for(sft_config(model=adapter, lora=True, lora_target_modules=["q_proj"]))
