"""Datasets as users name them (issue 18, point 3): data_files with a builder, dataset_config of a local
dataset folder, split slicing, column renames, mixtures with interleave_datasets' semantics, streaming,
and tokenization through Dataset.map (num_proc, cache) giving exactly tokenize_rows' examples."""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace

import datasets
import pytest

from conftest import sft_config, sft_rows, write_jsonl
from posttrain.data.mapping import map_examples
from posttrain.data.tokenize import tokenize_example, tokenize_rows
from posttrain.errors import ConfigError, DataError
from posttrain.models.loading import load_tokenizer
from posttrain.tasks.mixtures import parse_mixture
from posttrain.tasks.sources import load_rows
from posttrain.tasks.streams import StreamingSource, stream_rows



@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub; datasets' caches (builders', and the tokenized examples of map_examples) under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


def opts(dataset, **values):
    base = dict(dataset=dataset, dataset_config=None, data_files=None, dataset_columns=None, seed=0)
    return SimpleNamespace(**(base | values))


def qa_rows(n, start=0):
    return [{"question": f"q{i}", "answer": f"a{i}"} for i in range(start, start + n)]


# ------------------------------------------------------------------------------------------ reading


def test_data_files_glob_list_and_split_dict_with_a_builder(tmp_path):
    write_jsonl(tmp_path / "part-0.jsonl", qa_rows(3))
    write_jsonl(tmp_path / "part-1.jsonl", qa_rows(2, start=3))
    glob = str(tmp_path / "part-*.jsonl")
    assert [r["question"] for r in load_rows("json", options=opts("json", data_files=glob))] == [f"q{i}" for i in range(5)]
    split_dict = {"train": str(tmp_path / "part-0.jsonl"), "test": [str(tmp_path / "part-1.jsonl")]}
    assert len(load_rows("json", "test", options=opts("json", data_files=split_dict))) == 2
    assert len(load_rows("json", "train[:2]", options=opts("json", data_files=split_dict))) == 2  # slicing
    with pytest.raises(DataError, match=r"json: data_files=.*nothing-\*\.jsonl.* matches no file"):
        load_rows("json", options=opts("json", data_files=str(tmp_path / "nothing-*.jsonl")))


def test_dataset_config_selects_a_config_of_a_local_dataset_folder(tmp_path):
    """A dataset repo as the hub holds it (README.md YAML `configs:`), loaded by path, offline."""
    repo = tmp_path / "gsm8k_like"
    (repo / "main").mkdir(parents=True)
    (repo / "socratic").mkdir()
    write_jsonl(repo / "main" / "train.jsonl", qa_rows(4))
    write_jsonl(repo / "socratic" / "train.jsonl", qa_rows(2, start=100))
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n    path: main/train.jsonl\n"
                                    "- config_name: socratic\n  data_files:\n  - split: train\n    path: socratic/train.jsonl\n---\n")
    main = load_rows(str(repo), options=opts(str(repo), dataset_config="main"))
    socratic = load_rows(str(repo), options=opts(str(repo), dataset_config="socratic"))
    assert [r["question"] for r in main] == ["q0", "q1", "q2", "q3"] and [r["question"] for r in socratic] == ["q100", "q101"]
    with pytest.raises(DataError, match="could not read it.*nope"):
        load_rows(str(repo), options=opts(str(repo), dataset_config="nope"))
    with pytest.raises(ConfigError, match="is an embedded task, which has no configurations"):
        load_rows("task:arithmetic", options=opts("task:arithmetic", dataset_config="main"))
    # the options describe `dataset` only: an eval set read with the same options is read plainly
    assert load_rows(str(repo / "main" / "train.jsonl"), options=opts(str(repo), dataset_config="socratic"))[0]["question"] == "q0"


def test_split_slicing_of_a_save_to_disk_dataset(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(qa_rows(10)),
                          "test": datasets.Dataset.from_list(qa_rows(4, 50))}).save_to_disk(tmp_path / "dd")
    assert [r["question"] for r in load_rows(str(tmp_path / "dd"), "train[:3]")] == ["q0", "q1", "q2"]
    assert [r["question"] for r in load_rows(str(tmp_path / "dd"), "train[80%:]")] == ["q8", "q9"]
    assert [r["question"] for r in load_rows(str(tmp_path / "dd"), "test[-1:]")] == ["q53"]
    with pytest.raises(DataError, match="no split 'dev'"):
        load_rows(str(tmp_path / "dd"), "dev[:3]")


