from math import comb

import pytest

from posttrain.data import (
    LANGUAGE_MODELING,
    PREFERENCE,
    PROMPT_COMPLETION,
    PROMPT_ONLY,
    RANKING,
    SIGNED_PREFERENCE,
    UNPAIRED,
    detect_format,
    extract_prompt,
    is_conversational,
    pairs_to_signed,
    pairs_to_unpaired,
    prepare_records,
    rankings_to_pairs,
    signed_to_pairs,
    unpaired_to_pairs,
    validate,
)
from posttrain.data.formats import ROW_INDEX
from posttrain.errors import DataError

SRC = "data.jsonl"


def user(text):
    return [{"role": "user", "content": text}]


def bot(text):
    return [{"role": "assistant", "content": text}]


STANDARD = {
    LANGUAGE_MODELING: {"text": "The sky is blue."},
    PROMPT_COMPLETION: {"prompt": "The sky is", "completion": " blue."},
    PREFERENCE: {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    RANKING: {"prompt": "The sky is", "completions": [" green.", " blue.", " red."], "ranking": [1, 0, 2]},
    UNPAIRED: {"prompt": "The sky is", "completion": " blue.", "label": True},
    PROMPT_ONLY: {"prompt": "What is 2 + 2?", "answer": "4"},
    SIGNED_PREFERENCE: {"prompt": "The sky is", "y_minus": " green.", "y_plus": " blue.", "b": 1},
}
CONVERSATIONAL = {
    LANGUAGE_MODELING: {"messages": user("Sky?") + bot("Blue.")},
    PROMPT_COMPLETION: {"prompt": user("Sky?"), "completion": bot("Blue.")},
    PREFERENCE: {"prompt": user("Sky?"), "chosen": bot("Blue."), "rejected": bot("Green.")},
    RANKING: {"prompt": user("Sky?"), "completions": [bot("Green."), bot("Blue.")], "ranking": [1, 0]},
    UNPAIRED: {"prompt": user("Sky?"), "completion": bot("Green."), "label": False},
    PROMPT_ONLY: {"prompt": user("What is 2 + 2?"), "answer": "4"},
    SIGNED_PREFERENCE: {"prompt": user("Sky?"), "y_minus": bot("Blue."), "y_plus": bot("Green."), "b": -1},
}


@pytest.mark.parametrize("fmt", list(STANDARD))
@pytest.mark.parametrize("table", [STANDARD, CONVERSATIONAL], ids=["standard", "conversational"])
def test_detect_and_validate_every_format(table, fmt):
    rows = [table[fmt], dict(table[fmt])]
    assert detect_format(rows, SRC) == fmt
    assert validate(rows, fmt, SRC) == fmt


def test_implicit_prompt_preference():
    rows = [{"chosen": user("Sky?") + bot("Blue."), "rejected": user("Sky?") + bot("Green.")}]
    assert validate(rows, [PREFERENCE], SRC) == PREFERENCE
    assert extract_prompt(rows[0]) == {"prompt": user("Sky?"), "chosen": bot("Blue."), "rejected": bot("Green.")}
    std = extract_prompt({"chosen": "The sky is blue.", "rejected": "The sky is green."})
    assert std == {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}
    assert extract_prompt({"chosen": "2+2=4", "rejected": "2+2=5"})["prompt"] == ""


def test_is_conversational():
    assert is_conversational(user("hi"))
    assert not is_conversational("hi")
    assert not is_conversational([])
    assert not is_conversational(["a", "b"])


def test_prompt_only_accepts_any_rows_with_a_prompt():
    assert validate([STANDARD[PREFERENCE]], [PROMPT_ONLY], SRC) == PROMPT_ONLY


def test_soft_labels_and_margin():
    rows = [dict(STANDARD[PREFERENCE], label=0.5, margin=2.0), dict(STANDARD[PREFERENCE], label=True)]
    assert validate(rows, PREFERENCE, SRC) == PREFERENCE


# ------------------------------------------------------------------------------------ error messages


def err(rows, expected):
    with pytest.raises(DataError) as info:
        validate(rows, expected, SRC)
    return str(info.value)


def test_misspelled_column_suggests_the_right_one():
    msg = err([{"prompt": "p", "choosen": "a", "rejected": "b"}], PREFERENCE)
    assert msg.startswith("data.jsonl, row 0, column 'chosen': missing column 'chosen'")
    assert "found 'choosen' — did you mean 'chosen'?" in msg
    msg = err([{"prompt": "p", "choosen": "a", "rejeced": "b"}], [PREFERENCE])
    assert "column 'chosen'" in msg and "did you mean 'chosen'?" in msg
    msg = err([{"prompt": "p", "response": "a"}], PROMPT_COMPLETION)
    assert "missing column 'completion' (found 'response' — rename it to 'completion')" in msg


def test_misspelled_column_in_a_later_row():
    rows = [STANDARD[PREFERENCE], {"prompt": "p", "choosen": "a", "rejected": "b"}]
    msg = err(rows, PREFERENCE)
    assert msg.startswith("data.jsonl, row 1, column 'chosen': missing column 'chosen' (found 'choosen'")


def test_no_known_column():
    msg = err([{"instruction": "p", "output": "a"}], PROMPT_COMPLETION)
    assert msg.startswith("data.jsonl, row 0: no known column")
    assert "rename 'instruction' to 'prompt'" in msg and "rename 'output' to 'completion'" in msg


def test_wrong_type():
    msg = err([{"prompt": "p", "completion": 3}], PROMPT_COMPLETION)
    assert msg == ("data.jsonl, row 0, column 'completion': expected a string or a list of {role, content} "
                   "messages, got int")
    assert "column 'text': expected a string, got list" in err([{"text": ["a"]}], LANGUAGE_MODELING)


@pytest.mark.parametrize("column", ["chosen", "rejected"])
def test_empty_chosen_or_rejected(column):
    row = dict(STANDARD[PREFERENCE], **{column: "  "})
    assert f"row 0, column '{column}': is empty" in err([row], PREFERENCE)


def test_empty_completion():
    assert "row 1, column 'completion': is empty" in err(
        [STANDARD[PROMPT_COMPLETION], {"prompt": "p", "completion": ""}], PROMPT_COMPLETION)
    assert "column 'completion': every message is empty" in err(
        [{"prompt": user("p"), "completion": bot("")}], PROMPT_COMPLETION)


@pytest.mark.parametrize("label", [1.5, -0.1, "yes", float("nan")])
def test_label_out_of_range(label):
    msg = err([dict(STANDARD[PREFERENCE], label=label)], PREFERENCE)
    assert "row 0, column 'label': expected P(chosen ≻ rejected) as a bool or a number in [0, 1]" in msg


def test_unpaired_label_must_be_bool():
    assert "column 'label': expected a bool" in err([dict(STANDARD[UNPAIRED], label="yes")], UNPAIRED)


def test_margin_must_be_a_number():
    assert "column 'margin': expected a finite number" in err([dict(STANDARD[PREFERENCE], margin="big")], PREFERENCE)


@pytest.mark.parametrize("ranking", [[0, 0, 1], [1, 2, 3], [0, 1], "0,1,2", [0, 1, True]])
def test_ranking_not_a_permutation(ranking):
    msg = err([dict(STANDARD[RANKING], ranking=ranking)], RANKING)
    assert "row 0, column 'ranking': expected a permutation of 0..2" in msg


def test_ranking_needs_two_completions():
    msg = err([{"prompt": "p", "completions": ["a"], "ranking": [0]}], RANKING)
    assert "column 'completions': expected a list of K >= 2 completions, got 1 item(s)" in msg


def test_signed_b_must_be_plus_or_minus_one():
    assert "column 'b': expected -1 or +1" in err([dict(STANDARD[SIGNED_PREFERENCE], b=0)], SIGNED_PREFERENCE)


def test_inconsistent_formats_name_first_bad_row():
    rows = [STANDARD[PROMPT_COMPLETION], STANDARD[PROMPT_COMPLETION], STANDARD[UNPAIRED]]
    msg = err(rows, PROMPT_COMPLETION)
    assert msg.startswith("data.jsonl, row 2: columns ['completion', 'label', 'prompt'] make this row unpaired rows")


def test_mixed_standard_and_conversational_column():
    rows = [STANDARD[PROMPT_COMPLETION], CONVERSATIONAL[PROMPT_COMPLETION]]
    assert "row 1, column 'prompt': is conversational here but standard in earlier rows" in err(rows, PROMPT_COMPLETION)
    row = {"prompt": "Sky?", "completion": bot("Blue.")}
    assert "row 0, column 'prompt': is a string but 'completion' is a message list" in err([row], PROMPT_COMPLETION)


def test_bad_messages():
    assert "column 'messages': message 1 has no 'role'" in err(
        [{"messages": user("a") + [{"content": "b"}]}], LANGUAGE_MODELING)
    msg = err([{"messages": [{"role": "human", "content": "a"}]}], LANGUAGE_MODELING)
    assert "message 0: unknown role 'human'; did you mean 'user'?" in msg
    assert "did you mean 'assistant'?" in err([{"messages": [{"role": "asistant", "content": "a"}]}],
                                              LANGUAGE_MODELING)
    assert "message 0 (user) has no 'content'" in err([{"messages": [{"role": "user"}]}], LANGUAGE_MODELING)
    assert "ShareGPT" in err([{"messages": [{"from": "human", "value": "a"}]}], LANGUAGE_MODELING)
    assert "message 0: expected a {role, content} object, got str" in err([{"messages": ["hi"]}], LANGUAGE_MODELING)
    assert "is an empty list" in err([{"messages": []}], LANGUAGE_MODELING)
    assert "column 'completion': has no assistant message" in err(
        [{"prompt": user("a"), "completion": user("b")}], PROMPT_COMPLETION)


def test_wrong_format_suggests_converter():
    msg = err([STANDARD[RANKING]], PREFERENCE)
    assert "the rows are ranking rows" in msg and "rankings_to_pairs" in msg


def test_no_rows_and_non_object_row():
    assert "no rows" in err([], PREFERENCE)
    assert "row 1: expected an object" in err([STANDARD[PROMPT_ONLY], "x"], PROMPT_ONLY)


# --------------------------------------------------------------------------------------- converters


def test_rankings_to_pairs_all_pairs_best_first():
    rows = [
        {"prompt": "p", "completions": ["ok", "best", "bad", "worst"], "ranking": [1, 0, 2, 3], "id": 7},
        {"prompt": "q", "completions": ["x", "y"], "ranking": [1, 0]},
    ]
    pairs = rankings_to_pairs(rows)
    assert len(pairs) == comb(4, 2) + comb(2, 2)
    first = [(p["chosen"], p["rejected"]) for p in pairs if p["group"] == 0]
    assert first == [("best", "ok"), ("best", "bad"), ("best", "worst"), ("ok", "bad"), ("ok", "worst"),
                     ("bad", "worst")]
    assert all(p["id"] == 7 and p["prompt"] == "p" for p in pairs[:6])
    assert pairs[6] == {"prompt": "q", "chosen": "y", "rejected": "x", "group": 1}
    assert validate(pairs, PREFERENCE, SRC) == PREFERENCE


def test_pairs_to_unpaired_and_soft_labels():
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b", "id": 1},
        {"prompt": "q", "chosen": "c", "rejected": "d", "label": 0.2, "margin": 1.0},  # rejected actually wins
        {"prompt": "r", "chosen": "e", "rejected": "f", "label": 0.5},  # tie: dropped
    ]
    assert pairs_to_unpaired(rows) == [
        {"prompt": "p", "completion": "a", "label": True, "id": 1},
        {"prompt": "p", "completion": "b", "label": False, "id": 1},
        {"prompt": "q", "completion": "d", "label": True},
        {"prompt": "q", "completion": "c", "label": False},
    ]


