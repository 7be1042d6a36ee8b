"""Asynchronous rollouts (AsyncRolloutOptions; SEED_NOTES 5.3, Llama 4's decoupled rollout and training):
the next generation round is sampled on a thread, from a snapshot of the weights, while the trainer
takes the optimizer steps of this one.

Versions count optimizer steps: the policy that takes step s + 1 is version s. Round r is trained
by steps r·K + 1 ... (r + 1)·K (K = num_iterations × num_minibatches), so a round sampled from version v
is `r·K − v` steps stale at its first step. The producer snapshots the weights for round r (and
starts) at the first step whose version v satisfies r·K − v <= max_staleness; with max_staleness = 0
that is after round r − 1's last step, and the run is the synchronous one. At most one round is
sampled ahead. When it starts is a function of the step alone, never of timing, so a run is
reproducible and resumes exactly (a round sampled ahead is saved with the checkpoint).

Each sample carries the version that sampled it (`extra["policy_version"]`); its log-probs are the
sampler's, so the loss's ratio is to the behaviour policy (PPO's clipped off-policy correction), or
with tis_cap the trainer's log-probs at training time become the old ones and each token is weighted
by min(π_old / π_sampler, tis_cap) (decoupled PPO; online.maker).

On CPU, while the sampling thread runs, torch's intra-op threads are split between it and the trainer
(half each; the count is per thread), so generation and training do not oversubscribe the cores.
"""

from __future__ import annotations

import copy
import threading

import torch

from posttrain.errors import UserError
from posttrain.rollout import LocalBackend


class RolloutProducer:
    """Runs `collect()` (one round: sample + score; returns its result) for the source, ahead of time
    when the staleness bound allows. `collect` samples through `self.maker`, whose backend is the snapshot."""

    def __init__(self, maker, tokenizer, config, collect):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            raise UserError("async_rollout runs on one process (its sampling thread would interleave the processes' "
                            "collectives); run without torchrun or set async_rollout=false")
        self.config, self.collect = config, collect
        policy = maker.policy
        # requires_grad stays as the policy's: torch picks other (equally right) kernels for frozen weights, and
        # the snapshot must sample bit for bit what the policy would (max_staleness=0 is the synchronous run)
        replica = copy.deepcopy(policy).eval()
        self.backend = LocalBackend(policy, tokenizer, replica)  # sync_weights() = take a snapshot
        self.maker = copy.copy(maker)  # the same rewards and estimator, sampling from the snapshot
        self.maker.backend = self.backend
        self.steps_per_round = config.num_iterations * config.num_minibatches
        self.next_round = 0  # index of the next round to sample
        self._thread: threading.Thread | None = None
        self._result: dict = {}
        self._split_threads = next(policy.parameters()).device.type == "cpu"
        self._threads = torch.get_num_threads()

    def take(self, version: int):
        """The round the trainer needs now (at `version`): the one sampled ahead, or sampled now."""
        if self._thread is None and "round" not in self._result:
            self.start(version, wait=True)
        return self._join()

    def start_if_due(self, version: int) -> None:
        """Snapshot the weights and start sampling the next round once the staleness bound allows it."""
        first_step = self.next_round * self.steps_per_round  # the version that takes the round's first step
        due = version >= first_step - self.config.max_staleness and first_step < self.config.max_steps
        if due and self._thread is None and "round" not in self._result:
            self.start(version)

    def start(self, version: int, wait: bool = False) -> None:
        self.backend.sync_weights()
        self.next_round += 1

        share = max(1, self._threads // 2) if self._split_threads and not wait else self._threads

        def run():
            if share != torch.get_num_threads():
                torch.set_num_threads(share)  # per thread: the sampler's share of the cores
            try:
                self._result["round"] = self.collect(version)
            except BaseException as error:  # re-raised in the trainer's thread
                self._result["error"] = error

        if wait:
            run()
            return
        torch.set_num_threads(share)  # the trainer's share while the sampler runs
        self._thread = threading.Thread(target=run, name="posttrain-rollout", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            torch.set_num_threads(self._threads)

    def _join(self):
        self._wait()
        if "error" in self._result:
            raise self._result.pop("error")
        return self._result.pop("round")

    def state_dict(self, encode) -> dict:
        """The round sampled ahead, if any (waits for it), encoded by `encode`."""
        self._wait()
        if "error" in self._result:
            raise self._result.pop("error")
        ahead = self._result.get("round")
        return {"next_round": self.next_round, "ahead": encode(ahead) if ahead is not None else None}

    def load_state_dict(self, state: dict, decode) -> None:
        self.next_round = state["next_round"]
        self._result = {"round": decode(state["ahead"])} if state["ahead"] is not None else {}
