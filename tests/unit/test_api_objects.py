"""Objects given to the Python API: what each option takes, one-line ConfigErrors naming the option,
the type received and the types accepted (never a str() of the object), data objects read through the
readers, and an object spec in a fresh process (torchrun, a resume from the CLI) as one clear error."""

from __future__ import annotations

import datasets
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback

import posttrain
from conftest import sft_rows
from posttrain.callables import register_object
from posttrain.data.readers import read_records
from posttrain.errors import ConfigError, DataError, UserError


@pytest.mark.parametrize("key, value, expected", [
    ("dataset", 3, "dataset got int 3; expected a file/directory/hub name/task:NAME string, a datasets.Dataset"),
    ("eval_dataset", object(), "eval_dataset got object <object object"),
    ("dataset", [1, 2], "dataset got list [1, 2]; expected"),
    ("model", object(), "model got an object of type object, which no option takes"),
    ("model", datasets.Dataset.from_list([{"text": "a"}]), "model got a data set (Dataset); data objects go to dataset"),
    ("dataset", datasets.Dataset.from_list([{"text": "a"}]).to_iterable_dataset(), "dataset: an IterableDataset may never end"),
    ("reward_funcs", ["format", object()], "reward_funcs got an object of type object"),
])
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_option(key, value, expected):
    with pytest.raises(ConfigError) as err:
        posttrain.config_for("grpo" if key == "reward_funcs" else "sft", **{key: value})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_tokenizer_and_callbacks_are_checked(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    with pytest.raises(ConfigError, match="tokenizer= goes with a model object"):
        posttrain.config_for("sft", model=tiny_llama, tokenizer=tokenizer)
    with pytest.raises(ConfigError, match="dataset got a tokenizer object; pass it as tokenizer="):
        posttrain.config_for("sft", dataset=tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with pytest.raises(ConfigError, match="tokenizer got str; expected a transformers tokenizer"):
        posttrain.config_for("sft", model=model, processing_class="tok")
    with pytest.raises(ConfigError, match="the same model object is given to two options"):
        posttrain.config_for("dpo", model=model, ref_model_path=model)
    with pytest.raises(ConfigError, match="callbacks got str; expected a list of transformers TrainerCallback"):
        posttrain.sft(model=tiny_llama, callbacks="early_stopping")
    with pytest.raises(ConfigError, match="callbacks: the eval stage trains no model, so no callback would be called"):
        posttrain.evaluate(model=tiny_llama, callbacks=[EarlyStoppingCallback()])


def test_object_specs_are_stable_and_the_readers_resolve_them():
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "a"}]),
                                   "test": datasets.Dataset.from_list([{"text": "b"}, {"text": "c"}])})
    spec = posttrain.config_for("sft", dataset=splits).dataset
    assert spec.startswith("python:dataset/DatasetDict-") and posttrain.config_for("sft", dataset=splits).dataset == spec
    assert read_records(spec, "test") == [{"text": "b"}, {"text": "c"}] and read_records(spec) == [{"text": "a"}]
    with pytest.raises(DataError, match="no split 'dev'; available splits: train, test"):
        read_records(spec, "dev")
    assert read_records(register_object("dataset", [{"text": "x"}])) == [{"text": "x"}]


def test_a_fresh_process_gets_one_clear_error_and_nothing_is_written(tmp_path):
    with pytest.raises(UserError, match="model=python:model/LlamaForCausalLM-999 names a Python object given to "
                                        "posttrain's API in another process"):
        posttrain.sft(model="python:model/LlamaForCausalLM-999", dataset=sft_rows(4), output_dir=str(tmp_path / "run"), device="cpu")
    assert not (tmp_path / "run").exists()  # the data copy is removed with the run that failed


def test_rows_the_stage_cannot_read_leave_no_data_copy(tiny_llama, tmp_path):
    with pytest.raises(DataError):
        posttrain.sft(model=tiny_llama, dataset=[{"question": "no prompt or text"}], output_dir=str(tmp_path / "run"), device="cpu")
    assert not (tmp_path / "run").exists()


def test_a_callback_that_raises_is_one_line_naming_it(tiny_llama, tmp_path):
    with pytest.raises(UserError, match="callback EarlyStoppingCallback.on_train_begin raised AssertionError: "
                                        "EarlyStoppingCallback requires IntervalStrategy .*eval_steps > 0"):
        posttrain.sft(model=tiny_llama, dataset=sft_rows(4), eval_steps=0, callbacks=[EarlyStoppingCallback],
                      output_dir=str(tmp_path / "run"), max_steps=1, device="cpu")


def test_a_reward_model_object_must_have_a_score_head(tiny_llama, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with pytest.raises(UserError, match="model: a reward model object is a \\*ForSequenceClassification model with "
                                        "num_labels=1, got LlamaForCausalLM"):
        posttrain.rm(model=model, dataset=[{"prompt": "p", "chosen": "a", "rejected": "b"}], batch_size=1, output_dir=str(tmp_path / "rm"),
                     device="cpu")
    assert not (tmp_path / "rm").exists()


def test_pipeline_options_take_objects_as_stage_functions_do(tmp_path):
    from posttrain.api import _override_text

    rows = [{"prompt": "p", "completion": "c"}]
    assert _override_text("sft.dataset", rows).startswith('"python:dataset/list-')
    assert _override_text("output_dir", tmp_path) == f'"{tmp_path}"'
    with pytest.raises(ConfigError, match="max_steps got an object of type object"):
        _override_text("sft.max_steps", object())  # never its str()
