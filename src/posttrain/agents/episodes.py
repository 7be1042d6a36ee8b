"""Multi-turn episodes through the rollout backend: G episodes per dataset row, each a trajectory of
model turns and environment observations, returned as `Rollouts` the experience maker scores.

    runner = EpisodeRunner(make_env, tokenizer, backend, max_turns=4, max_length=512)
    rollouts = runner.run(rows, group_size=8, params=SamplingParams(max_new_tokens=64, temperature=1.0))

Each turn, the contexts of every episode still going are generated together in one backend call
(one sample each, its own seed: the row's seed, the episode's index in its group and the turn), then
the environment steps run concurrently on `workers` threads (`rewards.bounded.run_bounded`: a step
that hangs past its deadline ends its episode, counted, instead of stalling the batch).

One sample per episode: `completion_ids` are the model's tokens and the observations' tokens in
order, ending with the model's last turn; `loss_mask` is 1 on the model's tokens and 0 on the
observations' (the environment's text is context, not something the policy chose); `old_logps` are
the sampler's for model tokens, 0 for observations. The observation tokens are what the chat template
adds after the model's turn: the template rendered with the new messages, minus the text already
there (the model's own end-of-turn token is kept as generated). `turn_ends[t]` is the index of turn
t's last token, where its reward r_t goes (`turn_rewards[t]`).

A turn cut off by max_new_tokens is still the model's action, handed to the environment (a tool call
cut in half is a parse error the model sees); `truncated` counts the episodes with such a turn, and
a sample is `truncated` (for mask_truncated) when its last turn was. An episode ends when the
environment says done, after `max_turns` model turns, when the next turn would not fit max_length (`overflow`), or when the
environment fails (`env_errors`). Reward functions see the episode as a conversational completion
(its assistant and tool messages) plus the columns `events`, `trajectory` (one {"observation",
"action", "next_observation"} per turn) and `turns`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from posttrain.agents.environment import COUNTERS, Environment, Turn
from posttrain.data.tokenize import render
from posttrain.errors import ConfigError
from posttrain.generation import SamplingParams, prompt_seeds
from posttrain.rewards.bounded import TIMED_OUT, run_bounded
from posttrain.rollout import RolloutBackend, Rollouts

ENDINGS = ("success", "truncated", "overflow", "max_turns_reached", "env_errors")  # per-episode flags, logged as agent/<name>
# (truncated: some turn hit max_new_tokens; the others: how the episode ended)


@dataclass
class Episode:
    group: int  # its row's index in the round
    index: int  # its index among the row's G episodes
    env: Environment
    messages: list[dict]  # the conversation so far
    tools: list[dict] | None  # the JSON schemas the chat template receives
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    loss_mask: list[float] = field(default_factory=list)
    turn_ends: list[int] = field(default_factory=list)
    turn_rewards: list[float] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # (observation, action, next_observation) per turn
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNTERS + ENDINGS, 0))
    done: bool = False
    cut: bool = False  # the latest turn hit max_new_tokens
    opened: int = 0  # how many of `messages` the environment opened with
    observation: str = ""  # the text of what the model answers next (o_t)

    @property
    def context(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    def end(self, why: str) -> None:
        self.counts[why] = 1
        self.done = True


class EpisodeRunner:
    def __init__(self, make_env: Callable[[], Environment], tokenizer, backend: RolloutBackend, *, max_turns: int,
                 max_length: int, tool_style: str = "auto", tool_timeout: float = 10.0, workers: int = 8):
        self.make_env, self.tokenizer, self.backend = make_env, tokenizer, backend
        self.max_turns, self.max_length, self.workers = max_turns, max_length, workers
        self.tool_style, self.tool_timeout = tool_style, tool_timeout
        self.step_timeout = tool_timeout * 4 + 5  # an environment step may call a few tools, each bounded by tool_timeout
        self.timings = {"env_seconds": 0.0, "generation_seconds": 0.0}  # summed until `pop_timings`
        self._lock = threading.Lock()
        self._warned = False

    # ------------------------------------------------------------------------------ one round

    def run(self, rows: list[dict], group_size: int, params: SamplingParams) -> Rollouts:
        began = time.perf_counter()
        episodes = [self._start(g, j, row) for g, row in enumerate(rows) for j in range(group_size)]
        for turn in range(self.max_turns):
            for ep in episodes:
                if not ep.done and len(ep.context) + params.max_new_tokens > self.max_length:
                    ep.end("overflow")
            active = [ep for ep in episodes if not ep.done]
            if not active:
                break
            replies = self._generate(active, params, turn)
            self._step_all(list(zip(active, replies)), last_turn=turn == self.max_turns - 1)
        return self._rollouts(episodes, rows, group_size, time.perf_counter() - began)

    def pop_timings(self) -> dict[str, float]:
        with self._lock:
            out, self.timings = self.timings, {"env_seconds": 0.0, "generation_seconds": 0.0}
        return out

    def _start(self, group: int, index: int, row: dict) -> Episode:
        env = self.make_env()
        if hasattr(env, "style"):  # a ToolEnvironment parses and bounds tool calls as the run says
            env.style = self._style()
        if hasattr(env, "timeout"):
            env.timeout = self.tool_timeout
        messages = list(env.reset(row))
        tools = _schemas(getattr(env, "tools", None)) or row.get("tools")
        prompt_ids = self._encode(render(self.tokenizer, messages, add_generation_prompt=True, tools=tools))
        return Episode(group, index, env, messages, tools, prompt_ids, opened=len(messages), observation=_text(messages))

    def _style(self) -> str:
        if self.tool_style == "auto":
            from posttrain.agents.tool_calls import detect_style

            self.tool_style = detect_style(self.tokenizer)
        return self.tool_style

    def _generate(self, active: list[Episode], params: SamplingParams, turn: int) -> list[str]:
        """One model turn for every active episode: its text (a turn cut off at max_new_tokens too)."""
        bases = [params.seeds[ep.group] if params.seeds else (params.seed or 0) + ep.group for ep in active]
        seeds = [prompt_seeds(base, [ep.index * 1009 + turn])[0] for base, ep in zip(bases, active)]
        turn_params = SamplingParams(**{**params.__dict__, "n": 1, "seed": None, "seeds": seeds})
        began = time.perf_counter()
        out = self.backend.generate([ep.context for ep in active], turn_params)
        self._add_time("generation_seconds", time.perf_counter() - began)
        replies = []
        for k, ep in enumerate(active):
            tokens = list(out.token_ids[k])
            ep.completion_ids += tokens
            ep.logps += list(out.policy_logprobs[k])
            ep.loss_mask += [1.0] * len(tokens)
            ep.turn_ends.append(len(ep.completion_ids) - 1)
            ep.turn_rewards.append(0.0)
            ep.cut = out.finish_reasons[k] == "length"  # still the model's action: the environment judges it
            ep.counts["truncated"] = max(ep.counts["truncated"], int(ep.cut))
            replies.append(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return replies

    def _step_all(self, stepping: list[tuple[Episode, str]], last_turn: bool) -> None:
        began = time.perf_counter()
        jobs = {i: (lambda ep=ep, reply=reply: ep.env.step(reply), self.step_timeout) for i, (ep, reply) in enumerate(stepping)}
        results = run_bounded(jobs, self.workers) if jobs else {}
        self._add_time("env_seconds", time.perf_counter() - began)
        for i, (ep, reply) in enumerate(stepping):
            self._apply(ep, reply, results[i], last_turn)

    def _apply(self, ep: Episode, reply: str, turn: Turn | object, last_turn: bool) -> None:
        """The environment's answer `turn` to the model's `reply`, applied to the episode."""
        if turn is TIMED_OUT or isinstance(turn, BaseException) or not isinstance(turn, Turn):
            self._warn_env_error(turn)
            ep.steps.append({"observation": ep.observation, "action": reply, "next_observation": ""})
            ep.end("env_errors")
            return
        ep.turn_rewards[-1] = float(turn.reward)
        ep.events += list(turn.events)
        for name in COUNTERS:
            ep.counts[name] += int(turn.info.get(name, 0))
        ep.steps.append({"observation": ep.observation, "action": reply, "next_observation": _text(turn.messages)})
        ep.observation = _text(turn.messages)
        assistant = {"role": "assistant", "content": reply}
        if turn.done:
            ep.messages.append(assistant)
            ep.counts["success"] = int(bool(turn.info.get("success", False)))
            ep.done = True
            return
        if last_turn:
            ep.messages.append(assistant)
            ep.end("max_turns_reached")
            return
        ids = self._observation_ids(ep, reply, turn.messages)
        ep.messages += [assistant, *turn.messages]
        ep.completion_ids += ids
        ep.logps += [0.0] * len(ids)
        ep.loss_mask += [0.0] * len(ids)

    def _observation_ids(self, ep: Episode, reply: str, observation: list[dict]) -> list[int]:
        """The tokens the chat template puts after the model's turn: the rest of its closing (its end-of-turn
        token, when generated, is already in the completion), the observation, the next generation prompt.
        The closing is read with a marker as the turn's content (a template may trim or rewrite the text)."""
        marker = "\x00posttrain-turn\x00"
        marked = render(self.tokenizer, ep.messages + [{"role": "assistant", "content": marker}], tools=ep.tools)
        answered = render(self.tokenizer, ep.messages + [{"role": "assistant", "content": reply}], tools=ep.tools)
        following = render(self.tokenizer, ep.messages + [{"role": "assistant", "content": reply}, *observation],
                           add_generation_prompt=True, tools=ep.tools)
        if marker not in marked or not following.startswith(answered):
            raise ConfigError("the chat template does not render a conversation as a prefix of its continuation (an "
                              "assistant turn is rewritten once more messages follow), so multi-turn token sequences "
                              "cannot be built from it; use a template that appends each message as it is")
        closing = marked[marked.index(marker) + len(marker):]
        eos = self.tokenizer.eos_token or ""
        generated_eos = ep.completion_ids and ep.completion_ids[-1] == self.tokenizer.eos_token_id
        if generated_eos and eos and closing.startswith(eos):
            closing = closing[len(eos):]
        return self._encode(closing + following[len(answered):])

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _add_time(self, key: str, seconds: float) -> None:
        with self._lock:
            self.timings[key] += seconds

    def _warn_env_error(self, result) -> None:
        """An environment that raises or hangs is a bug in it, not the model's doing: its episodes end (counted,
        agent/env_errors) and the first failure is shown once."""
        if self._warned:
            return
        self._warned = True
        what = f"did not answer within {self.step_timeout:g} s" if result is TIMED_OUT else \
            f"raised {type(result).__name__}: {result}" if isinstance(result, BaseException) else \
            f"returned {type(result).__name__}, not a Turn"
        print(f"posttrain: warning: an environment step {what}; its episode ended (counted as agent/env_errors)",
              file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------ the samples

    def _rollouts(self, episodes: list[Episode], rows: list[dict], group_size: int, seconds: float) -> Rollouts:
        for ep in episodes:  # a trajectory ends with the model's turn: the observations after it are not trained on
            while ep.loss_mask and ep.loss_mask[-1] == 0.0:
                for seq in (ep.completion_ids, ep.logps, ep.loss_mask):
                    seq.pop()
        texts = [self.tokenizer.decode(ep.completion_ids, skip_special_tokens=False) for ep in episodes]
        return Rollouts(
            prompt_ids=[ep.prompt_ids for ep in episodes], completion_ids=[ep.completion_ids for ep in episodes],
            old_logps=[ep.logps for ep in episodes], texts=texts,
            truncated=[ep.cut for ep in episodes], group=[ep.group for ep in episodes],
            group_size=group_size, seconds=seconds,
            extra={"completions": [ep.messages[ep.opened:] for ep in episodes],
                   "columns": {"events": [ep.events for ep in episodes], "trajectory": [ep.steps for ep in episodes],
                               "turns": [len(ep.turn_ends) for ep in episodes]},
                   "sample_extra": [{"loss_mask": ep.loss_mask, "turn_ends": ep.turn_ends, "turn_rewards": ep.turn_rewards,
                                     "episode": {"turns": len(ep.turn_ends), **ep.counts}} for ep in episodes]})


def _text(messages: list[dict]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def _schemas(tools) -> list[dict] | None:
    if not tools:
        return None
    from posttrain.agents.tools import tool_schema

    return [tool_schema(fn) if callable(fn) else fn for fn in tools]
