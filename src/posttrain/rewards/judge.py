"""Generative reward models (LLM-as-judge): `reward_funcs=[judge]` and `reward_funcs=[pairwise_judge]`.

Seed 004's third kind of reward model: an LM that "outputs a preference decision" by next-token
prediction. Seed 003 uses such judges as RLAIF labelers (an off-the-shelf LLM labels preferences,
L2075-2079, L3219-3230) and as a verifier (L3009); SLiC-HF's text-to-text reward models score a
candidate by P("Good") and rank pairs with the target "A"/"B" (L3242-3245).

Any Hugging Face causal LM can judge (`model=`, default the embedded model). The filled template
(`data/judge_format.py`, or the user's file via `template=`) is sent as one user message through the
judge's chat template with the generation prompt (`chat=false`: as raw text), followed by `prefill`,
the text the answer starts with. Two ways to read the verdict:

- `method=generate`: decode up to `max_new_tokens` (greedy at `temperature=0`, the default) and parse
  it. Pointwise: "Score: 7", or a number at the start, in [min_score, max_score] -> (s − min)/(max − min)
  ∈ [0, 1]. Pairwise: "A" or "B" (also "[[A]]", "Answer: B", "Response A ..."). Unparseable -> None.
- `method=logprob`: one forward, no sampling: the next-token distribution right after the prefill.
  Each answer ("A", "B", or each score) counts the probability of its single-token spellings, with
  and without a leading space. Pairwise: P(first ≻ second) = p(A) / (p(A) + p(B)). Pointwise: the
  expected normalized score under p renormalized over the scores (so every score must be one token).
  Deterministic and about `max_new_tokens` times cheaper than generating.

Position swap. Judges favour one position. With `position_swap=true` (the default) every pair is
judged in both orders, (a, b) and (b, a), and P(a ≻ b) = ½ [P₁(a first ≻ b) + 1 − P₂(b first ≻ a)].
For hard verdicts this is 1 (or 0) only when both orders agree, and 0.5 when the verdict followed
the position (A both times): a win counts only if it is consistent. A pair with an unparseable
verdict in either order gets None.

As a reward, `pairwise_judge` compares each completion with every other completion of the same
prompt (equal prompt text = one group, as in GRPO): C(G, 2) pairs, each judged twice. The reward is
the completion's win rate against its group (seed 002's scores, divided by G − 1 so it lies in
[0, 1]): `rule=borda` the mean of P(i ≻ j) over j ≠ i, `rule=copeland` the fraction of strict wins
P(i ≻ j) > 0.5. A completion alone in its group gets None.
"""

from __future__ import annotations

import json

from posttrain.data.judge_format import fill, load_template, parse_score, parse_verdict, prompt_text
from posttrain.data.values import completion_text
from posttrain.errors import ConfigError, UserError
from posttrain.rewards.registry import check_choice

METHODS = ("generate", "logprob")
TOURNAMENT_RULES = ("borda", "copeland")

def label_token_ids(tokenizer, labels: list[str]) -> list[list[int]]:
    """For each label, the ids of its one-token spellings ("A", " A"); a ConfigError if one has none or two share one."""
    out, seen = [], {}
    for label in labels:
        ids = []
        for spelling in (label, " " + label):
            encoded = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1 and encoded[0] not in ids:
                ids.append(encoded[0])
        if not ids:
            raise ConfigError(f"judge method=logprob needs the answer {label!r} to be one token of the judge's "
                              "vocabulary; use method=generate (or a score range whose numbers are single tokens)")
        for token in ids:
            if token in seen:
                raise ConfigError(f"judge method=logprob: answers {seen[token]!r} and {label!r} share a token; "
                                  "use method=generate")
            seen[token] = label
        out.append(ids)
    return out


