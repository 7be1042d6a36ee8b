"""The embedded tasks: deterministic disjoint splits, correct gold solutions, scorers on hand-written cases."""

import random

import pytest

from posttrain.errors import UserError
from posttrain.tasks import TASKS, get_task
from posttrain.tasks.arithmetic import make_problem, worked_solution
from posttrain.tasks.sentiment import gold_reward, sentiment_score


def _msg(text):
    return [{"role": "assistant", "content": text}]


def _prompts(rows):
    return [r["prompt"] for r in rows]


# ------------------------------------------------------------------ registry and splits


def test_get_task_and_unknown_name():
    assert set(TASKS) == {"arithmetic", "sentiment", "sentiment_judge", "calculator", "web_form"}
    assert get_task("arithmetic").name == "arithmetic"
    with pytest.raises(UserError, match="arithmetic.*sentiment"):
        get_task("nope")


@pytest.mark.parametrize("name", ["arithmetic", "sentiment", "sentiment_judge"])
def test_rows_deterministic_prefix_and_format(name):
    task = get_task(name)
    a, b = task.rows("train", 300), task.rows("train", 300)
    assert a == b
    assert task.rows("train", 50) == a[:50]
    for row in a[:20]:
        assert row["prompt"][0]["role"] == "user" and isinstance(row["prompt"][0]["content"], str)
        assert row["completion"][0]["role"] == "assistant" and row["completion"][0]["content"]
    assert len(task.rows("test")) == task.default_sizes["test"]
    assert task.default_max_new_tokens > 0
    with pytest.raises(UserError):
        task.rows("validation", 3)


@pytest.mark.parametrize("name", ["arithmetic", "sentiment", "sentiment_judge"])
def test_splits_disjoint_and_test_unique(name):
    task = get_task(name)
    train = {r["prompt"][0]["content"] for r in task.rows("train", 3000)}
    test = [r["prompt"][0]["content"] for r in task.rows("test", 200)]
    assert len(set(test)) == len(test)
    assert not train & set(test)


def test_arithmetic_difficulties_balanced():
    rows = get_task("arithmetic").rows("test", 200)
    counts = {d: sum(r["difficulty"] == d for r in rows) for d in (1, 2, 3, 4)}
    assert all(c >= 30 for c in counts.values()), counts


# ------------------------------------------------------------------ arithmetic scorers


def test_gold_worked_solutions_are_correct_and_well_formed():
    task = get_task("arithmetic")
    for split, n in (("train", 1000), ("test", 200)):
        rows = task.rows(split, n)
        completions = [r["completion"] for r in rows]
        answers = [r["answer"] for r in rows]
        assert task.score(_prompts(rows), completions, answer=answers) == [1.0] * n
        assert task.scorers["format"](_prompts(rows), completions) == [1.0] * n
        for r in rows:
            assert int(r["answer"]) == eval(r["prompt"][0]["content"][len("What is "):-1])  # noqa: S307
            assert int(r["answer"]) >= 0


def test_worked_solution_example():
    text, value = worked_solution(make_problem(random.Random(0), 2))
    assert value >= 0 and text.startswith("<think>\n") and text.endswith(f"<answer>{value}</answer>")


def test_sloppy_solutions_go_wrong_sometimes():
    rng = random.Random(1)
    wrong = 0
    for _ in range(200):
        p = make_problem(rng, 3)
        _, value = worked_solution(p, rng, slip_prob=0.3)
        wrong += value != p.answer
    assert 50 < wrong < 200


