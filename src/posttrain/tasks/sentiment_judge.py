"""`sentiment_judge`: which of two reviews of one film is more positive, asked in the pairwise judge's
default template. SFT on it turns the embedded model into an LLM judge for RLAIF.

The embedded model is not an instruction follower, so asked "which response is better?" it answers at
chance. RLAIF (seed 003 L2075-2079) assumes "an off-the-shelf LLM as a preference labeler"; here the
nearest honest stand-in is a *generative reward model* (seed 004; seed 003's SLiC-HF ranker with
target "A"/"B"): a causal LM fine-tuned to emit the verdict letter. Each row:

- prompt: `data.judge_format.PAIRWISE_TEMPLATE` filled exactly as `PairwiseJudge` fills it at
  judging time (request = the sentiment task's prompt for the film; responses = two reviews of it
  from the task's review grammar, in a random order);
- completion: the letter of the review with the higher gold reward; pairs whose gold rewards differ
  by less than MIN_GAP are redrawn (near-ties teach noise), in the test split too, so
  `verdict_accuracy` is measured on pairs with a clear winner;
- columns `answer` (the letter), `title`, `review_a` and `review_b`.

A film's title decides its split, so the test split judges reviews of films never seen in training.
The headline scorer `verdict_accuracy` is 1 when the completion's parsed verdict is the answer.

    posttrain sft dataset=task:sentiment_judge output_dir=runs/judge   # then judge=pairwise_judge:model=runs/judge/final

`scripts/train_embedded_judge.py` trains the judge shipped as `model=embedded-judge` this way.
"""

from __future__ import annotations

import random

from posttrain.data.judge_format import PAIRWISE_TEMPLATE, fill, parse_verdict
from posttrain.data.values import completion_text
from posttrain.tasks.base import Task, chat_row
from posttrain.tasks.sentiment import gold_reward, make_title, review_prompt, write_review

MIN_GAP = 0.25  # clear winners: a judge learns from them in fewer steps (0.05 took ~2x as many for the same accuracy)


def judge_request(title: str, review_a: str, review_b: str) -> str:
    """The user turn a PairwiseJudge with the default template builds for this film and these two reviews."""
    return fill(PAIRWISE_TEMPLATE, prompt=review_prompt(title), completion_a=review_a, completion_b=review_b)


def make_example(rng: random.Random) -> tuple[str, dict]:
    title = make_title(rng)
    while True:
        a, b = write_review(rng, title), write_review(rng, title)
        reward_a, reward_b = gold_reward(None, [a, b])
        if abs(reward_a - reward_b) >= MIN_GAP:
            break
    answer = "A" if reward_a > reward_b else "B"
    return title, chat_row(judge_request(title, a, b), answer, answer=answer, title=title, review_a=a, review_b=b)


def verdict_accuracy(prompts, completions, answer, **columns) -> list[float]:
    """1.0 when the completion's verdict (parsed as the judge parses it) is the answer, else 0.0."""
    return [float(parse_verdict(completion_text(c)) == a) for c, a in zip(completions, answer)]


TASK = Task(
    name="sentiment_judge",
    make_example=make_example,
    scorers={"verdict_accuracy": verdict_accuracy},
    headline="verdict_accuracy",
    default_max_new_tokens=4,
    description="Pairwise verdicts (A/B): which review is more positive, in the judge's default template.",
)
