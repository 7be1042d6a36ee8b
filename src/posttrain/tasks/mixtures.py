"""Mixtures of datasets: `dataset=[a:0.7, b:0.3]`, each element any `dataset=` form (a file, a folder, a
hub name, task:NAME[:split[:N]]) with its sampling probability after the last colon.

Rows are drawn as `datasets.interleave_datasets(probabilities=..., seed=seed)` draws them (the default
"first_exhausted": the mixture ends when one element runs out), run on row indices so that every row
reaches the stage exactly as its reader returned it. The elements' columns must agree after renames.
"""

from __future__ import annotations

from posttrain.errors import ConfigError, DataError

SUM_TOLERANCE = 1e-6


def is_mixture(source) -> bool:
    return isinstance(source, str) and source.strip().startswith("[") and source.strip().endswith("]")


def parse_mixture(source: str) -> list[tuple[str, float]]:
    """`[a:0.7, b:0.3]` -> [("a", 0.7), ("b", 0.3)]; weights must be positive and sum to 1."""
    parts = [p.strip() for p in source.strip()[1:-1].split(",") if p.strip()]
    elements = []
    for part in parts:
        name, _, weight = part.rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not name or value is None:
            raise ConfigError(f"dataset mixture element {part!r} has no weight; write SOURCE:WEIGHT, e.g. "
                              "[task:arithmetic:0.7, data.jsonl:0.3]")
        if not value > 0:
            raise ConfigError(f"dataset mixture element {part!r}: the weight must be > 0")
        elements.append((name, value))
    if len(elements) < 2:
        raise ConfigError(f"dataset={source}: a mixture needs at least two SOURCE:WEIGHT elements")
    total = sum(w for _, w in elements)
    if abs(total - 1) > SUM_TOLERANCE:
        raise ConfigError(f"dataset={source}: the mixture weights sum to {total:g}, not 1; they are sampling "
                          "probabilities (e.g. [a:0.7, b:0.3])")
    return elements


def element_rows(source: str, split: str | None, reading) -> list[list[dict]]:
    """Each element's rows, renamed where it has the columns; a DataError when a renamed column is in
    none of them or when the elements' columns differ."""
    from dataclasses import replace

    from posttrain.tasks.sources import rename_columns, source_rows

    elements = parse_mixture(source)
    raw = [source_rows(name, split, replace(reading, renames={})) for name, _ in elements]
    unused = [old for old in reading.renames if not any(old in rows[0] for rows in raw)]
    if unused:
        raise DataError(f"dataset={source}: no element has the column {unused[0]!r} to rename (dataset_columns / "
                        "dataset_text_field)")
    parts = [rename_columns(rows, reading.renames, name, strict=False) for rows, (name, _) in zip(raw, elements)]
    columns = [sorted(rows[0]) for rows in parts]
    for (name, _), cols in zip(elements[1:], columns[1:]):
        if cols != columns[0]:
            raise DataError(f"dataset={source}: the elements' columns differ after renames: {elements[0][0]} has "
                            f"{columns[0]}, {name} has {cols}; rename them to agree with dataset_columns={{old: new}} "
                            "or give data with the same columns")
    return parts


def mixture_rows(source: str, split: str | None, reading) -> list[dict]:
    """The interleaved rows of a mixture (seeded with the run's seed)."""
    import datasets

    parts = element_rows(source, split, reading)
    weights = [w for _, w in parse_mixture(source)]
    indices = [datasets.Dataset.from_dict({"part": [k] * len(rows), "row": list(range(len(rows)))})
               for k, rows in enumerate(parts)]
    mixed = datasets.interleave_datasets(indices, probabilities=weights, seed=reading.seed)
    return [parts[k][i] for k, i in zip(mixed["part"], mixed["row"])]
