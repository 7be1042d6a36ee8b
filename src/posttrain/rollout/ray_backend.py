"""Rollouts from N Ray actors, behind the `RolloutBackend` protocol (generate with log-probs, sync weights).

    backend = RayBackend(policy, tokenizer, workers=2, placement="colocate")              # ray.init(): a local cluster
    backend = RayBackend(policy, tokenizer, workers=8, placement="disaggregate", address="10.0.0.1:6379")

Ray does the placement and the data movement; nothing here is a scheduler or an RPC of our own:

- placement: one placement group of `workers` bundles ({CPU: worker_cpus, GPU: worker_gpus} each).
  colocate packs them (STRICT_PACK) onto the learner's node, beside the trainer's processes (on GPUs
  give each a fraction, worker_gpus=0.2, to share the trainer's devices as OpenRLHF's hybrid engine
  does); disaggregate spreads them (SPREAD) over the cluster's nodes, bundles of their own.
- data: the learner's weights go into Ray's object store once per sync (`ray.put`), and every actor
  loads that one object (zero-copy on its node); prompts go out and samples come back as task
  arguments and results.

Each actor (`RolloutWorker`) builds its own copy of the policy from the learner's config (no files
needed on the other nodes; posttrain must be importable there) and samples with an engine: posttrain's
sampler (`LocalBackend`), or `engine="vllm"`, a `VLLMColocated` engine per actor (`model_path` must
exist on every node). `generate` cuts the prompts into contiguous shards, one per actor, with the
per-prompt seeds the one-process sampler would have drawn, and reassembles the samples in prompt
order: a prompt's samples depend only on its seed (generation/sampler.py), so N actors draw exactly
what one process draws.

Under torchrun every process owns its own actors (its own placement group) for its own prompts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import weakref

from posttrain.errors import ConfigError, UserError
from posttrain.generation import GenerationOutput, SamplingParams, prompt_seeds

RAY_HINT = "install it with `pip install 'posttrain[ray]'` (bash install.sh dev includes it), or drop ray=true"
PLACEMENTS = ("colocate", "disaggregate")
ENGINES = ("local", "vllm")


def require_ray():
    """The `ray` module, or a UserError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise UserError(f"ray=true needs Ray, which is not importable here ({error}); {RAY_HINT}") from None
    return ray


# ---------------------------------------------------------------------------------------- sharding


def shard_bounds(num_prompts: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) slices of the prompts, one per worker, sizes differing by at most one;
    empty slices left out (fewer prompts than workers)."""
    size, extra = divmod(num_prompts, workers)
    bounds, lo = [], 0
    for j in range(workers):
        hi = lo + size + (j < extra)
        if hi > lo:
            bounds.append((lo, hi))
        lo = hi
    return bounds


def request_seeds(params: SamplingParams, num_prompts: int) -> list[int]:
    """One seed per prompt, as posttrain's sampler takes them: `seeds`, or mixed from `seed` (or from a
    draw of torch's global generator, as the sampler draws it) and the prompt's index in the request."""
    if params.seeds is not None:
        if len(params.seeds) != num_prompts:
            raise ConfigError(f"sampling: {len(params.seeds)} seeds for {num_prompts} prompts; give one seed per prompt")
        return [int(s) for s in params.seeds]
    if params.seed is not None:
        base = params.seed
    else:
        import torch

        base = int(torch.randint(2**62, (1,)).item())
    return prompt_seeds(base, range(num_prompts))


def split_request(prompts: list[list[int]], params: SamplingParams, workers: int) -> list[tuple[int, list[list[int]], SamplingParams]]:
    """(offset, prompts, params) per non-empty shard; each shard's params carry its prompts' own seeds."""
    params.validate()
    seeds = request_seeds(params, len(prompts))
    return [(lo, prompts[lo:hi], dataclasses.replace(params, seed=None, seeds=seeds[lo:hi]))
            for lo, hi in shard_bounds(len(prompts), workers)]


def merge_outputs(parts: list[tuple[int, GenerationOutput]]) -> GenerationOutput:
    """The shards' outputs, in order, as one: each shard's prompt indices shifted by its offset."""
    merged = GenerationOutput([], [], [], [], [], [])
    for offset, out in parts:
        merged.prompt_index += [offset + i for i in out.prompt_index]
        merged.token_ids += out.token_ids
        merged.texts += out.texts
        merged.logprobs += out.logprobs
        merged.finish_reasons += out.finish_reasons
        merged.policy_logprobs += out.policy_logprobs
    return merged


# ---------------------------------------------------------------------------------------- the actor


def model_spec(policy, tokenizer) -> dict:
    """What a worker needs to build its copy of the policy: the (base) model's config, dtype and
    generation config, and the tokenizer. The weights come separately (`policy_weights`)."""
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    return {"config": base.config, "dtype": next(policy.parameters()).dtype,
            "generation_config": getattr(base, "generation_config", None), "tokenizer": tokenizer}


def build_model(spec: dict, device: str = "cpu", meta: bool = False):
    """A causal LM of the spec's architecture (on the meta device: shapes only, for an engine that
    holds its own weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = spec["config"]
    with torch.device("meta" if meta else device):
        model = AutoModelForCausalLM.from_config(config, dtype=spec["dtype"],
                                                 attn_implementation=getattr(config, "_attn_implementation", None))
    if spec["generation_config"] is not None:
        model.generation_config = spec["generation_config"]
    return model.eval().requires_grad_(False)


