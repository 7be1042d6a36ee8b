"""Read rows from JSONL / JSON / Parquet / CSV files, `save_to_disk` directories and hub datasets.

`read_records(source, split)` returns a list of plain dicts, one per row. Every problem a user can fix
raises a `DataError` whose message names the source (the path as given), the row and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import os

from posttrain.callables import is_object_spec, python_object
from posttrain.errors import DataError, data_error

# Columns whose CSV cells may hold JSON lists (conversations, completions, rankings).
LIST_COLUMNS = ("messages", "prompt", "chosen", "rejected", "completion", "completions", "ranking")
# Columns whose CSV cells hold numbers or booleans.
SCALAR_COLUMNS = ("label", "margin", "b")

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def read_records(source: str, split: str | None = None, config: str | None = None, data_files=None) -> list[dict]:
    """Rows of `source` as dicts: a .jsonl/.json/.parquet/.csv file, a `save_to_disk` directory or a hub name.

    `split` picks a split of a DatasetDict directory, a JSON file shaped {split: [...]} or a hub dataset
    (default "train"), sliced as datasets slices ("train[:1000]", "test[10%:]"); `config` a configuration
    of a hub dataset (openai/gsm8k's "main") or a local dataset folder; `data_files` (a path, a glob, a
    list or {split: files}) the files a builder (json, csv, parquet, text) or a dataset folder reads.
    """
    source = str(source)
    if is_object_spec(source):  # a data set or list of rows given to the Python API
        return _rows_of_object(source, python_object(source, "dataset"), split)
    if data_files is not None:
        return _rows_of(source, _load_dataset(source, split, config, data_files))
    if os.path.isdir(source):
        return _read_directory(source, split, config)
    lower = source.lower()
    if os.path.isfile(source):
        if lower.endswith(".json"):
            return _read_json(source, split)
        if split is not None and lower.endswith((".jsonl", ".parquet", ".csv")):
            raise _no_splits(source, split)
        if lower.endswith(".jsonl"):
            return _read_jsonl(source)
        if lower.endswith(".parquet"):
            return _read_parquet(source)
        if lower.endswith(".csv"):
            return _read_csv(source)
        raise data_error(
            source, None, None,
            f"unsupported file type; expected one of {', '.join(FILE_SUFFIXES)} or a save_to_disk directory",
        )
    parent = os.path.dirname(source)
    if lower.endswith(FILE_SUFFIXES) or source.startswith((".", "/", "~")) or (parent and os.path.isdir(parent)):
        raise data_error(source, None, None, "no such file; check the path")
    return _read_hub(source, split, config)


def stream_records(source: str, split: str | None = None, config: str | None = None, data_files=None):
    """`source` as a `datasets.IterableDataset` read lazily (streaming=true): a file through its builder, a
    save_to_disk directory (split picked), a local dataset folder, a builder with data_files or a hub name."""
    source = str(source)
    builders = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
    if data_files is None and os.path.isfile(source):
        suffix = os.path.splitext(source)[1].lower()
        if suffix not in builders:
            raise data_error(source, None, None, f"unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")
        return _load_dataset(builders[suffix], split, None, source, streaming=True)
    if data_files is None and os.path.isdir(source) and _is_saved_dataset(source):
        import datasets

        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict):
            name = split or "train"
            if name not in loaded:
                raise data_error(source, None, None, f"no split {name!r}; available splits: {', '.join(loaded)}")
            loaded = loaded[name]
        return loaded.to_iterable_dataset()
    if data_files is None and not os.path.isdir(source) and source.lower().endswith(FILE_SUFFIXES):
        raise data_error(source, None, None, "no such file; check the path")
    return _load_dataset(source, split, config, data_files, streaming=True)


# ----------------------------------------------------------------------------------------------- files


def _read_bytes(source: str) -> bytes:
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise data_error(source, None, None, f"cannot read the file ({e.strerror or e})") from None
    if not data.strip():
        raise data_error(source, None, None, "the file is empty; expected at least one row")
    return data


def _decode(source: str, data: bytes, first_row_line: int) -> str:
    """Decode UTF-8; on failure name the line (and the row, counting data rows from `first_row_line`)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        row = line - first_row_line if line >= first_row_line else None
        raise data_error(
            source, row, None,
            f"invalid UTF-8 at line {line} (byte {e.start}); re-save the file as UTF-8",
        ) from None


