"""The malformed-input corpus (issue 17, point 4): each way a user can get the input of a `posttrain`
command wrong (data, configs, paths, models, reward specs, pipelines), across every stage, gives exit
code 2 and a short message that says what to fix: at most 5 lines of output, no traceback, no `final/`
anywhere, and in fact no output_dir at all (nothing half-written).

Cases run the CLI's `main` in this process (imports and the embedded model are paid once, so the
whole corpus takes seconds); a few run `python -m posttrain` as a user would: the hub id (HF_HUB_OFFLINE
is read when a process starts) and the three inputs the issue found unhandled. Each case names in
`fragments` what its message must say. The single-stage bad-input tests elsewhere (test_sft_cli.py,
test_grpo.py, ...) check their stage's messages in depth; this file checks breadth."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, write_jsonl
from posttrain.cli import main

EXAMPLES = REPO / "examples"
MAX_LINES = 5
FAST = ["device=cpu", "max_steps=1"]  # in case a check comes late: the shortest run


@dataclass
class Case:
    id: str
    kind: str  # data, config, path, model, reward, pipeline
    argv: list[str]  # {files}: the prepared files' folder; {out}: this case's output_dir; {examples}
    fragments: list[str] = field(default_factory=list)  # each must appear in the output
    subprocess: bool = False
    env: dict = field(default_factory=dict)


def _pipeline(files: Path, name: str, spec: dict) -> None:
    (files / name).write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The bad (and the good) inputs the cases name as {files}/NAME."""
    root = tmp_path_factory.mktemp("bad_inputs")
    prompt = [{"role": "user", "content": "What is 1 + 1?"}]
    answer = [{"role": "assistant", "content": "<answer>2</answer>"}]
    (root / "a_file.txt").write_text("not a directory\n")
    (root / "bad_line.jsonl").write_text(json.dumps({"prompt": prompt, "completion": answer}) + "\n{\"prompt\": [\n")
    (root / "empty.jsonl").write_text("")
    write_jsonl(root / "sft_typo.jsonl", [{"promt": prompt, "completion": answer}] * 4)
    write_jsonl(root / "sft_int.jsonl", [{"prompt": prompt, "completion": 5}] * 4)
    write_jsonl(root / "pairs_no_rejected.jsonl", [{"prompt": prompt, "chosen": answer}] * 4)
    write_jsonl(root / "pairs_number.jsonl", [{"prompt": "1 + 1 =", "chosen": " 2", "rejected": 3}] * 4)
    write_jsonl(root / "ranking_text.jsonl", [{"prompt": "1 + 1 =", "completions": [" 2", " 3"], "ranking": "first"}] * 4)
    write_jsonl(root / "feedback_yes.jsonl", [{"prompt": "1 + 1 =", "completion": " 2", "label": "yes"}] * 4)
    write_jsonl(root / "steps_short_labels.jsonl", [{"prompt": "1 + 1 =", "completions": ["1 + 1", "= 2"], "labels": [True]}] * 4)
    write_jsonl(root / "long_prompts.jsonl", [{"prompt": [{"role": "user", "content": "word " * 300}], "answer": "1"}] * 4)
    write_jsonl(root / "no_prompt.jsonl", [{"question": "What is 1 + 1?", "answer": "2"}] * 4)
    write_jsonl(root / "items_no_completions.jsonl", [{"prompt": "Review a film.", "completion": "Fine."}] * 4)
    write_jsonl(root / "items_three.jsonl", [{"prompt": "Review a film.", "completions": ["a", "b", "c"]}] * 4)
    write_jsonl(root / "prompt_number.jsonl", [{"prompt": 7, "answer": "2"}] * 4)
    step = {"observation": "Page: form", "action": "submit()", "next_observation": "Saved"}
    write_jsonl(root / "trajectories_no_action.jsonl", [{"chosen_trajectory": [step],
                                                          "rejected_trajectory": [{"observation": "Page", "next_observation": "x"}]}] * 4)
    write_jsonl(root / "agent_steps_same.jsonl", [{"prompt": "Sign up.", "corrected": " open(/a)", "erroneous": " open(/a)"}] * 4)
    write_jsonl(root / "prompt_gone.jsonl", [{"prompt": prompt, "answer": "2"}] * 3 + [{"answer": "2"}])
    (root / "data.txt").write_text("prompt,completion\n")
    # configs
    (root / "bad.yaml").write_text("model: embedded\ndataset: [unclosed\n")
    (root / "unknown_key.yaml").write_text("pakcing: true\n")
    (root / "list.yaml").write_text("- model\n- dataset\n")
    (root / "principles_bad.yaml").write_text("principles: {a: [\n")
    # paths and models
    (root / "finished" / "final").mkdir(parents=True)
    (root / "finished" / "config.yaml").write_text("model: embedded\n")
    (root / "not_a_model").mkdir()
    (root / "not_a_model" / "notes.txt").write_text("hello\n")
    (root / "broken_config").mkdir()
    (root / "broken_config" / "config.json").write_text("{not json")
    # reward specs
    (root / "rewards.py").write_text("def ok(prompts, completions, **columns):\n    return [0.0 for _ in completions]\n")
    (root / "rewards_syntax.py").write_text("def broken(:\n")
    # pipelines
    (root / "pipe_bad.yaml").write_text("stages: [\n")
    _pipeline(root, "pipe_unknown_stage.yaml", {"stages": [{"name": "a", "stage": "nosuch", "config": {}}]})
    _pipeline(root, "pipe_unknown_ref.yaml", {"stages": [
        {"name": "a", "stage": "sft", "config": {"model": "${nope.final}", "dataset": str(EXAMPLES / "sft.jsonl")}}]})
    _pipeline(root, "pipe_missing_var.yaml", {"vars": {"pairs": None}, "stages": [
        {"name": "dpo", "stage": "dpo", "config": {"dataset": "${pairs}"}}]})
    _pipeline(root, "pipe_duplicate.yaml", {"stages": [
        {"name": "a", "stage": "sft", "config": {"dataset": str(EXAMPLES / "sft.jsonl")}},
        {"name": "a", "stage": "sft", "config": {"dataset": str(EXAMPLES / "sft.jsonl")}}]})
    _pipeline(root, "pipe_bad_key.yaml", {"stages": [
        {"name": "a", "stage": "sft", "config": {"dataset": str(EXAMPLES / "sft.jsonl"), "lerning_rate": 1.0}}]})
    _pipeline(root, "pipe_no_stages.yaml", {"defaults": {"model": "embedded"}})
    return root


