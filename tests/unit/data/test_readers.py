import json

import pytest

from posttrain.data import read_records
from posttrain.errors import DataError

ROWS = [
    {"prompt": "What is 2 + 2?", "completion": " 4"},
    {"prompt": "What is 3 + 5?", "completion": " 8"},
]
CONV = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {"messages": [{"role": "user", "content": "Yo, \"quoted\", comma"}, {"role": "assistant", "content": "Hey"}]},
]


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return str(path)


def jsonl(rows):
    return "\n".join(json.dumps(r) for r in rows) + "\n"


# ------------------------------------------------------------------------------------ good inputs


def test_jsonl(tmp_path):
    assert read_records(write(tmp_path / "d.jsonl", jsonl(ROWS))) == ROWS


def test_jsonl_skips_blank_lines_and_bom(tmp_path):
    path = write(tmp_path / "d.jsonl", b"\xef\xbb\xbf" + jsonl(ROWS[:1]).encode() + b"\n\n" + jsonl(ROWS[1:]).encode())
    assert read_records(path) == ROWS


def test_json_list_and_data_key_and_split_key(tmp_path):
    assert read_records(write(tmp_path / "a.json", json.dumps(ROWS))) == ROWS
    assert read_records(write(tmp_path / "b.json", json.dumps({"data": ROWS}))) == ROWS
    path = write(tmp_path / "c.json", json.dumps({"train": ROWS, "test": ROWS[:1]}))
    assert read_records(path) == ROWS
    assert read_records(path, split="test") == ROWS[:1]


def test_json_file_holding_json_lines(tmp_path):
    assert read_records(write(tmp_path / "d.json", jsonl(ROWS))) == ROWS


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.Table.from_pylist(CONV), path)
    assert read_records(path) == CONV


def test_csv_parses_json_lists_and_scalars(tmp_path):
    import csv

    path = tmp_path / "d.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "chosen", "rejected", "label", "margin", "answer", "note"])
        w.writerow(["Q", json.dumps(CONV[0]["messages"]), "[not json", "true", "0.5", "4", "[1, 2]"])
        w.writerow(["Q2", "plain", "other", "0.25", "2", "[x]", ""])
    rows = read_records(str(path))
    assert rows[0]["chosen"] == CONV[0]["messages"]
    assert rows[0]["rejected"] == "[not json"  # not JSON: left as a string
    assert rows[0]["label"] is True and rows[0]["margin"] == 0.5
    assert rows[0]["answer"] == "4" and rows[0]["note"] == "[1, 2]"  # unknown columns stay text
    assert rows[1]["label"] == 0.25 and rows[1]["margin"] == 2 and rows[1]["chosen"] == "plain"


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    assert read_records(str(tmp_path / "one")) == ROWS
    dd = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(str(tmp_path / "two"))
    assert read_records(str(tmp_path / "two")) == ROWS
    assert read_records(str(tmp_path / "two"), split="test") == ROWS[:1]
    with pytest.raises(DataError, match=r"no split 'validation'; available splits: train, test"):
        read_records(str(tmp_path / "two"), split="validation")


# ------------------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        read_records(path)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(DataError, match="unsupported file type"):
        read_records(write(tmp_path / "d.txt", "hello"))


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv"])
def test_empty_file(tmp_path, name):
    with pytest.raises(DataError, match=rf"{name}: the file is empty"):
        read_records(write(tmp_path / name, "\n \n"))


@pytest.mark.parametrize("name,text", [("d.json", "[]"), ("d.csv", "prompt,completion\n")])
def test_no_rows(tmp_path, name, text):
    with pytest.raises(DataError, match="no rows"):
        read_records(write(tmp_path / name, text))


def test_malformed_json_line_names_row_and_line(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl(ROWS) + '{"prompt": "x", \n')
    with pytest.raises(DataError, match=r"d\.jsonl, row 2: malformed JSON at line 3"):
        read_records(path)