def test_unpaired_to_pairs_same_prompt_only():
    rows = [
        {"prompt": "p", "completion": "good1", "label": True, "id": 1},
        {"prompt": "q", "completion": "lonely", "label": True},  # no undesirable for q: dropped
        {"prompt": "p", "completion": "bad1", "label": False},
        {"prompt": "p", "completion": "good2", "label": True, "id": 2},
        {"prompt": user("p"), "completion": bot("x"), "label": False},  # other prompt (by value): dropped
    ]
    assert unpaired_to_pairs(rows) == [
        {"prompt": "p", "chosen": "good1", "rejected": "bad1", "id": 1, "group": 0},
        {"prompt": "p", "chosen": "good2", "rejected": "bad1", "id": 2, "group": 0},
    ]


def test_signed_label_direction():
    rows = [
        {"prompt": "p", "y_minus": "m", "y_plus": "P", "b": 1, "id": 0},
        {"prompt": "q", "y_minus": "M", "y_plus": "x", "b": -1},
    ]
    pairs = signed_to_pairs(rows)
    assert pairs == [
        {"prompt": "p", "chosen": "P", "rejected": "m", "id": 0},  # b=+1: y_plus preferred
        {"prompt": "q", "chosen": "M", "rejected": "x"},  # b=-1: y_minus preferred
    ]
    assert signed_to_pairs(pairs_to_signed(pairs)) == pairs
    # label False: the 'rejected' column actually won -> y_plus = chosen, y_minus = rejected, b = -1
    signed = pairs_to_signed([{"prompt": "p", "chosen": "a", "rejected": "b", "label": False}])
    assert signed == [{"prompt": "p", "y_minus": "b", "y_plus": "a", "b": -1}]
    assert signed_to_pairs(signed) == [{"prompt": "p", "chosen": "b", "rejected": "a"}]


