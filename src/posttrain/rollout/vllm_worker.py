"""Loaded into a `vllm serve` process (`--worker-extension-cls posttrain.rollout.vllm_worker.WeightFileLoader`):
gives each vLLM worker a method the trainer calls through the server's `/collective_rpc` route
(VLLM_SERVER_DEV_MODE=1) to load the policy's weights from a safetensors file it wrote. The route
passes only strings, so the weights travel as a file on a folder both sides see (the same machine,
or a shared filesystem); vLLM's own loader repacks them as at start-up."""


class WeightFileLoader:
    def load_weights_from_file(self, path: str) -> None:
        from safetensors.torch import load_file

        self.model_runner.reload_weights(weights_iterator=iter(load_file(path).items()))