@pytest.mark.parametrize("wrap", [str, _msg])
def test_arithmetic_scorers_hand_written(wrap):
    task = get_task("arithmetic")
    acc, fmt = task.scorers["accuracy"], task.scorers["format"]
    good = "<think>\n7 + 5 = 12\n</think>\n<answer>12</answer>"
    cases = {
        "correct": (good, 1.0, 1.0),
        "wrong": ("<think>7 + 5 = 13</think><answer>13</answer>", 0.0, 1.0),
        "spaces": ("<think>x</think> <answer> 12 </answer>\n", 1.0, 1.0),
        "no answer tag": ("<think>7 + 5 = 12</think> 12", 0.0, 0.0),
        "no think": ("<answer>12</answer>", 1.0, 0.0),
        "two answers": ("<think>a</think><answer>11</answer><answer>12</answer>", 1.0, 0.0),
        "wrong order": ("<answer>12</answer><think>a</think>", 1.0, 0.0),
        "trailing text": (good + " and more", 1.0, 0.0),
        "unclosed": ("<think>a</think><answer>12", 0.0, 0.0),
        "empty": ("", 0.0, 0.0),
        "not a number": ("<think>a</think><answer>twelve</answer>", 0.0, 1.0),
    }
    completions = [wrap(c[0]) for c in cases.values()]
    answers = ["12"] * len(cases)
    assert acc(None, completions, answer=answers) == [c[1] for c in cases.values()]
    assert fmt(None, completions) == [c[2] for c in cases.values()]
    assert task.score(None, completions, answer=answers) == acc(None, completions, answer=answers)


# ------------------------------------------------------------------ sentiment gold reward


def test_sentiment_negation_flips_and_range():
    pos, neg = "The acting was great.", "The acting was not great."
    assert sentiment_score(pos) > 0 > sentiment_score(neg)
    assert sentiment_score("The plot was boring.") < 0 < sentiment_score("The plot wasn't boring.")
    assert sentiment_score("It was very good.") > sentiment_score("It was good.") > sentiment_score("It was slightly good.")
    assert sentiment_score("The plot was dull, but the acting was superb.") > 0
    # negation stops at the end of the sentence
    assert sentiment_score("It was not long. The acting was great.") == sentiment_score("The acting was great.")


def test_gold_reward_orders_hand_written_reviews():
    texts = [
        "An absolutely brilliant film. I loved the acting and would recommend it.",
        "A good film with a solid cast.",
        "It runs for two hours.",
        "The story was dull and the ending was predictable.",
        "A terrible, boring mess. I would not recommend it. The worst film of the year.",
    ]
    rewards = gold_reward(None, texts)
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert rewards == sorted(rewards, reverse=True)
    assert rewards[2] == 0.5
    assert gold_reward(None, [_msg(texts[0])]) == rewards[:1]


def test_sentiment_rows_have_a_spread_of_gold_rewards():
    task = get_task("sentiment")
    rows = task.rows("train", 500)
    rewards = task.score(_prompts(rows), [r["completion"] for r in rows], title=[r["title"] for r in rows])
    assert task.scorers["gold"] is not None and len(rewards) == 500
    assert min(rewards) < 0.1 and max(rewards) > 0.9
    assert 0.3 < sum(rewards) / len(rewards) < 0.7


def test_sentiment_judge_rows_ask_the_judges_question_and_answer_by_gold_reward():
    import re

    from posttrain.data.judge_format import PAIRWISE_TEMPLATE
    from posttrain.tasks.sentiment import review_prompt

    task = get_task("sentiment_judge")
    rows = task.rows("train", 300)
    layout = re.escape(PAIRWISE_TEMPLATE).replace(r"\{prompt\}", "(.*)").replace(r"\{completion_a\}", "(.*)") \
        .replace(r"\{completion_b\}", "(.*)")
    for row in rows:
        request, verdict = row["prompt"][0]["content"], row["completion"][0]["content"]
        prompt, a, b = re.fullmatch(layout, request, re.S).groups()  # the judge's own template, filled
        assert prompt == review_prompt(row["title"]) and (a, b) == (row["review_a"], row["review_b"]) and a != b
        ra, rb = gold_reward(None, [a, b])
        assert abs(ra - rb) >= 0.05 and verdict == row["answer"] == ("A" if ra > rb else "B")
    share_a = sum(r["answer"] == "A" for r in rows) / len(rows)
    assert 0.4 < share_a < 0.6  # positions are random, so a judge cannot win by always saying "A"
    scores = task.score(_prompts(rows[:4]), ["A", "  B.", "The answer is A", "neither"], answer=["A", "B", "B", "A"])
    assert scores == [1.0, 1.0, 0.0, 0.0]