def _empty(source: str) -> DataError:
    return data_error(source, None, None, "the file has no rows; expected at least one")


def _read_jsonl(source: str) -> list[dict]:
    data = _read_bytes(source)
    rows: list[dict] = []
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        row = len(rows)
        try:
            text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise data_error(
                source, row, None, f"invalid UTF-8 at line {line_no} (byte {e.start} of the line); re-save as UTF-8"
            ) from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise data_error(
                source, row, None, f"malformed JSON at line {line_no}, char {e.colno}: {e.msg}"
            ) from None
        if not isinstance(value, dict):
            raise data_error(
                source, row, None, f"line {line_no}: expected a JSON object per line, got {_json_type(value)}"
            )
        rows.append(value)
    if not rows:
        raise _empty(source)
    return rows


def _no_splits(source: str, split: str):
    return data_error(source, None, None, f"holds one list of rows, so there is no split {split!r} to pick; remove dataset_split "
                                          "(it picks a split of a save_to_disk DatasetDict, a JSON file shaped {split: [...]} "
                                          "or a hub dataset)")


def _read_json(source: str, split: str | None) -> list[dict]:
    data = _read_bytes(source)
    text = _decode(source, data, first_row_line=10**12)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON lines saved with a .json suffix (common on the hub)
            if split is not None:
                raise _no_splits(source, split) from None
            return _read_jsonl(source)
        raise data_error(source, None, None, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if isinstance(value, dict):
        lists = {k: v for k, v in value.items() if isinstance(v, list)}
        key = split if split is not None else ("data" if "data" in lists else "train")
        if key not in lists:
            if not lists:
                raise data_error(
                    source, None, None, 'expected a list of objects, or an object like {"data": [...]} '
                    'or {"train": [...]}; got a single object'
                )
            raise data_error(
                source, None, None, f"no split {key!r}; available: {', '.join(sorted(lists))}"
            )
        value = lists[key]
    elif split is not None and isinstance(value, list):
        raise _no_splits(source, split)
    if not isinstance(value, list):
        raise data_error(source, None, None, f"expected a list of objects, got {_json_type(value)}")
    if not value:
        raise _empty(source)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise data_error(source, i, None, f"expected a JSON object, got {_json_type(item)}")
    return value


def _read_parquet(source: str) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise data_error(source, None, None, f"not a readable Parquet file ({e})") from None
    if table.num_rows == 0:
        raise _empty(source)
    return table.to_pylist()


def _read_csv(source: str) -> list[dict]:
    data = _read_bytes(source)
    text = _decode(source, data, first_row_line=2)
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as e:
        raise data_error(source, None, None, f"cannot read the CSV header ({e})") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise data_error(source, None, None, "the first line must be a header of column names")
    rows: list[dict] = []
    try:
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            row = len(rows)
            if len(cells) != len(header):
                raise data_error(
                    source, row, None,
                    f"line {reader.line_num}: {len(cells)} cells but the header has {len(header)} columns",
                )
            rows.append({name: _csv_cell(name, cell) for name, cell in zip(header, cells)})
    except csv.Error as e:
        raise data_error(source, len(rows), None, f"line {reader.line_num}: malformed CSV ({e})") from None
    if not rows:
        raise _empty(source)
    return rows


def _csv_cell(column: str, cell: str):
    """Parse JSON lists in known list columns and numbers/booleans in known scalar columns; else keep the text."""
    stripped = cell.strip()
    if column in LIST_COLUMNS and stripped.startswith("[") and stripped.endswith("]"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return cell
    if column in SCALAR_COLUMNS:
        low = stripped.lower()
        if low in ("true", "false"):
            return low == "true"
        try:
            number = float(stripped)
        except ValueError:
            return cell
        return int(number) if number.is_integer() and "." not in stripped and "e" not in low else number
    return cell


# ----------------------------------------------------------------------------------- datasets / hub


def _is_saved_dataset(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "dataset_dict.json")) or (
        os.path.isfile(os.path.join(path, "state.json")) and os.path.isfile(os.path.join(path, "dataset_info.json"))
    )


def _read_directory(source: str, split: str | None, config: str | None = None) -> list[dict]:
    import datasets

    if _is_saved_dataset(source):
        if config is not None:
            raise data_error(source, None, None, f"is a save_to_disk directory, which has no configurations; remove "
                                                 f"dataset_config={config}")
        try:
            loaded = datasets.load_from_disk(source)
        except Exception as e:
            raise data_error(source, None, None, f"cannot load the save_to_disk directory ({e})") from None
        return _pick_split(source, loaded, split)
    return _rows_of(source, _load_dataset(source, split, config, None))


def _load_dataset(source: str, split: str | None, config: str | None, data_files, streaming: bool = False):
    """`datasets.load_dataset` of a local folder or a builder name (json, csv, ...) with data_files; its
    errors (unknown config or split, a file it cannot parse) become one DataError line."""
    import datasets

    if data_files is not None:
        _check_data_files(source, data_files)
    try:
        return datasets.load_dataset(source, config, data_files=data_files, split=split or "train", streaming=streaming)
    except Exception as e:
        folder = "not a save_to_disk directory and " if os.path.isdir(source) and data_files is None and config is None else ""
        raise data_error(source, None, None, f"{folder}datasets.load_dataset could not read it ({_short(e)})") from None


def _read_hub(source: str, split: str | None, config: str | None = None) -> list[dict]:
    import datasets

    from posttrain import hub

    if not hub.offline() and not hub.reachable():  # else datasets retries for most of a minute
        raise data_error(source, None, None, f"no such file, and the Hugging Face hub ({hub.endpoint()}) could not be "
                         "reached to look for a data set of that name; offline? set HF_HUB_OFFLINE=1 (data sets in the "
                         "Hugging Face cache only) or give a local file")
    try:
        loaded = datasets.load_dataset(source, config, split=split or "train")
    except Exception as e:
        raise data_error(source, None, None, f"no such file or dataset: not a local path, and datasets.load_dataset failed ({_short(e)})") from None
    return _rows_of(source, loaded)


def _check_data_files(source: str, data_files) -> None:
    """Each local path or glob of data_files (relative to a folder `source`) must match a file."""
    import glob

    values = data_files.values() if isinstance(data_files, dict) else [data_files]
    for value in values:
        for pattern in [value] if isinstance(value, str) else value:
            if "://" in pattern:
                continue
            where = os.path.join(source, pattern) if os.path.isdir(source) else pattern
            if not glob.glob(os.path.expanduser(where), recursive=True):
                raise data_error(source, None, None, f"data_files={data_files!r}: {pattern!r} matches no file; check the "
                                                     "paths and globs")


def _pick_split(source: str, loaded, split: str | None) -> list[dict]:
    """A split of a save_to_disk dataset, sliced as `datasets` slices a split spec ("train[:1000]")."""
    import datasets

    name = (split or "train").split("[")[0]
    if isinstance(loaded, datasets.DatasetDict):
        if name not in loaded:
            raise data_error(source, None, None, f"no split {name!r}; available splits: {', '.join(loaded)}")
        loaded = loaded[name]
    if split and "[" in split:
        try:
            (part,) = datasets.ReadInstruction.from_spec(split).to_absolute({name: len(loaded)})
        except Exception as e:
            raise data_error(source, None, None, f"bad dataset_split {split!r} ({_short(e)}); e.g. train[:1000] or "
                                                 "train[10%:]") from None
        loaded = loaded.select(range(part.from_, part.to))
    return _rows_of(source, loaded)


def _rows_of_object(source: str, value, split: str | None) -> list[dict]:
    if isinstance(value, list):  # rows as dicts (the API checked the type)
        if not value:
            raise data_error(source, None, None, "the list has no rows; expected at least one")
        return list(value)
    return _pick_split(source, value, split)


def _rows_of(source: str, dataset) -> list[dict]:
    rows = dataset.to_list()
    if not rows:
        raise data_error(source, None, None, "the dataset has no rows; expected at least one")
    return rows


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