class RolloutWorker:
    """One rollout actor: a copy of the policy and an engine that samples from it. `ray.remote` is
    applied where the actors are made, so this stays a plain class (and testable without Ray)."""

    def __init__(self, spec: dict, engine: str = "local", engine_options: dict | None = None):
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = spec["tokenizer"]
        if engine == "vllm":  # the engine holds the weights; the model here only names dtype and eos ids
            from posttrain.rollout.vllm_backend import VLLMColocated

            self.model = build_model(spec, meta=True)
            self.engine = VLLMColocated(self.model, tokenizer, sync=False, **(engine_options or {}))
        else:
            from posttrain.rollout.engine import LocalBackend

            self.model = build_model(spec, self.device)
            self.engine = LocalBackend(self.model, tokenizer)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput:
        return self.engine.generate(prompts, params)

    def load_weights(self, weights: dict) -> int:
        """Load the learner's full state dict (HF names); returns how many tensors it read."""
        if hasattr(self.engine, "load_weights"):
            self.engine.load_weights(weights)
            return len(weights)
        import torch

        with torch.no_grad():
            result = self.model.load_state_dict({k: v.to(self.device) for k, v in weights.items()}, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(f"rollout worker: the learner's weights do not fit the worker's model: missing "
                               f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}")
        return len(weights)


# ---------------------------------------------------------------------------------------- the backend


def connect(ray, address: str | None, probe_seconds: float = 5.0) -> bool:
    """Join the cluster at `address` ("auto": the one `ray start` made on this node), or start a local
    one (None). True when this call started Ray in this process. A HOST:PORT that no one answers on
    fails in seconds with one line (Ray itself would retry for minutes)."""
    if ray.is_initialized():
        return False
    if address not in (None, "auto") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=probe_seconds).close()
        except (OSError, ValueError) as error:
            raise UserError(f"ray_address={address}: no Ray cluster answered there ({error}); start one with "
                            f"`ray start --head --port={port or 6379}` on that node, or leave ray_address unset for a local one") from None
    try:
        if address is None:
            ray.init(logging_level="ERROR", include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, logging_level="ERROR", log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        auth = "" if os.environ.get("RAY_AUTH_MODE") else ("; a cluster with token authentication (the default of `ray start` since "
                                                          "Ray 2.52) needs RAY_AUTH_MODE=token and its token here: RAY_AUTH_TOKEN=`ray get-auth-token` of the head node")
        raise UserError(f"ray_address={address}: could not join the Ray cluster ({str(error).splitlines()[0]}){auth}") from None
    return True


class RayBackend:
    """`workers` Ray actors that sample rollouts, placed by a placement group (see the module docstring)."""

    def __init__(self, policy, tokenizer, *, workers: int = 2, placement: str = "colocate", address: str | None = None,
                 worker_cpus: float = 1.0, worker_gpus: float = 0.0, timeout: float = 120.0, engine: str = "local",
                 engine_options: dict | None = None):
        if placement not in PLACEMENTS or engine not in ENGINES:
            raise ConfigError(f"ray backend: placement must be one of {PLACEMENTS} and engine one of {ENGINES}")
        ray = self.ray = require_ray()
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.policy, self.tokenizer = policy, tokenizer
        started = connect(ray, address)
        bundle = {"CPU": float(worker_cpus)} | ({"GPU": float(worker_gpus)} if worker_gpus else {})
        if placement == "colocate":  # node:<ip> is a resource only the learner's node has: the bundles go there
            bundle[f"node:{_this_node_ip(ray)}"] = 0.001
        self.group = placement_group([dict(bundle) for _ in range(workers)],
                                     strategy="STRICT_PACK" if placement == "colocate" else "SPREAD")
        weakref.finalize(self, _release, ray, remove_placement_group, self.group, started)
        try:
            ray.get(self.group.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise UserError(f"ray: {workers} rollout workers of {bundle} each ({placement}) did not fit the cluster within "
                            f"{timeout:g} s; it has {ray.available_resources()}: lower ray_workers / ray_worker_cpus / "
                            "ray_worker_gpus, add nodes, or raise ray_timeout") from None
        remote = ray.remote(RolloutWorker)
        spec = ray.put(model_spec(policy, tokenizer))
        self.actors = [remote.options(num_cpus=worker_cpus, num_gpus=worker_gpus, scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=self.group, placement_group_bundle_index=i)).remote(spec, engine, engine_options)
            for i in range(workers)]
        self.sync_weights()  # the actors start from random weights (or the checkpoint, for vLLM)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput:
        shards = split_request(prompts, params, len(self.actors))
        refs = [actor.generate.remote(part, shard_params) for actor, (_, part, shard_params) in zip(self.actors, shards)]
        return merge_outputs(list(zip([offset for offset, _, _ in shards], get_results(self.ray, refs))))

    def sync_weights(self) -> None:
        """The learner's full weights into the object store once; every actor loads that object.
        Collective under FSDP (every process gathers the full tensors)."""
        from posttrain.rollout.vllm_backend import policy_weights

        weights = {name: value.cpu() for name, value in policy_weights(self.policy).items()}
        ref = self.ray.put(weights)
        get_results(self.ray, [actor.load_weights.remote(ref) for actor in self.actors])
        del ref


def get_results(ray, refs: list) -> list:
    """ray.get, with an error raised in an actor re-raised as itself (its own one-line message)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        raise (cause if isinstance(cause, Exception) else error) from None


def _this_node_ip(ray) -> str:
    """The address Ray knows this process's node by (its `node:<ip>` resource)."""
    here = ray.get_runtime_context().get_node_id()
    return next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == here), ray.util.get_node_ip_address())


def _release(ray, remove_placement_group, group, started: bool) -> None:
    """Free the bundles (actors in them end with it); stop the local cluster this backend started."""
    with contextlib.suppress(Exception):  # at interpreter exit Ray may be half torn down already
        if ray.is_initialized():
            remove_placement_group(group)
            if started:
                ray.shutdown()
