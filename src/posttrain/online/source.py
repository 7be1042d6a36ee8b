"""The online step source: generation rounds of experience (online.maker) -> the optimizer steps that use them.

Each generation round takes the next `prompts_per_step` prompts (a seeded order, reshuffled each
epoch; each process takes its share), samples `num_generations` completions of each with the
current policy, scores them, computes advantages, and plans `num_iterations` (μ) passes over them,
each split into `num_minibatches` optimizer steps of micro-batches of `batch_size` samples. The
plan is served one optimizer step per `next_step`; the old log-probs stay frozen across it.

Dynamic sampling (DAPO) drops groups whose rewards are all equal (they carry no signal) and
samples more prompts until the round is full, at most `max_sampling_rounds` times; if the cap is
hit, the round is completed with dropped groups (zero advantage), so every step has the same shape.
Under torchrun the decisions are global: every process asks for as many prompts as the emptiest one
needs (so the shared prompt order stays in step), and the logged numbers cover every process.

Each round's reward values (every function's, monitors' too, and the trained reward) are gathered from
every process once; the per-function means, the reward-hacking diagnostics (online.reward_monitor) and
the timeout counts come from them, so every process logs and decides the same. A reward or monitor
function whose calls timed out `MAX_TIMEOUTS_IN_A_ROW` times in a row on any process stops the run
(every process at once) with one line.

A round is made in two halves: `_collect` samples and scores it (with async_rollout, on the producer's
thread from a snapshot of the weights, online.async_rollout), and `_finish_round` computes reference /
old log-probs, advantages and the plan with the current policy on the trainer's thread. The prompt order
and filter come from online.curriculum.
"""

from __future__ import annotations

import math
import sys
import time

import torch

import posttrain.ranks as ranks
from posttrain.data.steps import StepSource
from posttrain.data.tokenize import tokenize_prompt
from posttrain.errors import ConfigError, DataError, UserError
from posttrain.generation import SamplingParams, prompt_seeds
from posttrain.online.async_rollout import RolloutProducer
from posttrain.online.curriculum import PromptCurriculum
from posttrain.online.experience import Sample
from posttrain.online.reward_monitor import RewardMonitor
from posttrain.online.trl_logging import length_metrics, logged_metrics, take_logged, with_trl_names, write_completions
from posttrain.rewards.functions import MAX_TIMEOUTS_IN_A_ROW, declared_range
from posttrain.online.round_stats import all_equal, gathered, mean, std
from posttrain.rewards.trl_keywords import trainer_state