class LMJudge:
    """A causal LM that answers a filled template, by generation or by its next-token probabilities."""

    def __init__(self, model, tokenizer, template: str, *, method: str = "generate", temperature: float = 0.0,
                 max_new_tokens: int = 8, batch_size: int = 16, chat: bool = True, prefill: str = "", seed: int = 0):
        check_choice("judge", "method", method, METHODS)
        if int(batch_size) < 1 or int(max_new_tokens) < 1 or float(temperature) < 0:
            raise ConfigError("judge: batch_size and max_new_tokens must be >= 1 and temperature >= 0 (0 = greedy)")
        self.model, self.tokenizer, self.template = model.eval(), tokenizer, template
        self.method, self.temperature, self.max_new_tokens = method, float(temperature), int(max_new_tokens)
        self.batch_size, self.chat, self.prefill, self.seed = int(batch_size), bool(chat), str(prefill or ""), int(seed)
        self.max_positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)

    def encode(self, text: str) -> list[int]:
        """The judge's input ids: the text as a user turn (chat) or raw, then the prefill."""
        from posttrain.data.tokenize import tokenize_prompt

        if self.chat:
            ids = tokenize_prompt(self.tokenizer, [{"role": "user", "content": text}])
            if self.prefill:  # the answer's start, tokenized on its own as the judge would have generated it
                ids = ids + self.tokenizer(self.prefill, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenize_prompt(self.tokenizer, text + self.prefill)
        room = self.max_new_tokens if self.method == "generate" else 0
        if self.max_positions and len(ids) + room > self.max_positions:
            raise UserError(f"a judge input has {len(ids)} tokens (+{room} to generate), more than the judge model's "
                            f"{self.max_positions} positions; use a shorter template or a judge with a longer context")
        return ids

    def generate(self, texts: list[str]) -> list[str]:
        from posttrain.generation import SamplingParams, generate

        out: list[str] = []
        for i in range(0, len(texts), self.batch_size):
            ids = [self.encode(t) for t in texts[i:i + self.batch_size]]
            params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed)
            self.seed += 1  # sampled judges (temperature > 0) draw afresh on every call, reproducibly
            out += generate(self.model, self.tokenizer, ids, params).texts
        return out

    def answer_probabilities(self, texts: list[str], label_ids: list[list[int]]) -> list[list[float]]:
        """Per text, the next-token probability mass of each label's token ids."""
        import torch

        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            seqs = [self.encode(t) for t in texts[i:i + self.batch_size]]
            width = max(len(s) for s in seqs)
            input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):  # left padding: every row's answer position is the last column
                input_ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[r, width - len(s):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                    position_ids=positions.to(device), use_cache=False).logits[:, -1].float()
            probs = torch.softmax(logits, dim=-1).cpu()
            out += [[float(probs[r, ids].sum()) for ids in label_ids] for r in range(len(seqs))]
        return out


class PointwiseJudge(LMJudge):
    """Scores each completion on its own: a reward in [0, 1], None when the verdict cannot be parsed."""

    reward_range = (0.0, 1.0)

    def __init__(self, model, tokenizer, template: str, *, min_score: float = 1, max_score: float = 10, **options):
        super().__init__(model, tokenizer, template, **{"prefill": "Score:", **options})
        if not max_score > min_score:
            raise ConfigError(f"judge: max_score must be > min_score, got {min_score}..{max_score}")
        self.min_score, self.max_score = min_score, max_score
        if self.method == "logprob":
            if int(min_score) != min_score or int(max_score) != max_score or max_score - min_score > 100:
                raise ConfigError("judge method=logprob needs integer min_score and max_score at most 100 apart")
            self.scores = list(range(int(min_score), int(max_score) + 1))
            self.score_ids = label_token_ids(tokenizer, [str(s) for s in self.scores])

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        texts = [fill(self.template, prompt=prompt_text(p), completion=completion_text(c),
                      min_score=_number(self.min_score), max_score=_number(self.max_score))
                 for p, c in zip(prompts, completions)]
        if self.method == "generate":
            return [parse_score(t, self.min_score, self.max_score) for t in self.generate(texts)]
        span = self.max_score - self.min_score
        out: list[float | None] = []
        for masses in self.answer_probabilities(texts, self.score_ids):
            total = sum(masses)
            out.append(None if total <= 0 else sum(m * (s - self.min_score) / span for m, s in zip(masses, self.scores)) / total)
        return out