CASES = [
    # ------------------------------------------------------------------------------------------ data
    Case("sft-missing-file", "data", ["sft", "dataset={files}/nope.jsonl"], ["nope.jsonl"]),
    Case("sft-bad-json-line", "data", ["sft", "dataset={files}/bad_line.jsonl"], ["bad_line.jsonl"]),
    Case("sft-missing-column", "data", ["sft", "dataset={files}/sft_typo.jsonl"], ["promt"]),
    Case("sft-wrong-type", "data", ["sft", "dataset={files}/sft_int.jsonl"], ["column 'completion'", "got int"]),
    Case("sft-empty", "data", ["sft", "dataset={files}/empty.jsonl"], ["empty.jsonl"]),
    Case("sft-unknown-extension", "data", ["sft", "dataset={files}/data.txt"], ["data.txt"]),
    Case("sft-split-of-a-jsonl", "data", ["sft", "dataset={examples}/sft.jsonl", "dataset_split=test"], ["dataset_split"]),
    Case("sft-eval-missing-column", "data", ["sft", "dataset={examples}/sft.jsonl", "eval_dataset={files}/sft_typo.jsonl"], ["sft_typo.jsonl"]),
    Case("rm-missing-column", "data", ["rm", "dataset={files}/pairs_no_rejected.jsonl"], ["missing column 'rejected'"]),
    Case("rm-ranking-wrong-type", "data", ["rm", "dataset={files}/ranking_text.jsonl"], ["column 'ranking'", "permutation"]),
    Case("prm-labels-per-step", "data", ["prm", "dataset={files}/steps_short_labels.jsonl"], ["one label per step"]),
    Case("dpo-wrong-type", "data", ["dpo", "dataset={files}/pairs_number.jsonl"], ["column 'rejected'", "got int"]),
    Case("dpo-empty", "data", ["dpo", "dataset={files}/empty.jsonl"], ["empty.jsonl"]),
    Case("rm-trajectory-step-without-action", "data", ["rm", "dataset={files}/trajectories_no_action.jsonl"],
         ["column 'rejected_trajectory'", "step 0: 'action'"]),
    Case("dpo-agent-steps-identical", "data", ["dpo", "dataset={files}/agent_steps_same.jsonl"], ["column 'erroneous'", "equals 'corrected'"]),
    Case("kto-label-not-bool", "data", ["kto", "dataset={files}/feedback_yes.jsonl"], ["column 'label'", "expected a bool"]),
    Case("distill-missing-file", "data", ["distill", "dataset={files}/nope.jsonl"], ["nope.jsonl", "no such file"]),
    Case("online-dpo-no-prompt-column", "data", ["online_dpo", "dataset={files}/no_prompt.jsonl", "reward_funcs=[format]"], ["prompt"]),
    Case("kto-missing-file", "data", ["kto", "dataset={files}/nope.jsonl"], ["nope.jsonl"]),
    Case("grpo-prompts-too-long", "data", ["grpo", "dataset={files}/long_prompts.jsonl", "reward_funcs=[format]",
                                           "max_length=64", "max_new_tokens=8"], ["every prompt is too long", "max_length"],
         subprocess=True),  # issue 17: was a traceback
    Case("grpo-no-prompt-column", "data", ["grpo", "dataset={files}/no_prompt.jsonl", "reward_funcs=[format]"], ["prompt"]),
    Case("grpo-prompt-wrong-type", "data", ["grpo", "dataset={files}/prompt_number.jsonl", "reward_funcs=[format]"], ["row 0", "got int"]),
    Case("ppo-prompt-missing-in-a-row", "data", ["ppo", "dataset={files}/prompt_gone.jsonl", "reward_funcs=[format]"], ["row 3", "prompt"]),
    Case("rloo-bad-json-line", "data", ["rloo", "dataset={files}/bad_line.jsonl", "reward_funcs=[format]"], ["bad_line.jsonl"]),
    Case("ppo-empty", "data", ["ppo", "dataset={files}/empty.jsonl", "reward_funcs=[format]"], ["empty.jsonl"]),
    Case("rejection-no-prompt-column", "data", ["rejection", "dataset={files}/no_prompt.jsonl", "reward_funcs=[format]"], ["prompt"]),
    Case("pairs-missing-file", "data", ["pairs", "dataset={files}/nope.jsonl", "reward_funcs=[format]"], ["nope.jsonl"]),
    Case("eval-bad-json-line", "data", ["eval", "dataset={files}/bad_line.jsonl", "scorer={files}/rewards.py:ok"], ["bad_line.jsonl"]),
    Case("eval-unknown-task", "data", ["eval", "dataset=task:nosuch"], ["nosuch"]),
    Case("compare-missing-file", "data", ["compare", "dataset={files}/nope.jsonl", "gold_funcs=[format]"], ["nope.jsonl"]),
    Case("constitution-bad-principles", "data", ["constitution", "principles={files}/principles_bad.yaml"], ["principles_bad.yaml"]),
    # ---------------------------------------------------------------------------------------- config
    Case("sft-unknown-key", "config", ["sft", "pakcing=true"], ["pakcing", "packing"]),
    Case("dpo-bad-type", "config", ["dpo", "beta=high"], ["beta"]),
    Case("dpo-tr-dpo-under-lora", "config", ["dpo", "ref_sync=soft", "lora=true"], ["ref_sync=soft", "lora=true", "ref_sync=none"]),
    Case("ppo-penalty-one-step-a-round", "config", ["ppo", "policy_loss=penalty", "num_iterations=1", "num_minibatches=1"],
         ["policy_loss=penalty", "num_iterations >= 2"]),
    Case("kto-bad-choice", "config", ["kto", "loss_type=nope"], ["loss_type"]),
    Case("distill-beta-out-of-range", "config", ["distill", "beta=2"], ["beta", "[0, 1]"]),
    Case("online-dpo-one-generation", "config", ["online_dpo", "num_generations=1"], ["num_generations must be >= 2"]),
    Case("rm-bad-range", "config", ["rm", "dataset={examples}/pairs.jsonl", "batch_size=0"], ["batch_size"]),
    Case("ppo-negative-target-kl", "config", ["ppo", "target_kl=-0.1"], ["target_kl must be >= 0"], subprocess=True),  # issue 17
    Case("grpo-conflicting-lengths", "config", ["grpo", "max_new_tokens=64", "max_length=32"], ["max_new_tokens", "max_length"]),
    Case("grpo-greedy-sampling", "config", ["grpo", "temperature=0"], ["temperature > 0"]),
    Case("grpo-vllm-option-without-vllm", "config", ["grpo", "vllm_mode=server"], ["vllm_mode", "rollout_backend=vllm"]),
    Case("grpo-vllm-top-p-without-tis", "config", ["grpo", "rollout_backend=vllm", "top_p=0.9"], ["top_k / top_p", "tis_cap"]),
    Case("grpo-vllm-async", "config", ["grpo", "rollout_backend=vllm", "async_rollout=true"], ["async_rollout", "rollout_backend=vllm"]),
    Case("grpo-vllm-bad-memory", "config", ["grpo", "rollout_backend=vllm", "vllm_gpu_memory_utilization=1.5"], ["vllm_gpu_memory_utilization"]),
    Case("grpo-vllm-not-installed", "config", ["grpo", "rollout_backend=vllm", "tis_cap=2"], ["vLLM", "install.sh vllm"]),
    Case("pairs-vllm-url-without-vllm", "config", ["pairs", "vllm_server_url=http://127.0.0.1:9"], ["vllm_server_url", "rollout_backend=vllm"]),
    Case("eval-vllm-with-harness", "config", ["eval", "harness=lm_eval", "tasks=[arc_easy]", "rollout_backend=vllm"], ["rollout_backend", "without harness"]),
    Case("ppo-unknown-tracker", "config", ["ppo", "report_to=[tensorboard,comet]"], ["report_to", "comet", "trackio"]),  # issue 18
    Case("grpo-unread-option", "config", ["grpo", "overlong_penalty=2.0"], ["overlong_penalty"]),
    Case("ppo-ptx-without-data", "config", ["ppo", "ptx_coef=1.0"], ["ptx_dataset"]),
    Case("grpo-ptx-without-data", "config", ["grpo", "ptx_coef=0.5"], ["ptx_dataset"]),
    Case("rloo-ptx-negative", "config", ["rloo", "ptx_coef=-1", "ptx_dataset=task:web_form"], ["ptx_coef must be >= 0"]),
    Case("grpo-ptx-data-without-coef", "config", ["grpo", "ptx_dataset=task:web_form"], ["ptx_dataset", "ptx_coef > 0"]),
    # ray=true (docs/ray.md): its options, checked before Ray is imported; a cluster nobody answers at
    Case("grpo-ray-zero-workers", "config", ["grpo", "ray=true", "ray_workers=0"], ["ray_workers must be >= 1"]),
    Case("grpo-ray-address-without-port", "config", ["grpo", "ray=true", "ray_address=headnode"], ["ray_address must be HOST:PORT", "6379"]),
    Case("grpo-ray-bad-placement", "config", ["grpo", "ray=true", "ray_placement=spread"], ["ray_placement", "disaggregate"]),
    Case("rloo-ray-option-without-ray", "config", ["rloo", "ray_workers=4"], ["ray_workers", "ray=true"]),
    Case("ppo-ray-bad-timeout", "config", ["ppo", "ray=true", "ray_timeout=0"], ["ray_timeout must be"]),
    Case("grpo-ray-negative-learners", "config", ["grpo", "ray=true", "ray_learners=-1"], ["ray_learners must be >= 0"]),
    Case("grpo-ray-learner-gpus-without-learners", "config", ["grpo", "ray=true", "ray_learner_gpus=1"], ["ray_learner_gpus", "ray_learners > 0"]),
    Case("grpo-ray-with-async-rollout", "config", ["grpo", "ray=true", "async_rollout=true"], ["drop async_rollout"]),
    Case("grpo-ray-vllm-server", "config", ["grpo", "ray=true", "rollout_backend=vllm", "vllm_mode=server"], ["vllm_mode=colocate"]),
    Case("grpo-ray-address-nobody-answers", "config", ["grpo", "ray=true", "ray_address=127.0.0.1:1"],
         ["ray start --head --port=1"] if importlib.util.find_spec("ray") else ["pip install 'posttrain[ray]'"]),
    Case("grpo-unknown-environment", "config", ["grpo", "reward_funcs=[format]", "environment=nosuch"], ["environment=nosuch", "calculator"]),  # issue 16
    Case("grpo-environment-file-missing", "config", ["grpo", "reward_funcs=[format]", "environment={files}/nope.py:Env"], ["environment", "nope.py"]),
    Case("ppo-zero-turns", "config", ["ppo", "environment=calculator", "max_turns=0"], ["max_turns"]),
    Case("rloo-turn-option-without-environment", "config", ["rloo", "max_turns=3"], ["max_turns", "environment"]),
    Case("eval-bad-range", "config", ["eval", "num_samples=0"], ["num_samples"]),
    Case("rejection-bad-choice", "config", ["rejection", "selection=nope"], ["selection"]),
    Case("pairs-too-few-samples", "config", ["pairs", "num_samples=1"], ["num_samples"]),
    Case("compare-bad-type", "config", ["compare", "best_of_n=[four]"], ["best_of_n"]),
    Case("compare-selector-without-best-of-n", "config", ["compare", "selector_funcs=[format]"], ["selector_funcs", "best_of_n"]),
    Case("constitution-unknown-key", "config", ["constitution", "revison=2"], ["revison"]),
    Case("prm-bad-type", "config", ["prm", "learning_rate=fast"], ["learning_rate"]),
    Case("dpo-unknown-loss-in-list", "config", ["dpo", "loss_type=[sigmoid,nosuch]"], ["nosuch"]),
    Case("quickstart-unknown-task", "config", ["quickstart", "task=nosuch"], ["nosuch"]),
    Case("sft-unknown-device", "config", ["sft", "dataset={examples}/sft.jsonl", "device=tpu"], ["device=tpu"]),
    Case("sft-bad-yaml", "config", ["sft", "--config", "{files}/bad.yaml"], ["bad.yaml"]),
    Case("sft-yaml-unknown-key", "config", ["sft", "--config", "{files}/unknown_key.yaml"], ["pakcing"]),
    Case("sft-yaml-not-a-mapping", "config", ["sft", "--config", "{files}/list.yaml"], ["list.yaml"]),
    Case("sft-config-missing", "config", ["sft", "--config", "{files}/nope.yaml"], ["nope.yaml"]),
    Case("dpo-unknown-preset", "config", ["dpo", "--preset", "nosuch"], ["nosuch"]),
    Case("dpo-push-without-repo-id", "config", ["dpo", "dataset={examples}/pairs.jsonl", "push_to_hub=true"], ["hub_model_id=NAMESPACE/NAME"]),  # issue 18
    Case("grpo-hub-id-without-push", "config", ["grpo", "hub_model_id=me/model"], ["hub_model_id", "push_to_hub=true"]),  # issue 18
    Case("cli-unknown-stage", "config", ["sfft"], ["sfft"]),
    Case("cli-unknown-flag", "config", ["sft", "--lr", "1"], ["unknown config key 'lr'"]),  # --key value is key=value (TRL's syntax)
    Case("cli-unknown-short-flag", "config", ["sft", "-x"], ["unknown option(s) -x;"]),
    Case("cli-trl-key-without-equivalent", "config", ["grpo", "--max_prompt_length", "64"], ["max_prompt_length", "max_length"]),
    Case("cli-not-key-value", "config", ["sft", "packing"], ["packing"]),
    # ----------------------------------------------------------------------------------------- paths
    Case("sft-output-dir-under-file", "path", ["sft", "output_dir={files}/a_file.txt/run"], ["which is a file", "output_dir"],
         subprocess=True),  # issue 17: was a traceback
    Case("sft-output-dir-is-file", "path", ["sft", "output_dir={files}/a_file.txt"], ["a_file.txt", "output_dir"]),
    Case("grpo-output-dir-under-file", "path", ["grpo", "reward_funcs=[format]", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
    Case("pairs-output-dir-under-file", "path", ["pairs", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
    Case("compare-output-dir-under-file", "path", ["compare", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
    Case("rejection-output-dir-under-file", "path", ["rejection", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
    Case("constitution-output-dir-under-file", "path", ["constitution", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
    Case("quickstart-output-dir-under-file", "path", ["quickstart", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
    Case("eval-output-file-under-file", "path", ["eval", "output_file={files}/a_file.txt/out.jsonl"], ["a_file.txt"]),
    Case("sft-finished-run", "path", ["sft", "output_dir={files}/finished"], ["finished", "overwrite_output_dir"]),
    Case("dpo-finished-run", "path", ["dpo", "output_dir={files}/finished"], ["finished"]),
    Case("compare-finished-run", "path", ["compare", "output_dir={files}/finished"], ["finished"]),
    Case("pairs-finished-run", "path", ["pairs", "output_dir={files}/finished"], ["finished"]),
    Case("sft-resume-changed-settings", "path", ["sft", "output_dir={files}/finished", "resume=true"], ["resume"]),
    Case("sft-missing-model-dir", "path", ["sft", "model={files}/no_such_model"], ["no_such_model"]),
    Case("report-missing-run-dir", "path", ["report", "{files}/no_such_run"], ["no_such_run"]),
    # ---------------------------------------------------------------------------------------- models
    Case("sft-not-a-model-dir", "model", ["sft", "model={files}/not_a_model"], ["not_a_model"]),
    Case("rm-broken-model-config", "model", ["rm", "dataset={examples}/pairs.jsonl", "model={files}/broken_config"], ["broken_config"]),
    Case("dpo-ref-not-a-model", "model", ["dpo", "dataset={examples}/pairs.jsonl", "ref_model_path={files}/not_a_model"], ["not_a_model"]),
    Case("ppo-reward-model-not-a-model", "model", ["ppo", "reward_model={files}/not_a_model"], ["not_a_model"]),
    Case("compare-policy-not-a-model", "model", ["compare", "policies=[mine={files}/not_a_model]", "gold_funcs=[format]"], ["not_a_model"]),
    Case("eval-model-is-a-file", "model", ["eval", "model={files}/a_file.txt"], ["a_file.txt"]),
    Case("sft-hub-id-offline", "model", ["sft", "model=nobody/does-not-exist"], ["nobody/does-not-exist", "HF_HUB_OFFLINE"],
         subprocess=True, env={"HF_HUB_OFFLINE": "1"}),
    # ---------------------------------------------------------------------------------- reward specs
    Case("grpo-unknown-reward", "reward", ["grpo", "reward_funcs=[nosuch]"], ["nosuch"]),
    Case("grpo-bad-reward-option", "reward", ["grpo", "reward_funcs=[format:bogus=1]"], ["bogus"]),
    Case("grpo-cascade-weights-not-one", "reward", ["grpo", "reward_funcs=[cascade:rule=format:judge=judge:alpha=0.5:gamma=0.2]"],
         ["alpha + beta + gamma must be 1"]),
    Case("grpo-step-reward-no-model", "reward", ["grpo", "reward_funcs=[step_reward:path={files}/not_a_model]"], ["not_a_model"]),
    Case("grpo-reward-file-missing", "reward", ["grpo", "reward_funcs=[{files}/nope.py:f]"], ["nope.py"]),
    Case("grpo-reward-function-missing", "reward", ["grpo", "reward_funcs=[{files}/rewards.py:nosuch]"], ["nosuch"]),
    Case("grpo-reward-module-syntax", "reward", ["grpo", "reward_funcs=[{files}/rewards_syntax.py:broken]"], ["rewards_syntax.py"]),
    Case("rloo-reward-module-missing", "reward", ["rloo", "reward_funcs=[no_such_module:fn]"], ["no_such_module"]),
    Case("ppo-reward-weights-mismatch", "reward", ["ppo", "reward_funcs=[format]", "reward_weights=[1.0,2.0]"], ["reward_weights"]),
    Case("rejection-unknown-reward", "reward", ["rejection", "reward_funcs=[nosuch]"], ["nosuch"]),
    Case("pairs-reward-function-missing", "reward", ["pairs", "reward_funcs=[{files}/rewards.py:nosuch]"], ["nosuch"]),
    Case("compare-unknown-selector", "reward", ["compare", "best_of_n=[2]", "selector_funcs=[nosuch]"], ["selector_funcs", "nosuch"]),
    Case("eval-unknown-scorer", "reward", ["eval", "scorer=nosuch"], ["nosuch"]),
    # ------------------------------------------------------------------------------------- pipelines
    Case("pipeline-unknown-recipe", "pipeline", ["pipeline", "nosuch"], ["nosuch"]),
    Case("pipeline-unknown-stage-override", "pipeline", ["pipeline", "instructgpt", "nosuch.max_steps=1"], ["nosuch"]),
    Case("pipeline-unknown-key-override", "pipeline", ["pipeline", "instructgpt", "sft.pakcing=true"], ["pakcing"]),
    Case("pipeline-bad-value-override", "pipeline", ["pipeline", "instructgpt", "ppo.target_kl=-0.1"], ["target_kl"]),
    Case("pipeline-override-not-key-value", "pipeline", ["pipeline", "instructgpt", "force"], ["force"]),
    Case("pipeline-bad-yaml", "pipeline", ["pipeline", "{files}/pipe_bad.yaml"], ["pipe_bad.yaml"]),
    Case("annotate-items-without-completions", "data", ["annotate", "samples={files}/items_no_completions.jsonl"],
         ["row 0", "'completions'"]),
    Case("annotate-three-completions-pairwise", "data", ["annotate", "samples={files}/items_three.jsonl"],
         ["has 3 completions", "mode=ranking"]),
    Case("annotate-samples-missing", "path", ["annotate", "samples={files}/nope.jsonl"], ["nope.jsonl"]),
    Case("annotate-pairwise-of-three", "config", ["annotate", "num_samples=3"], ["pairwise compares exactly 2"]),
    Case("annotate-overlap-over-people", "config", ["annotate", "overlap=3", "annotators=[ana]", "admins=[]"],
         ["overlap=3 needs at least that many people"]),
    Case("annotate-guidelines-file-missing", "path", ["annotate", "guidelines={files}/nope.md"], ["guidelines file not found"]),
    # issue 18: hardware knobs and resume_from, refused before any weights load
    Case("sft-flash-attention-on-cpu", "config", ["sft", "dataset={examples}/sft.jsonl", "device=cpu", "attn_implementation=flash_attention_2"],
         ["attn_implementation=flash_attention_2 needs a CUDA GPU", "use attn_implementation=sdpa"]),
    Case("sft-liger-on-cpu", "config", ["sft", "dataset={examples}/sft.jsonl", "device=cpu", "use_liger_kernel=true"],
         ["use_liger_kernel needs the liger-kernel package and a CUDA GPU: pip install 'posttrain[liger]'"]),
    Case("sft-4bit-without-lora", "config", ["sft", "dataset={examples}/sft.jsonl", "device=cpu", "load_in_4bit=true"],
         ["load_in_4bit=true", "set lora=true"]),
    Case("rm-liger-not-for-a-classifier", "config", ["rm", "dataset={examples}/pairs.jsonl", "device=cpu", "use_liger_kernel=true"],
         ["use_liger_kernel is not supported for a reward model", "remove it"]),
    Case("sft-resume-from-not-a-checkpoint", "path", ["sft", "dataset={examples}/sft.jsonl", "resume_from={files}/not_a_model"],
         ["resume_from", "is not a checkpoint", "RUN/checkpoints/step-N"]),
    Case("pipeline-unknown-stage", "pipeline", ["pipeline", "{files}/pipe_unknown_stage.yaml"], ["nosuch"]),
    Case("pipeline-unknown-reference", "pipeline", ["pipeline", "{files}/pipe_unknown_ref.yaml"], ["${nope.final}"]),
    Case("pipeline-missing-var", "pipeline", ["pipeline", "{files}/pipe_missing_var.yaml"], ["needs pairs=VALUE"]),
    Case("pipeline-duplicate-name", "pipeline", ["pipeline", "{files}/pipe_duplicate.yaml"], ["the name 'a' must be a unique"]),
    Case("pipeline-stage-unknown-key", "pipeline", ["pipeline", "{files}/pipe_bad_key.yaml"], ["lerning_rate"]),
    Case("pipeline-no-stages", "pipeline", ["pipeline", "{files}/pipe_no_stages.yaml"], ["stages"]),
    Case("pipeline-output-dir-under-file", "pipeline", ["pipeline", "instructgpt", "output_dir={files}/a_file.txt/run"], ["a_file.txt"]),
]

NO_OUTPUT_DIR = ("eval", "report", "sfft")  # commands without an output_dir option
# What each command gets added so that a check that came late would fail fast (default: FAST)
EXTRA = {"eval": ["device=cpu"], "pairs": ["device=cpu"], "annotate": ["device=cpu"], "compare": ["device=cpu"], "quickstart": ["max_steps=1"],
         "pipeline": [], "report": [], "sfft": []}


def _expand(case: Case, files: Path, out: Path) -> list[str]:
    """The case's command line, with output_dir={out} and EXTRA added where the command takes them and the case does not set them."""
    argv = [a.format(files=files, out=out, examples=EXAMPLES) for a in case.argv]
    given = {a.split("=", 1)[0] for a in argv if "=" in a}
    extra = [] if argv[0] in NO_OUTPUT_DIR else [f"output_dir={out}"]
    extra += EXTRA.get(argv[0], FAST)
    return argv + [a for a in extra if a.split("=", 1)[0] not in given]


def _finals(root: Path) -> set[Path]:
    return set(root.rglob("final"))


def _tree(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, files, tmp_path, monkeypatch, capfd):
    """Run from an empty folder, so whatever a command would write by default lands under tmp_path too:
    no final/ anywhere there, no output_dir at all, and the prepared files (an earlier run among them)
    untouched."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "run"
    argv = _expand(case, files, out)
    before = _tree(files)
    if case.subprocess:
        proc = run_cli(*argv, env={"HF_HUB_CACHE": str(tmp_path / "hub-cache"), **case.env})
        code, text = proc.returncode, proc.stdout + proc.stderr
    else:
        code = main(argv)
        captured = capfd.readouterr()
        text = captured.out + captured.err
    lines = text.strip().splitlines()
    assert code == 2, text
    assert "Traceback" not in text, text
    assert 1 <= len(lines) <= MAX_LINES, text
    for fragment in case.fragments:
        assert fragment in text, text
    assert _finals(tmp_path) == set(), text
    assert not out.exists(), sorted(out.rglob("*"))
    assert _tree(files) == before


def test_the_corpus_covers_every_command_and_kind():
    from posttrain.stages import STAGES

    commands = {c.argv[0] for c in CASES}
    assert set(STAGES) | {"pipeline", "report"} <= commands, set(STAGES) - commands
    kinds = {kind: sum(c.kind == kind for c in CASES) for kind in ("data", "config", "path", "model", "reward", "pipeline")}
    assert set(kinds) == {c.kind for c in CASES} and min(kinds.values()) >= 5, kinds
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