class OnlineSource(StepSource):
    def __init__(self, algorithm, rows: list[dict], tokenizer, config):
        self.algorithm, self.rows, self.tokenizer, self.config = algorithm, rows, tokenizer, config
        self.plan: list[list[list[int]]] = []  # optimizer steps -> micro-batches -> sample indices
        self.samples: list[Sample] = []
        self.cursor = 0  # prompts consumed (global order position)
        self.round = 0
        self._metrics: dict[str, float] = {}
        self._unlogged: tuple[int, list[Sample]] | None = None  # (step, samples) of a round not yet in completions()
        self._prompt_cache: dict[int, list[int] | None] = {}
        self._last_served: float | None = None
        self._reward_monitor: RewardMonitor | None = None  # built on the first round (the reward functions are known then)
        self._reward_monitor_state: dict = {}
        self.curriculum = PromptCurriculum(rows, config)
        self._order: tuple[int, list[int]] = (-1, [])  # (epoch, its prompt order)
        self._producer: RolloutProducer | None = None  # async_rollout: built on the first round (the policy exists then)
        self._producer_state: dict | None = None

    # ------------------------------------------------------------------ StepSource

    def next_step(self, step: int) -> list[dict]:
        now = time.perf_counter()
        metrics = {}
        if self._last_served is not None:
            metrics["time/train_seconds"] = now - self._last_served  # the previous step's training
        if not self.plan:
            metrics.update(self._make_experience(step + 1))
        step_plan = self.plan.pop(0)
        if self.config.async_rollout:
            # steps between the weights that sampled each of this step's samples and the ones it trains (`step` taken)
            staleness = [step - self.samples[i].extra["policy_version"] for micro in step_plan for i in micro]
            metrics["async/staleness_mean"], metrics["async/staleness_max"] = mean(staleness), float(max(staleness))
            self._async_producer().start_if_due(step)  # the next round, on its thread, while this step trains
        self._metrics = metrics
        batches = [self.algorithm.collate([self.samples[i] for i in micro]) for micro in step_plan]
        self._last_served = time.perf_counter()
        return batches

    def _async_producer(self) -> RolloutProducer:
        if self._producer is None:
            self._producer = RolloutProducer(self.algorithm.experience, self.tokenizer, self.config,
                                             lambda version: self._collect(version, self._producer.maker))
            if self._producer_state is not None:
                self._producer.load_state_dict(self._producer_state, self._decode_round)
        return self._producer

    def metrics(self) -> dict[str, float]:
        return self._metrics

    def completions(self) -> list[dict]:
        """This process's samples of the newest round not handed out yet, one row each (the trackers' table)."""
        if self._unlogged is None:
            return []
        (step, samples), self._unlogged = self._unlogged, None
        def prompt(s: Sample) -> str:  # as the dataset has it; a conversation as "role: content" lines
            turns = self.rows[s.extra["prompt_index"]]["prompt"]
            return turns if isinstance(turns, str) else "\n".join(f"{t['role']}: {t['content']}" for t in turns)

        return [{"step": step, "prompt": prompt(s), "completion": s.extra.get("text", ""), "reward": s.reward,
                 "advantage": s.advantage if isinstance(s.advantage, float) else None} for s in samples]  # PPO's per token: None

    def state_dict(self) -> dict:
        monitor = self._reward_monitor.state_dict() if self._reward_monitor is not None else self._reward_monitor_state
        state = {}
        if self.config.async_rollout:  # first: waits for a round being sampled ahead (it moves the cursor and the curriculum)
            state["async"] = self._producer.state_dict(self._encode_round) if self._producer is not None else self._producer_state
        return state | {"plan": self.plan, "samples": [s.__dict__ for s in self.samples], "cursor": self.cursor, "round": self.round,
                        "reward_monitor": monitor, "curriculum": self.curriculum.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.plan, self.cursor, self.round = state["plan"], state["cursor"], state["round"]
        self.samples = [Sample(**s) for s in state["samples"]]
        self._reward_monitor_state = state.get("reward_monitor", {})  # absent in checkpoints from before it existed
        if self._reward_monitor is not None:
            self._reward_monitor.load_state_dict(self._reward_monitor_state)
        self.curriculum.load_state_dict(state.get("curriculum", {}))
        self._producer_state = state.get("async")

    @staticmethod
    def _encode_round(collected: dict) -> dict:
        return collected | {"samples": [s.__dict__ for s in collected["samples"]]}

    @staticmethod
    def _decode_round(state: dict) -> dict:
        return state | {"samples": [Sample(**s) for s in state["samples"]]}

    # ------------------------------------------------------------------ one generation round

    def _next_prompts(self, count: int, stats: dict) -> list[int]:
        """The next `count` prompt indices of this process, from the per-epoch order (online.curriculum),
        skipping the prompts the curriculum filters (counted in stats["filtered_prompts"])."""
        world, rank = ranks.world_size(), ranks.rank()
        out = []
        while len(out) < count:
            epoch, position = divmod(self.cursor, len(self.rows))
            if self._order[0] != epoch:
                self._order = (epoch, self.curriculum.order(epoch))
            take = []
            for index in self._order[1][position:]:
                if len(take) == (count - len(out)) * world:
                    break
                self.cursor += 1
                if self.curriculum.keeps(index, self.config.prompts_per_step * world):
                    take.append(index)
                else:
                    stats["filtered_prompts"] += 1
            out += take[rank::world]
        return out[:count]

    def check_some_prompt_fits(self) -> None:
        """Before any work: a DataError when no prompt leaves room to generate (every one would be skipped)."""
        if any(self._prompt_ids(i) is not None for i in range(len(self.rows))):
            return
        shortest = min(len(tokenize_prompt(self.tokenizer, row["prompt"])) for row in self.rows)
        raise DataError(self._too_long_message(f"every prompt is too long to generate from (the shortest of {len(self.rows)} "
                                               f"has {shortest} tokens)"))

    def _too_long_message(self, problem: str) -> str:
        cfg = self.config
        return (f"{cfg.dataset}: {problem}: a prompt may have at most max_length - max_new_tokens = "
                f"{cfg.max_length - cfg.max_new_tokens} tokens; raise max_length, lower max_new_tokens or shorten the prompts")

    def _prompt_ids(self, index: int) -> list[int] | None:
        """Tokenized prompt, or None when it leaves no room to generate (counted, skipped)."""
        if index not in self._prompt_cache:
            row = self.rows[index]
            ids = tokenize_prompt(self.tokenizer, row["prompt"], tools=row.get("tools"), source=self.config.dataset, row_index=index)
            fits = len(ids) + self.config.max_new_tokens <= self.config.max_length
            self._prompt_cache[index] = ids if fits else None
        return self._prompt_cache[index]

    def _make_experience(self, step: int) -> dict[str, float]:
        """One round of experience (sampled now, or ahead by the async producer) made ready to train on;
        its metrics (logged at optimizer step `step`)."""
        began = time.perf_counter()
        version = step - 1  # optimizer steps taken: the policy that takes step `step`
        synced = 0.0
        if self.config.async_rollout:
            collected = self._async_producer().take(version)
        else:
            self.algorithm.experience.backend.sync_weights()  # an engine with its own copy of the weights samples from the current policy
            synced = time.perf_counter() - began
            collected = self._collect(version, self.algorithm.experience)
        waited = time.perf_counter() - began
        metrics = self._finish_round(step, collected)
        metrics["time/experience_seconds"] = time.perf_counter() - began
        if getattr(self.config, "rollout_backend", "local") != "local" or getattr(self.config, "ray", False):
            metrics["time/weight_sync_seconds"] = synced
        if self.config.async_rollout:
            metrics["time/rollout_wait_seconds"] = waited  # the trainer's wait for its round (all of its sampling when synchronous)
        return metrics

    def _collect(self, version: int, maker) -> dict:
        """Sample and score one round with `maker` (policy `version`): its samples, not yet finished, and
        what its metrics need. Touches only the prompt order, the curriculum and the round counter, so it
        may run on the async producer's thread while the trainer trains."""
        cfg = self.config
        began = time.perf_counter()
        stats = {"prompts_too_long": 0, "dropped_groups": 0, "sampling_rounds": 0, "filtered_prompts": 0}
        kept: list[list[Sample]] = []
        spare: list[list[Sample]] = []
        rollout_seconds, reward_seconds, completion_tokens = 0.0, 0.0, 0
        reward_log: dict[str, list] = {"rewards": {}, "monitors": {}, "total": []}  # per sample, None kept
        seen: list[Sample] = []
        pass_rates: list[float] = []
        while stats["sampling_rounds"] < cfg.max_sampling_rounds:
            # every process asks for the same number of prompts, so the global order stays in step:
            # the round goes on while any process still lacks groups (a decision over all processes)
            want = int(max(ranks.all_gather_object(cfg.prompts_per_step - len(kept))))
            if want <= 0:
                break
            stats["sampling_rounds"] += 1
            indices = []
            for i in self._next_prompts(want, stats):
                if self._prompt_ids(i) is None:
                    stats["prompts_too_long"] += 1
                else:
                    indices.append(i)
            seed = cfg.seed * 1_000_003 + self.round
            self.round += 1
            if not indices or len(kept) >= cfg.prompts_per_step:
                continue
            # seeded by the round and each prompt's row, never its rank or batch-mates: N processes draw what one draws
            params = SamplingParams(**cfg.sampling_kwargs(seeds=prompt_seeds(seed, indices)))
            if hasattr(maker.rewards, "trainer_state"):  # TRL's `trainer_state` keyword: the policy `version` samples
                maker.rewards.trainer_state = trainer_state(version, cfg.max_steps, self.cursor / len(self.rows),
                                                            logging_steps=cfg.logging_steps, save_steps=cfg.save_steps)
            scored = maker.sample([self._prompt_ids(i) for i in indices], [self.rows[i] for i in indices], params)
            rollout_seconds += scored.rollout_seconds
            reward_seconds += scored.reward_seconds
            completion_tokens += scored.completion_tokens
            for name, values in scored.rewards.per_function.items():
                reward_log["rewards"].setdefault(name, []).extend(values)
            for name, values in scored.rewards.monitors.items():
                reward_log["monitors"].setdefault(name, []).extend(values)
            reward_log["total"].extend(scored.rewards.total)
            # every process's groups update the pass rates, so every process filters alike
            assert len(scored.groups) == len(indices)  # one group per prompt, in the prompts' order
            take_logged(maker.rewards, reward_log, [self.rows[i]["prompt"] for i, g in zip(indices, scored.groups) for _ in g],
                        [s for g in scored.groups for s in g])
            for i, group in zip(indices, scored.groups):
                for s in group:
                    s.extra["prompt_index"] = i
            for index, group_rewards in gathered(list(zip(indices, self._pass_values(scored)))):
                rate = self.curriculum.record(index, group_rewards)
                if rate is not None:
                    pass_rates.append(rate)
            for group in scored.groups:
                seen += group
                usable = [s.reward for s in group if s.reward is not None]
                if cfg.dynamic_sampling and (len(usable) < 2 or max(usable) - min(usable) < 1e-12):
                    stats["dropped_groups"] += 1
                    spare.append(group)
                else:
                    kept.append(group)
        filled = 0
        while len(kept) < cfg.prompts_per_step and spare:  # the cap was hit: fill with signal-free groups
            kept.append(spare.pop(0))
            filled += 1
        samples = [s for group in kept[:cfg.prompts_per_step] for s in group]
        if not samples:
            raise DataError(self._too_long_message(f"all {stats['prompts_too_long']} prompts drawn for generation round "
                                                   f"{self.round} are too long to generate from"))
        for s in samples:
            s.extra["policy_version"] = version
        return {"samples": samples, "round": self.round, "stats": stats, "filled": filled, "reward_log": reward_log,
                "lengths": [len(s.completion_ids) for s in seen],
                "terminated": [len(s.completion_ids) for s in seen if not s.truncated], "truncated": sum(s.truncated for s in seen),
                "empty": sum(not s.extra.get("text", "").strip() for s in seen),
                "flat_groups": [float(all_equal([s.reward for s in g if s.reward is not None])) for g in kept],
                "pass_rates": pass_rates, "filtered": len(self.curriculum.filtered),
                "rollout_seconds": rollout_seconds, "reward_seconds": reward_seconds,
                "completion_tokens": completion_tokens, "collect_seconds": time.perf_counter() - began}

    def _pass_values(self, scored) -> list[list[float | None]]:
        """Per group, the values the curriculum's pass rate reads: pass_function's, or the total rewards."""
        name = self.config.pass_function
        if name is None:
            return [[s.reward for s in g] for g in scored.groups]
        if name not in scored.rewards.per_function:
            raise ConfigError(f"pass_function={name} is not one of the reward functions ({', '.join(scored.rewards.per_function)}); "
                              f"name one of them or unset it")
        values, at = scored.rewards.per_function[name], 0  # per sample, in the groups' (group-major) order
        out = []
        for group in scored.groups:
            out.append(values[at:at + len(group)])
            at += len(group)
        return out

    def _finish_round(self, step: int, collected: dict) -> dict[str, float]:
        """Reference / old log-probs and advantages of a collected round with the current policy (the
        trainer's thread); the round becomes the plan of the next optimizer steps; its metrics."""
        maker, samples, stats = self.algorithm.experience, collected["samples"], collected["stats"]
        reward_metrics = self._reward_metrics(step, collected["reward_log"])  # may stop the run (timeouts): before the reference forward
        t0 = time.perf_counter()
        adv_stats = maker.finish(samples)
        finish_seconds = time.perf_counter() - t0
        self.samples = samples
        self._unlogged = (step, samples)  # for completions()
        self.plan = self._plan(len(samples), collected["round"])
        # logged numbers cover every process's samples, as one process with the whole round would log them
        rewards = gathered([s.reward for s in samples if s.reward is not None])
        lengths = gathered(collected["lengths"])
        flat_groups = gathered(collected["flat_groups"])
        counts = ranks.all_reduce_sum([collected["truncated"], collected["empty"], stats["dropped_groups"], collected["filled"],
                                       sum(not s.trained for s in samples), stats["prompts_too_long"]])
        truncated, empty, dropped, filled, masked, too_long = counts
        rollout_seconds = collected["rollout_seconds"]
        metrics = {
            "reward/mean": mean(rewards), "reward/std": std(rewards),
            "completion/mean_length": mean(lengths), "completion/max_length": float(max(lengths, default=0)),
            "completion/truncation_rate": truncated / max(1, len(lengths)),
            "completion/empty": empty,
            "groups/zero_std_fraction": mean(flat_groups),
            "groups/dropped": dropped, "groups/filled_after_cap": filled,
            "samples/masked": masked, "prompts/too_long": too_long, "sampling_rounds": float(stats["sampling_rounds"]),
            "time/rollout_seconds": rollout_seconds, "time/reward_seconds": collected["reward_seconds"],
            "time/advantage_seconds": finish_seconds,
            "rollout/tokens_per_second": collected["completion_tokens"] / max(rollout_seconds, 1e-9),
            **length_metrics(lengths, gathered(collected["terminated"])),
            **adv_stats,
            **reward_metrics,
        }
        if self.config.prompt_filter != "off" or self.config.difficulty_column is not None:
            metrics |= {"curriculum/dropped": float(stats["filtered_prompts"]), "curriculum/filtered": float(collected["filtered"]),
                        "curriculum/pass_rate_mean": mean(collected["pass_rates"])}
            if self.config.difficulty_column is not None:  # of the round's prompts
                column = self.config.difficulty_column
                metrics["curriculum/difficulty_mean"] = mean(gathered(
                    [float(self.rows[s.extra["prompt_index"]][column]) for s in samples[::self.config.num_generations]]))  # one per group
        return with_trl_names(metrics)

    def _reward_metrics(self, step: int, log: dict) -> dict[str, float]:
        """Per reward / monitor function: mean, std, the reward-hacking diagnostics and timeouts, over
        every process's samples of the round; stops the run on a streak of timeouts."""
        rewards = self.algorithm.experience.rewards
        log = dict(log, timeouts=rewards.pop_timeouts(), streaks=dict(rewards.timeout_streaks))
        parts = ranks.all_gather_object(log)  # one collective for all of it; rank order
        merged = {}
        for kind in ("rewards", "monitors"):
            names = dict.fromkeys(n for p in parts for n in p[kind])  # every process's: one that sampled nothing has none
            merged[kind] = {name: [v for p in parts for v in p[kind].get(name, [])] for name in names}
        total = [v for p in parts for v in p["total"]]
        for kind, name in parts[0]["streaks"]:
            worst = max(p["streaks"].get((kind, name), 0) for p in parts)
            if worst >= MAX_TIMEOUTS_IN_A_ROW:
                raise UserError(f"{kind} function '{name}' timed out on {worst} calls in a row (reward_timeout="
                                f"{rewards.timeout:g} s each); make it faster or fix what it waits on, or raise reward_timeout")
        metrics = {}
        for kind, prefix in (("rewards", "reward"), ("monitors", "monitor")):
            for name, values in merged[kind].items():
                present = [v for v in values if v is not None]
                metrics[f"{prefix}/{name}/mean"], metrics[f"{prefix}/{name}/std"] = mean(present), std(present)
        if rewards.timeout is not None:
            for kind, name in parts[0]["timeouts"]:
                metrics[f"{kind}/{name}/timeouts"] = float(sum(p["timeouts"].get((kind, name), 0) for p in parts))
        if self._reward_monitor is None:
            self._reward_monitor = RewardMonitor({n: declared_range(f) for n, f in rewards.functions.items()},
                                                 {n: declared_range(f) for n, f in rewards.monitors.items()}, rewards.total_range())
            self._reward_monitor.load_state_dict(self._reward_monitor_state)
        metrics |= logged_metrics(parts)  # reward functions' log_metric values, under their own names
        write_completions(self.config.output_dir, step, parts)
        diagnostics, jumps = self._reward_monitor.update(step, merged["rewards"], merged["monitors"], total)
        if ranks.is_main():
            for jump in jumps:
                print(jump.line(), file=sys.stderr, flush=True)
        return metrics | diagnostics

    def _plan(self, count: int, round_: int) -> list[list[list[int]]]:
        """μ passes, each over num_minibatches optimizer steps of micro-batches. A minibatch is a fixed
        contiguous part of this process's samples (its share of a contiguous run of the shuffled global
        prompt order), and each pass visits the minibatches in a seeded order every process shares, so N
        processes take exactly the steps of one process holding the whole round."""
        cfg = self.config
        plan = []
        g = torch.Generator().manual_seed(cfg.seed * 7919 + round_)
        group = cfg.num_generations if getattr(self.algorithm, "whole_groups", False) else 1  # a pair loss reads a prompt's samples together
        per_step = math.ceil(count / group / cfg.num_minibatches) * group
        size = math.ceil(cfg.batch_size / group) * group
        parts = [list(range(m * per_step, min(count, (m + 1) * per_step))) for m in range(cfg.num_minibatches)]
        for _ in range(cfg.num_iterations):
            order = torch.randperm(cfg.num_minibatches, generator=g).tolist() if cfg.num_minibatches > 1 else [0]
            for m in order:
                plan.append([parts[m][k:k + size] for k in range(0, len(parts[m]), size)])
        return plan