class PairwiseJudge(LMJudge):
    """Compares two completions of a prompt; as a reward, each completion's win rate within its group."""

    reward_range = (0.0, 1.0)

    def __init__(self, model, tokenizer, template: str, *, rule: str = "borda", position_swap: bool = True, **options):
        super().__init__(model, tokenizer, template, **options)
        check_choice("pairwise_judge", "rule", rule, TOURNAMENT_RULES)
        self.rule, self.position_swap = rule, bool(position_swap)
        self.verdict_ids = label_token_ids(tokenizer, ["A", "B"]) if self.method == "logprob" else None

    def first_wins(self, prompts, firsts, seconds) -> list[float | None]:
        """P(first ≻ second) with `first` shown as response A: one order only."""
        texts = [fill(self.template, prompt=prompt_text(p), completion_a=completion_text(a), completion_b=completion_text(b))
                 for p, a, b in zip(prompts, firsts, seconds)]
        if self.method == "generate":
            return [{"A": 1.0, "B": 0.0}.get(parse_verdict(t)) for t in self.generate(texts)]
        return [None if pa + pb <= 0 else pa / (pa + pb) for pa, pb in self.answer_probabilities(texts, self.verdict_ids)]

    def preferences(self, prompts, completions_a, completions_b) -> list[float | None]:
        """P(a ≻ b) for each pair, averaged over both orders when position_swap (see the module docstring)."""
        n = len(prompts)
        if not self.position_swap:
            return self.first_wins(prompts, completions_a, completions_b)
        both = self.first_wins(list(prompts) * 2, list(completions_a) + list(completions_b),
                               list(completions_b) + list(completions_a))
        return [None if x is None or y is None else (x - y + 1.0) / 2 for x, y in zip(both[:n], both[n:])]  # x = y: ½ exactly

    def compare(self, prompt, a, b) -> float | None:
        """P(a ≻ b) for one pair (the `compare` of `aggregation.best_of_n`)."""
        return self.preferences([prompt], [a], [b])[0]

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True), []).append(i)
        pairs = [(g[x], g[y]) for g in groups.values() for x in range(len(g)) for y in range(x + 1, len(g))]
        judged = self.preferences([prompts[i] for i, _ in pairs], [completions[i] for i, _ in pairs],
                                  [completions[j] for _, j in pairs]) if pairs else []
        value = {}
        for (i, j), p in zip(pairs, judged):
            value[i, j], value[j, i] = p, None if p is None else 1.0 - p
        rewards: list[float | None] = [None] * len(completions)
        for members in groups.values():
            for i in members:  # seed 002's Borda / Copeland score over the judged opponents, divided by their count
                judged_against = [value[i, j] for j in members if j != i and value[i, j] is not None]
                if judged_against:
                    wins = judged_against if self.rule == "borda" else [float(p > 0.5) for p in judged_against]
                    rewards[i] = sum(wins) / len(wins)
        return rewards


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _load(model: str, device: str, dtype: str):
    from posttrain.models.loading import WEIGHT_DTYPES, load_causal_lm, load_tokenizer, resolve_device

    check_choice("judge", "dtype", dtype, WEIGHT_DTYPES)
    tokenizer = load_tokenizer(str(model))
    lm = load_causal_lm(str(model), dtype=dtype, device=resolve_device(device))
    lm.requires_grad_(False)
    return lm, tokenizer


def pointwise_judge(model: str = "embedded", template: str | None = None, method: str = "generate",
                    min_score: float = 1, max_score: float = 10, prefill: str | None = None, chat: bool = True,
                    temperature: float = 0.0, max_new_tokens: int = 8, batch_size: int = 16,
                    device: str = "cpu", dtype: str = "float32", seed: int = 0):
    """An LLM judge that scores each completion alone; reward in [0, 1] (see the module docstring).
    `prefill` defaults to "Score:", and to nothing with `template=mt_bench` (its judge explains, then
    writes "Rating: [[k]]")."""
    if prefill is None:
        prefill = "" if template == "mt_bench" else "Score:"
    lm, tokenizer = _load(model, device, dtype)
    return PointwiseJudge(lm, tokenizer, load_template(template, "pointwise"), min_score=min_score, max_score=max_score,
                          method=method, temperature=temperature, max_new_tokens=max_new_tokens,
                          batch_size=batch_size, chat=chat, prefill=prefill, seed=seed)


def pairwise_judge(model: str = "embedded", template: str | None = None, method: str = "generate",
                   rule: str = "borda", position_swap: bool = True, prefill: str = "", chat: bool = True,
                   temperature: float = 0.0, max_new_tokens: int = 8, batch_size: int = 16,
                   device: str = "cpu", dtype: str = "float32", seed: int = 0):
    """An LLM judge comparing the completions of each prompt pairwise; reward = win rate in [0, 1]."""
    lm, tokenizer = _load(model, device, dtype)
    return PairwiseJudge(lm, tokenizer, load_template(template, "pairwise"), rule=rule, position_swap=position_swap,
                         method=method, temperature=temperature, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, chat=chat, prefill=prefill, seed=seed)
