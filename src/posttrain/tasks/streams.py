"""`streaming=true`: the training data read lazily as a `datasets.IterableDataset` (any `dataset=` form,
mixtures too, interleaved as `interleave_datasets` does) and `StreamingSource`, the StepSource that
tokenizes rows only as the optimizer steps read them.

Its length is unknown, so a run needs max_steps (as transformers' Trainer requires); when the stream
runs out the next pass starts, reshuffled (`set_epoch`). Rows come through Arrow: a column a row lacks
arrives as None, and is dropped again before tokenizing. Errors name a row by its position in the
shuffled stream.
"""

from __future__ import annotations

import posttrain.ranks as ranks
from posttrain.data.readers import stream_records
from posttrain.data.steps import StepSource
from posttrain.errors import ConfigError, DataError

SHUFFLE_BUFFER = 1000  # rows held to shuffle a stream (datasets' default)


def stream_rows(source: str, split: str | None, options):
    """The IterableDataset of `source` with the renames of `options` (see tasks.sources.reading_of)."""
    import datasets

    from posttrain.tasks.mixtures import is_mixture, parse_mixture
    from posttrain.tasks.sources import reading_of

    reading = reading_of(options, source)
    if not is_mixture(source):
        return _renamed(_stream_one(source, split, reading), reading.renames, source, strict=True)
    if reading.config is not None or reading.data_files is not None:
        raise ConfigError("dataset_config and data_files describe one dataset, not a mixture; name each element in full")
    elements = parse_mixture(source)
    parts = [_renamed(_stream_one(name, split, reading), reading.renames, name, strict=False) for name, _ in elements]
    columns = [sorted(_first(part, name)) for part, (name, _) in zip(parts, elements)]
    for (name, _), cols in zip(elements[1:], columns[1:]):
        if cols != columns[0]:
            raise DataError(f"dataset={source}: the elements' columns differ after renames: {elements[0][0]} has "
                            f"{columns[0]}, {name} has {cols}; rename them to agree with dataset_columns={{old: new}}")
    return datasets.interleave_datasets(parts, probabilities=[w for _, w in elements], seed=reading.seed)


def _stream_one(source: str, split: str | None, reading):
    from dataclasses import replace

    import datasets

    from posttrain.tasks.sources import is_task_source, source_rows

    if is_task_source(source):  # small and embedded: read, then stream
        return datasets.Dataset.from_list(source_rows(source, split, replace(reading, renames={}))).to_iterable_dataset()
    return stream_records(source, split, reading.config, reading.data_files)


def _first(stream, source: str) -> dict:
    for row in stream.take(1):
        return row
    raise DataError(f"{source}: the dataset has no rows; expected at least one")


def _renamed(stream, renames: dict, source: str, strict: bool):
    if not renames:
        return stream
    columns = _first(stream, source)
    present = {old: new for old, new in renames.items() if old in columns}
    missing = sorted(set(renames) - set(present))
    if strict and missing:
        raise DataError(f"{source}: has no column {missing[0]!r} to rename (dataset_columns / dataset_text_field); "
                        f"its columns: {', '.join(sorted(columns))}")
    clash = sorted(new for new in present.values() if new in columns and new not in present)
    if clash:
        raise DataError(f"{source}: already has a column {clash[0]!r}, so renaming another to it would hide one; rename "
                        "that one too, or pick another name")
    if not present:
        return stream
    # all at once (rename_columns refuses a swap): columns are removed before the renamed row is merged in
    return stream.map(lambda row: {present.get(k, k): v for k, v in row.items()}, remove_columns=list(columns))


class StreamingSource(StepSource):
    """Each step takes the next batch_size x gradient_accumulation_steps x world_size rows of the shuffled
    stream (every rank reads the stream; each tokenizes only its contiguous share). The order is a pure
    function of (seed, step): a resumed run skips step x global batch rows without tokenizing them."""

    steps_per_epoch = None

    def __init__(self, stream, make_item, collate, config):
        self.stream = stream.shuffle(seed=config.seed, buffer_size=SHUFFLE_BUFFER)
        self.make_item, self.collate = make_item, collate
        self.batch_size, self.accumulation = config.batch_size, config.gradient_accumulation_steps
        self.source = config.dataset
        self._rows, self._position, self._epoch, self._in_epoch = None, None, 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accumulation * ranks.world_size()

    def _restart(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)
        self._rows, self._epoch, self._in_epoch = iter(self.stream), epoch, 0

    def _next_row(self) -> tuple[int, dict]:
        try:
            row = next(self._rows)
        except StopIteration:
            if self._in_epoch == 0:
                raise DataError(f"{self.source}: the stream has no rows; expected at least one") from None
            self._restart(self._epoch + 1)
            return self._next_row()
        self._in_epoch += 1
        self._position += 1
        return self._in_epoch - 1, row

    def next_step(self, step: int) -> list:
        g = self.global_batch
        if self._position != step * g:  # first step, or a resumed run: replay the order up to here
            self._restart(0)
            self._position = 0
            while self._position < step * g:
                self._next_row()
        rows = [self._next_row() for _ in range(g)]
        mine = ranks.shard_items(rows)
        items = [self.make_item({k: v for k, v in row.items() if v is not None}, i) for i, row in mine]
        b = self.batch_size
        return [self.collate(items[k * b:(k + 1) * b]) for k in range(self.accumulation)]
