"""The reference policy π_ref of DPO, KTO and their relatives: where its log-probs come from.

Three sources, chosen by `ref_model`:

- `copy`: a frozen copy of the starting policy, made once before training (eval mode, no grads).
  Under LoRA no copy is made: the reference is the same model with its adapters disabled (the
  base weights never change), so there is no second model in memory. A LoRA run that continues the
  adapter of `model=ADAPTER_DIR` is the exception: its π_ref is base + that adapter as loaded, a copy.
- `precompute`: the starting policy's log-probs of every training sequence are computed once
  before the first step, cached in `output_dir/reference_logps.pt`, and read from the batch;
  no reference forward pass runs during training, and a resumed run reads the cache.
- `none`: reference-free losses (SimPO, ORPO, CPO) need no reference at all.

With `ref_model_path` (DPO) the reference is another model loaded from that path instead of the
starting policy, for `copy` and `precompute` alike: iterative DPO can keep the SFT model as π_ref in
every round instead of refreshing it to the previous round's policy.

Under torchrun (world size N > 1) a frozen reference is sharded with FSDP2 exactly as the loop shards
the policy (models.sharding), forward-only and with no optimizer: each process holds 1/N of it, not a
full copy, and gathers one block's weights at a time while scoring.

`ReferenceSync` moves a frozen reference during training (TR-DPO's soft and hard updates, a periodic
or EMA reference for GRPO / PPO); both the offline and the online stages use it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

import posttrain.ranks as ranks
from posttrain.data.collate import to_device
from posttrain.errors import ConfigError
from posttrain.models.loading import continues_adapter, is_peft
from posttrain.models.logprobs import SequenceLogprobs, sequence_logprobs
from posttrain.models.sharding import is_sharded, reshard, shard_model

REFERENCE_SOURCES = ("copy", "precompute", "none")
CACHE_NAME = "reference_logps.pt"


def base_is_reference(model) -> bool:
    """Under LoRA the adapter-disabled base is π_ref, unless the run continues an adapter it loaded
    (model=ADAPTER_DIR with lora=true): then π_ref is base + that adapter as it was at the start."""
    return is_peft(model) and not continues_adapter(model)


@contextmanager
def as_reference(model):
    """`model` as the reference scores: in eval mode (no dropout) and, under LoRA, with its adapters
    disabled (the base weights never change); its training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter() if base_is_reference(model) else nullcontext():
            yield model
    finally:
        model.train(was_training)


def load_reference(path: str, policy):
    """A frozen reference loaded from `path`, the ref_model_path option (e.g. online DPO keeping the SFT
    model as π_ref every round)."""
    from posttrain.models.loading import DTYPES, WEIGHT_DTYPES, load_causal_lm

    dtype = next((name for name in WEIGHT_DTYPES if DTYPES[name] == next(policy.parameters()).dtype), "float32")
    model = load_causal_lm(path, dtype, option="ref_model_path").eval()
    model.requires_grad_(False)
    return model


class ReferencePolicy:
    """The reference for a batch: a frozen copy, the adapter-disabled base, or a model from `path`.
    `scoring(policy, device)` gives the model to run; any log-prob layout (sequence sums here,
    per-token in online.experience) is computed on it. Made in `Algorithm.setup`, after the process
    group is joined: under torchrun the frozen model is sharded there, on the device collectives use
    (the rank's GPU under NCCL, the CPU under gloo), which is the device the loop trains on."""

    def __init__(self, policy, path: str | None = None):
        self.use_adapters_off = base_is_reference(policy) and path is None
        self.frozen = None
        if path is not None:
            self.frozen = load_reference(path, policy)
        elif not self.use_adapters_off:
            self.frozen = copy.deepcopy(policy).eval()
            self.frozen.requires_grad_(False)
        if self.frozen is not None and ranks.world_size() > 1:
            shard_model(self.frozen, ranks.reduce_device())  # 1/N of the weights per process, as the policy

    @contextmanager
    def scoring(self, policy, device):
        """The model that computes the reference's log-probs of a batch on `device`: the frozen one
        (moved there, following the policy), or the policy itself `as_reference`."""
        if self.frozen is None:
            with as_reference(policy) as model:
                yield model
            return
        if is_sharded(self.frozen):
            try:
                yield self.frozen
            finally:
                reshard(self.frozen)
            return
        if next(self.frozen.parameters()).device != device:
            self.frozen.to(device)
        yield self.frozen

    @torch.no_grad()
    def sequence_logprobs(self, policy, input_ids, target_mask=None, **inputs) -> SequenceLogprobs:
        with self.scoring(policy, input_ids.device) as model:
            return sequence_logprobs(model, input_ids, target_mask, **inputs)