def test_column_renames_and_dataset_text_field(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_rows(3))
    rows = load_rows(path, options=opts(path, dataset_columns={"question": "prompt", "answer": "completion"}))
    assert rows[1] == {"prompt": "q1", "completion": "a1"}
    text = write_jsonl(tmp_path / "notes.jsonl", [{"body": "hello"}])
    assert load_rows(text, options=opts(text, dataset_text_field="body")) == [{"text": "hello"}]
    with pytest.raises(DataError, match=r"qa.jsonl: has no column 'query' to rename .*its columns: answer, question"):
        load_rows(path, options=opts(path, dataset_columns={"query": "prompt"}))
    with pytest.raises(DataError, match=r"qa.jsonl: already has a column 'answer'"):
        load_rows(path, options=opts(path, dataset_columns={"question": "answer"}))
    swapped = load_rows(path, options=opts(path, dataset_columns={"question": "answer", "answer": "question"}))
    assert swapped[0] == {"answer": "q0", "question": "a0"}  # renames apply at once, so a swap is fine


# ------------------------------------------------------------------------------------------ mixtures


@pytest.mark.parametrize("spec, problem", [("[a.jsonl:0.7, b.jsonl:0.2]", "sum to 0.9, not 1"),
                                           ("[a.jsonl:1.5, b.jsonl:-0.5]", "must be > 0"),
                                           ("[a.jsonl, b.jsonl:1]", "has no weight"),
                                           ("[a.jsonl:1]", "at least two")])
def test_bad_mixtures_say_what_is_wrong(spec, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_mixture(spec)


def test_a_mixture_draws_as_interleave_datasets_does_with_the_seed(tmp_path):
    a, b = write_jsonl(tmp_path / "a.jsonl", qa_rows(40)), write_jsonl(tmp_path / "b.jsonl", qa_rows(40, start=1000))
    spec = f"[{a}:0.7, {b}:0.3]"
    mixed = load_rows(spec, options=opts(spec, seed=3))
    expected = datasets.interleave_datasets([datasets.Dataset.from_list(qa_rows(40)), datasets.Dataset.from_list(qa_rows(40, 1000))],
                                            probabilities=[0.7, 0.3], seed=3).to_list()
    assert mixed == expected and len({r["question"][:2] for r in mixed}) > 1  # rows of both, HF's order
    assert load_rows(spec, options=opts(spec, seed=4)) != mixed  # the seed decides the draw


def test_a_mixture_given_as_a_yaml_list_or_mapping_is_kept_as_one_string():
    assert sft_config(dataset=["a.jsonl:0.5", "task:arithmetic:0.5"]).dataset == "[a.jsonl:0.5, task:arithmetic:0.5]"
    assert sft_config(dataset={"a.jsonl": 0.25, "b.jsonl": 0.75}).dataset == "[a.jsonl:0.25, b.jsonl:0.75]"
    with pytest.raises(ConfigError, match="config key 'dataset' got 5"):
        sft_config(dataset=5)
    with pytest.raises(ConfigError, match="config key 'dataset_columns'"):
        sft_config(dataset_columns=["question"])
    with pytest.raises(ConfigError, match="config key 'data_files'"):
        sft_config(data_files={"train": 3})


def test_mixture_columns_must_agree_after_renames(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", qa_rows(50))
    spec = f"[task:arithmetic:train:50:0.5, {qa}:0.5]"
    with pytest.raises(DataError, match=r"columns differ after renames: task:arithmetic:train:50 has \['answer', 'completion', 'difficulty', 'prompt'\]"):
        load_rows(spec, options=opts(spec))
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"question": f"q{i}", "reply": "r", "answer": "1", "difficulty": 1} for i in range(30)])
    spec = f"[{pc}:0.5, task:arithmetic:train:30:0.5]"
    renamed = load_rows(spec, options=opts(spec, dataset_columns={"question": "prompt", "reply": "completion"}))
    assert {tuple(sorted(r)) for r in renamed} == {("answer", "completion", "difficulty", "prompt")}
    assert {r["completion"] == "r" for r in renamed} == {True, False}  # rows of both; the task's kept its own columns
    with pytest.raises(DataError, match="no element has the column 'nope'"):
        load_rows(spec, options=opts(spec, dataset_columns={"nope": "prompt"}))