def test_row_not_an_object(tmp_path):
    with pytest.raises(DataError, match=r"row 1: line 2: expected a JSON object per line, got a list"):
        read_records(write(tmp_path / "d.jsonl", jsonl(ROWS[:1]) + "[1, 2]\n"))
    with pytest.raises(DataError, match=r"row 1: expected a JSON object, got a string"):
        read_records(write(tmp_path / "d.json", json.dumps([ROWS[0], "oops"])))


def test_invalid_utf8_jsonl(tmp_path):
    bad = jsonl(ROWS).encode() + b'{"prompt": "caf\xe9", "completion": "x"}\n'
    with pytest.raises(DataError, match=r"row 2: invalid UTF-8 at line 3"):
        read_records(write(tmp_path / "d.jsonl", bad))


def test_invalid_utf8_csv(tmp_path):
    bad = b"prompt,completion\nok,fine\ncaf\xe9,x\n"
    with pytest.raises(DataError, match=r"d\.csv, row 1: invalid UTF-8 at line 3"):
        read_records(write(tmp_path / "d.csv", bad))


def test_invalid_utf8_json(tmp_path):
    with pytest.raises(DataError, match=r"invalid UTF-8 at line 2"):
        read_records(write(tmp_path / "d.json", b'[\n{"prompt": "caf\xe9"}]'))


def test_malformed_json_file(tmp_path):
    with pytest.raises(DataError, match=r"malformed JSON at line 1"):
        read_records(write(tmp_path / "d.json", "[{\"prompt\": }]"))


def test_json_single_object_and_missing_split(tmp_path):
    with pytest.raises(DataError, match="got a single object"):
        read_records(write(tmp_path / "a.json", json.dumps(ROWS[0])))
    with pytest.raises(DataError, match=r"no split 'train'; available: test"):
        read_records(write(tmp_path / "b.json", json.dumps({"test": ROWS})))


@pytest.mark.parametrize("name, text", [("d.jsonl", jsonl(ROWS)), ("d.csv", "a,b\n1,2\n"), ("a.json", json.dumps(ROWS)),
                                        ("l.json", jsonl(ROWS))])
def test_a_split_of_a_file_with_one_list_of_rows_is_refused(tmp_path, name, text):
    with pytest.raises(DataError, match=rf"{name}: holds one list of rows, so there is no split 'test' to pick; remove dataset_split"):
        read_records(write(tmp_path / name, text), split="test")


def test_csv_wrong_cell_count(tmp_path):
    with pytest.raises(DataError, match=r"row 1: line 3: 3 cells but the header has 2 columns"):
        read_records(write(tmp_path / "d.csv", "prompt,completion\na,b\nc,d,e\n"))


def test_corrupt_parquet(tmp_path):
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_records(write(tmp_path / "d.parquet", b"not parquet at all"))


def test_unreadable_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    path = write(tmp_path / "d.jsonl", jsonl(ROWS))
    os.chmod(path, 0)
    with pytest.raises(DataError, match="cannot read the file"):
        read_records(path)


def test_plain_directory_without_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a save_to_disk directory"):
        read_records(str(tmp_path / "empty"))


def test_unknown_hub_name_is_a_data_error(monkeypatch):
    import datasets

    from posttrain import hub

    def fail(*args, **kwargs):
        raise FileNotFoundError("Dataset 'nobody/nothing' doesn't exist on the Hub")

    monkeypatch.setattr(hub, "reachable", lambda: True)  # a hub that answers: no such data set there
    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match=r"nobody/nothing: no such file or dataset"):
        read_records("nobody/nothing")


def test_a_hub_dataset_name_with_the_hub_out_of_reach_fails_at_once(hub):
    import time

    from posttrain.hub import PROBE_SECONDS

    start = time.monotonic()
    with pytest.raises(DataError, match=r"the Hugging Face hub \(http://127.0.0.1:9\) could not be reached .*offline\? "
                                        r"set HF_HUB_OFFLINE=1"):
        read_records("nobody/no-such-dataset")
    assert time.monotonic() - start < 2 * PROBE_SECONDS  # not datasets' retries (~30 s)
