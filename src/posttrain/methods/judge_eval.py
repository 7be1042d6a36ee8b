"""LLM-judge evaluation as scorers of the `eval` stage: AlpacaEval-style win rate against a reference,
and MT-Bench-style 1-10 ratings.

Both are scorers with TRL's calling convention that also keep what they judged, so the stage can
summarize after generation: `JudgeWinRate` returns P(sample ≻ reference) per sample (judged in both
orders, `methods.win_rate` explains the tie convention) and summarizes to the win rate, its
interval and the length-controlled win rate; `JudgeRating` returns the rating on the judge's own
scale (1-10 by default) and counts the replies it could not read.
"""

from __future__ import annotations

from posttrain.data.values import completion_text
from posttrain.errors import ConfigError, UserError
from posttrain.methods.metrics import mean_stderr
from posttrain.methods.win_rate import length_controlled_win_rate, win_rate_summary

REFERENCE_COLUMN = "reference_completion"


def build_judge(spec: str):
    """The judge object of a `judge=` spec: pairwise_judge[:k=v...] or judge[:k=v...] (a ConfigError otherwise)."""
    from posttrain.rewards.judge import PairwiseJudge, PointwiseJudge
    from posttrain.rewards.registry import build

    judge = build(spec)[1] if str(spec).split(":")[0] in ("judge", "pairwise_judge") else None
    if not isinstance(judge, (PairwiseJudge, PointwiseJudge)):
        raise ConfigError(f"judge must be pairwise_judge[:key=value...] or judge[:key=value...], got {spec!r}")
    return judge


class JudgeWinRate:
    """P(sample ≻ the row's reference completion in `column`), by a pairwise judge with position swap."""

    def __init__(self, judge, column: str = REFERENCE_COLUMN):
        self.judge, self.column = judge, column
        self.preferences: list[float | None] = []
        self.lengths: list[tuple[int, int]] = []

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        if self.column not in columns:
            raise UserError(f"the judge's win rate needs the reference completions in column '{self.column}'; "
                            f"columns: {', '.join(columns)}")
        samples = [completion_text(c) for c in completions]
        references = [completion_text(r) for r in columns[self.column]]
        preferences = self.judge.preferences(list(prompts), samples, references)
        self.preferences += preferences
        self.lengths += [(len(s), len(r)) for s, r in zip(samples, references)]
        return preferences

    def summary(self) -> dict:
        """win_rate with its stderr, interval and counts; lc_win_rate and the length weight; mean lengths."""
        out = {f"judge_{k}": v for k, v in win_rate_summary(self.preferences).items()}
        lc = length_controlled_win_rate(self.preferences, [a for a, _ in self.lengths], [b for _, b in self.lengths])
        out["judge_lc_win_rate"], out["judge_length_weight"] = lc["lc_win_rate"], lc["length_weight"]
        out["reference_mean_chars"] = sum(b for _, b in self.lengths) / max(len(self.lengths), 1)
        out["policy_mean_chars"] = sum(a for a, _ in self.lengths) / max(len(self.lengths), 1)
        return out


class JudgeRating:
    """The pointwise judge's rating on its own scale (MT-Bench: 1-10); None when the reply has none."""

    def __init__(self, judge):
        self.judge = judge
        self.ratings: list[float | None] = []

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        low, high = self.judge.min_score, self.judge.max_score
        ratings = [None if v is None else low + v * (high - low) for v in self.judge(prompts, completions)]
        self.ratings += ratings
        return ratings

    def summary(self) -> dict:
        """judge_rating (mean of the valid ratings) with its stderr, judge_invalid (unreadable replies), judge_rated."""
        mean, stderr = mean_stderr(self.ratings)
        rated = sum(r is not None for r in self.ratings)
        return {"judge_rating": mean, "judge_rating_stderr": stderr, "judge_invalid": len(self.ratings) - rated,
                "judge_rated": rated}


def judged_win_rate(judge, prompts: list, samples: list[str], references: list[str]) -> dict:
    """The summary of JudgeWinRate (win rate, interval, counts, LC win rate) for aligned sample / reference pairs."""
    scorer = JudgeWinRate(judge)
    scorer(prompts, samples, **{REFERENCE_COLUMN: references})
    return scorer.summary()


def add_reference_completions(model, tokenizer, rows: list[dict], params, batch_size: int) -> list[dict]:
    """The rows with the reference model's completion (one per prompt, sampled with `params`) in REFERENCE_COLUMN."""
    from posttrain.methods.best_of_n import sample_and_score

    groups = sample_and_score(model, tokenizer, rows, None, 1, params, batch_size)
    return [{**g.row, REFERENCE_COLUMN: g.candidates[0].text} for g in groups]