# ------------------------------------------------------------------------------------------ tokenizing


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded")


@pytest.mark.parametrize("conversational", [True, False])
def test_map_gives_exactly_tokenize_rows_examples_and_a_second_call_reads_the_cache(tokenizer, tmp_path, conversational):
    rows = sft_rows(24, seed=5, conversational=conversational)
    fn = functools.partial(tokenize_example, tokenizer, max_length=64, truncation=True, completion_only=True, source="d")
    before = tokenize_rows(tokenizer, rows, max_length=64, truncation=True, source="d")
    after = map_examples(fn, rows, num_proc=2, cache_dir=str(tmp_path))
    for i, (x, y) in enumerate(zip(before, after, strict=True)):
        assert (x["input_ids"], x["completion_mask"]) == (y["input_ids"], y["completion_mask"]), i
    cache = tmp_path / "posttrain_tokenized"
    files = sorted(os.listdir(cache))
    assert map_examples(fn, rows, num_proc=1, cache_dir=str(tmp_path)) == after and sorted(os.listdir(cache)) == files  # served from the cache
    other = functools.partial(tokenize_example, tokenizer, max_length=128, truncation=True, completion_only=True, source="d")
    map_examples(other, rows, cache_dir=str(tmp_path))
    assert len(os.listdir(cache)) > len(files)  # another option, another fingerprint


def test_a_small_set_in_one_process_is_tokenized_in_place_without_a_cache(tokenizer, tmp_path):
    rows = sft_rows(6, conversational=True)
    fn = functools.partial(tokenize_example, tokenizer, max_length=64, truncation=True, completion_only=True, source="d")
    assert map_examples(fn, rows) == [fn(row, row_index=i) for i, row in enumerate(rows)]
    assert not (tmp_path / "hf_datasets" / "posttrain_tokenized").exists()


def test_a_row_error_in_a_worker_still_names_row_and_column(tokenizer, tmp_path):
    rows = sft_rows(6, conversational=False)
    rows[4] = {"prompt": "hi", "completion": "word " * 200}
    fn = functools.partial(tokenize_example, tokenizer, max_length=100, truncation=False, completion_only=True, source="d.jsonl")
    with pytest.raises(DataError, match=r"^d.jsonl, row 4, column 'completion': \d+ tokens is longer than max_length=100"):
        map_examples(fn, rows, num_proc=2, cache_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------ streaming


def test_streaming_needs_max_steps_and_no_packing():
    with pytest.raises(ConfigError, match="streaming=true .* set max_steps"):
        sft_config(streaming=True)
    with pytest.raises(ConfigError, match="packing"):
        sft_config(streaming=True, packing=True, max_steps=2)


def test_a_stream_is_read_lazily_in_a_seeded_order_that_a_resumed_run_replays(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_rows(10))
    config = sft_config(dataset=path, streaming=True, max_steps=5, batch_size=2, dataset_columns={"question": "prompt"})
    seen = []

    def make(row, i):
        seen.append(row["prompt"])
        return row["prompt"]

    source = StreamingSource(stream_rows(path, None, config), make, list, config)
    steps = [source.next_step(s)[0] for s in range(7)]  # 14 rows: a second pass over 10
    assert sorted(sum(steps[:5], [])) == sorted(f"q{i}" for i in range(10)) and len(seen) == 14  # tokenized as read
    resumed = StreamingSource(stream_rows(path, None, config), lambda row, i: row["prompt"], list, config)
    assert resumed.next_step(3)[0] == steps[3] and resumed.next_step(4)[0] == steps[4]
    assert steps[5:] != steps[:2]  # the second pass is reshuffled
    with pytest.raises(DataError, match="has no column 'nope' to rename"):
        stream_rows(path, None, sft_config(dataset=path, streaming=True, max_steps=1, dataset_columns={"nope": "prompt"}))
    swap = sft_config(dataset=path, streaming=True, max_steps=1, dataset_columns={"question": "answer", "answer": "question"})
    assert list(stream_rows(path, None, swap).take(1)) == [{"answer": "q0", "question": "a0"}]
