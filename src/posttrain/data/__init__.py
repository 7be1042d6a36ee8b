"""The data layer: read rows, detect and validate their format, convert between formats, tokenize.

See `formats` for the column conventions (TRL-compatible), `converters` for the conversions and
`tokenize` for chat templates and completion masks. Padding and packing live in `collate`.
"""

from posttrain.data.agent_rows import step_pairs_to_pairs
from posttrain.data.converters import (
    convert,
    extract_prompt,
    pairs_to_signed,
    pairs_to_unpaired,
    prepare_records,
    rankings_to_pairs,
    signed_to_pairs,
    unpaired_to_pairs,
)
from posttrain.data.formats import (
    AGENT_STEPS,
    FORMATS,
    LANGUAGE_MODELING,
    PREFERENCE,
    PROMPT_COMPLETION,
    PROMPT_ONLY,
    RANKING,
    SIGNED_PREFERENCE,
    TRAJECTORY_PAIRS,
    UNPAIRED,
    detect_format,
    detect_row_format,
    is_conversational,
    validate,
)
from posttrain.data.readers import read_records
from posttrain.data.tokenize import (
    render,
    tokenize_example,
    tokenize_preference,
    tokenize_prompt,
    tokenize_rows,
)

__all__ = [
    "AGENT_STEPS",
    "FORMATS",
    "LANGUAGE_MODELING",
    "PREFERENCE",
    "PROMPT_COMPLETION",
    "PROMPT_ONLY",
    "RANKING",
    "SIGNED_PREFERENCE",
    "TRAJECTORY_PAIRS",
    "UNPAIRED",
    "convert",
    "detect_format",
    "detect_row_format",
    "extract_prompt",
    "is_conversational",
    "pairs_to_signed",
    "pairs_to_unpaired",
    "prepare_records",
    "rankings_to_pairs",
    "read_records",
    "render",
    "signed_to_pairs",
    "step_pairs_to_pairs",
    "tokenize_example",
    "tokenize_preference",
    "tokenize_prompt",
    "tokenize_rows",
    "unpaired_to_pairs",
    "validate",
]