def test_prepare_records_converts():
    rows, fmt = prepare_records([STANDARD[RANKING]], [PREFERENCE], SRC)
    assert fmt == PREFERENCE and len(rows) == 3
    rows, fmt = prepare_records([STANDARD[RANKING]], [UNPAIRED], SRC)
    assert fmt == UNPAIRED and len(rows) == 6
    rows, fmt = prepare_records([STANDARD[SIGNED_PREFERENCE]], PREFERENCE, SRC)
    assert rows == [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}]
    rows, fmt = prepare_records([STANDARD[PROMPT_COMPLETION]], PROMPT_COMPLETION, SRC)
    assert fmt == PROMPT_COMPLETION
    with pytest.raises(DataError, match="left no rows"):
        prepare_records([STANDARD[UNPAIRED]], PREFERENCE, SRC)
    with pytest.raises(DataError, match=r"row 0, column 'ranking': expected a permutation"):
        prepare_records([dict(STANDARD[RANKING], ranking=[0, 0, 1])], PREFERENCE, SRC)


def test_a_loaders_row_index_is_never_listed_as_a_column():
    rows = [{"prompt": "q", "chosen": " a", "rejected": " b", ROW_INDEX: 0}, {"foo": "q", "chosen": " a", ROW_INDEX: 1}]
    with pytest.raises(DataError) as info:
        validate(rows, PREFERENCE, "pairs.jsonl")
    assert str(info.value) == ("pairs.jsonl, row 1, column 'rejected': missing column 'rejected' (found columns: chosen, foo); "
                               "expected preference rows ('prompt', 'chosen', 'rejected')")
    with pytest.raises(DataError) as info:
        validate([{"foo": "q", ROW_INDEX: 0}], PREFERENCE, "pairs.jsonl")
    assert "found 'foo';" in str(info.value) and ROW_INDEX not in str(info.value)