class ReferenceSync:
    """Updates of a frozen reference every `steps` optimizer steps (TR-DPO, Gorbatovski et al. 2024; TRL's
    SyncRefModelCallback, whose arithmetic this is):

        soft:  θ_ref ← α θ + (1 − α) θ_ref            hard:  θ_ref ← θ

    The seeds list the reference variants "slowly updated" (Stiennon, S3 L1598), EMA-updated (Xu et al.,
    S3 L3520-3526) and step-wise (sDPO, S3 L3399-3410); soft every step is the EMA reference. The
    reference's weights are in the algorithm's state once they have moved, so a resumed run scores with
    exactly the reference the uninterrupted run had."""

    def __init__(self, reference: ReferencePolicy, policy, mode: str, steps: int, alpha: float):
        if reference.frozen is None:
            raise ConfigError(f"ref_sync={mode} needs a reference model of its own; under LoRA the reference is the adapter-disabled base")
        self.model, self.steps, self.alpha, self.syncs = reference.frozen, steps, 1.0 if mode == "hard" else alpha, 0
        ours, theirs = _shapes(self.model), _shapes(policy)
        if ours != theirs:
            raise ConfigError("ref_sync mixes the policy's weights into the reference, but ref_model_path has other parameters "
                              f"({len(ours)} tensors against the policy's {len(theirs)}); use a reference of the policy's architecture")

    @torch.no_grad()
    def after_step(self, policy, step: int) -> dict:
        """Update the reference when `step` is a multiple of τ; returns {"ref_syncs": updates so far} to log.
        A sharded reference mixes in the policy's shards (both are sharded alike: models.sharding); an
        unsharded one the policy's full weights (collective under FSDP: each process gathers them)."""
        if step % self.steps == 0:
            reshard(self.model)
            weights = dict(policy.named_parameters())
            for name, target in self.model.named_parameters():
                source = weights[name].detach()
                if is_sharded(self.model):
                    source = source.to(target.dtype)
                else:
                    source = ranks.full_tensor(source).to(target.device, target.dtype)
                if self.alpha == 1.0:
                    target.copy_(source)
                else:
                    target.mul_(1.0 - self.alpha).add_(source, alpha=self.alpha)
            self.syncs += 1
        return {"ref_syncs": self.syncs}

    def state_dict(self) -> dict:
        """The full weights once they have moved (collective when sharded: every process calls it)."""
        if not self.syncs:  # still the starting weights, which a resumed run loads anyway
            return {"syncs": 0}
        reshard(self.model)
        weights = {k: ranks.full_tensor(v.detach()).cpu().clone() for k, v in self.model.state_dict().items()}
        return {"syncs": self.syncs, "weights": weights}

    def load_state_dict(self, state: dict) -> None:
        self.syncs = int(state.get("syncs", 0))
        if "weights" not in state:
            return
        if is_sharded(self.model):  # each process keeps its shard of the full weights (on a copy: the call puts DTensors in the dict)
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.model, dict(state["weights"]), options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(state["weights"])


def _shapes(model) -> dict:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def cache_key(model_name: str, examples: list[dict], fields: tuple[str, ...]) -> str:
    """A fingerprint of the starting model and the exact token ids, so a stale cache is never read."""
    digest = hashlib.sha256(model_name.encode())
    for ex in examples:
        digest.update(json.dumps([ex[f] for f in fields], separators=(",", ":")).encode())
    return digest.hexdigest()


@torch.no_grad()
def precompute(policy, examples: list[dict], collate, score, batch_size: int, cache_path: Path, key: str,
               device, write_cache: bool = True) -> list[dict]:
    """Fill each example's reference log-probs, from `cache_path` when its key matches, else by
    running `score(model, batch) -> {field: tensor(batch)}` over the examples on `device` and caching
    the result.
    Returns the examples with the scored fields added (the same dicts, updated in place)."""
    cached = torch.load(cache_path, weights_only=True) if cache_path.exists() else None
    if cached is None or cached.get("key") != key:
        columns: dict[str, list[float]] = {}
        with as_reference(policy):
            for start in range(0, len(examples), batch_size):
                batch = to_device(collate(examples[start:start + batch_size]), device)
                for name, values in score(policy, batch).items():
                    columns.setdefault(name, []).extend(values.float().cpu().tolist())
        cached = {"key": key, "columns": {k: torch.tensor(v, dtype=torch.float64) for k, v in columns.items()}}
        if write_cache:  # one writer (rank 0); written to a temp file, then renamed
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(".tmp")
            torch.save(cached, tmp)
            tmp.replace(cache_path)
    for name, values in cached["columns"].items():
        for ex, value in zip(examples, values.tolist()):
            ex[name] = value
    return examples
