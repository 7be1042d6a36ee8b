"""Pipeline files and recipes load and validate: every bad file is one clear error, an unknown override lists
the valid ones, and the shipped recipes resolve (no stage runs here; see tests/e2e/test_pipeline.py)."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from conftest import pipeline_file as _pipeline_file
from posttrain.errors import ConfigError
from posttrain.pipeline import load_pipeline, recipes, usage


@pytest.mark.parametrize("edit, fragments", [
    (lambda s: s["stages"].__setitem__(1, {**s["stages"][1], "stage": "gpro"}), ["stage 2 (grpo)", "unknown stage type 'gpro'", "valid:"]),
    (lambda s: s["stages"][0]["config"].__setitem__("lerning_rate", 1), ["stage 1 (sft)", "lerning_rate", "did you mean 'learning_rate'"]),
    (lambda s: s["stages"][1]["config"].__setitem__("model", "${sft.checkpoint}"), ["stage 2 (grpo)", "use ${sft.final}"]),
    (lambda s: s["stages"][0]["config"].__setitem__("model", "${grpo.final}"), ["stage 1 (sft)", "no earlier stage 'grpo'"]),
    (lambda s: s["stages"][1].__setitem__("preset", "nope"), ["stage 2 (grpo)", "unknown preset 'nope'", "dapo"]),
    (lambda s: s["defaults"].__setitem__("bogus", 1), ["defaults key(s) bogus"]),
])
def test_invalid_files_are_one_clear_error(tmp_path, tiny_llama, edit, fragments):
    spec = yaml.safe_load(open(_pipeline_file(tmp_path, tiny_llama)))
    edit(spec)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as info:
        load_pipeline(str(path))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_override_lists_valid_ones(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match=r"unknown pipeline override 'max_steps'; valid: output_dir, force, defaults.KEY, sft.KEY, grpo.KEY"):
        load_pipeline(_pipeline_file(tmp_path, tiny_llama), ["max_steps=3"])


def test_shipped_recipes_validate(tmp_path):
    assert set(recipes()) >= {"instructgpt", "dpo", "rs_dpo", "online_dpo", "rlaif", "r1zero"}
    out = str(tmp_path / "x")
    igpt = load_pipeline("instructgpt", [f"output_dir={out}"])  # needs no files: a pairs stage samples them
    assert [(s.name, s.stage) for s in igpt.stages] == [("sft", "sft"), ("pairs", "pairs"), ("rm", "rm"), ("ppo", "ppo"),
                                                         ("compare", "compare")]
    pairs, rm, ppo, compare = (s.config for s in igpt.stages[1:])
    assert compare.policies == [f"ppo={out}/ppo/final"] and compare.selector_funcs == [f"reward_model:path={out}/rm/final"]
    assert pairs.model == rm.model == ppo.model == f"{out}/sft/final" and pairs.labels == "bradley_terry"
    assert rm.dataset == f"{out}/pairs/final/pairs.jsonl"
    assert ppo.reward_model == f"{out}/rm/final" and ppo.kl_coef == 0.02  # the instructgpt preset
    dpo = load_pipeline("dpo")
    assert [s.stage for s in dpo.stages] == ["sft", "pairs", "dpo", "compare"] and dpo.stages[2].config.model == "runs/pipeline-dpo/sft/final"
    rs = load_pipeline("rs_dpo").stages[1].config
    assert (rs.selection, rs.labels, rs.num_samples) == ("max_gap", "hard", 4)
    online = load_pipeline("online_dpo").stages
    assert [s.stage for s in online] == ["sft", "pairs", "dpo", "pairs", "dpo", "compare"]
    assert online[5].config.policies == ["dpo_round1=runs/pipeline-online_dpo/dpo1/final", "dpo_round2=runs/pipeline-online_dpo/dpo2/final"]
    assert online[4].config.ref_model_path is None  # the reference is refreshed: round 2's starts as the round-1 policy
    fixed = load_pipeline("online_dpo", ["dpo2.ref_model_path=${sft.final}"]).stages[4].config
    assert fixed.ref_model_path == "runs/pipeline-online_dpo/sft/final"
    assert online[3].config.model == online[4].config.model == "runs/pipeline-online_dpo/dpo1/final"
    rlaif = load_pipeline("rlaif", ["judge_model=J"]).stages[1].config
    assert rlaif.labels == "judge" and rlaif.judge == "pairwise_judge:model=J:method=logprob"
    assert load_pipeline("rlaif").stages[1].config.judge == "pairwise_judge:model=embedded-judge:method=logprob"
    r1 = load_pipeline("r1zero", ["grpo.max_steps=7"])
    (grpo,) = r1.stages
    assert grpo.config.model == "embedded" and grpo.config.dataset == "task:arithmetic"
    assert grpo.config.reward_funcs == ["math_accuracy", "format"] and grpo.config.beta == 0.04 and grpo.config.max_steps == 7
    main = load_pipeline("main", [f"output_dir={out}"]).stages
    assert [s.stage for s in main] == ["sft", "pairs", "rm", "ppo", "dpo", "compare", "eval", "grpo", "eval"]
    compare = main[5].config
    assert compare.policies == [f"ppo={out}/ppo/final", f"dpo={out}/dpo/final"] and compare.reference == f"{out}/sft/final"
    assert compare.selector_funcs == [f"reward_model:path={out}/rm/final"] and main[8].config.model == f"{out}/r1zero/final"
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("width", [80, 200])
def test_help_shows_each_recipe_description_whole(width):
    text = usage(width)
    listing = text.split("recipes:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert all(len(line) <= width for line in listing)
    blocks, name = {}, None
    for line in listing:  # "  name         description..." then continuation lines under the description
        if not line.startswith("   "):
            name, line = line.split(maxsplit=1)
        blocks[name] = f"{blocks.get(name, '')} {line.strip()}".strip()
    assert blocks == recipes()
    assert not [name for name, description in recipes().items() if description.endswith(":")]  # none continues elsewhere


def test_help_example_file_is_a_valid_pipeline(tmp_path):
    example = usage().split("FILE.yaml (", 1)[1].split("\n", 1)[1].split("\n  A string", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(textwrap.dedent(example))
    pipeline = load_pipeline(str(path), ["pairs=pairs.jsonl", f"output_dir={tmp_path / 'run'}"])
    assert [(s.name, s.stage) for s in pipeline.stages] == [("sft", "sft"), ("dpo", "dpo")]
    assert pipeline.stages[1].config.model == f"{tmp_path / 'run'}/sft/final" and pipeline.stages[1].config.dataset == "pairs.jsonl"


def test_the_canon_recipes_wire_their_method(tmp_path):
    """sdpo: step 2 starts from (so its reference is) step 1 and reads the other half of the pairs; rso: pairs
    by statistical rejection sampling, scored by the reward model; iterative_rlhf: round 2's reward model is
    trained on the round-1 policy's samples and GRPO keeps the gold as a monitor in every round."""
    out = str(tmp_path / "x")
    sdpo = {s.name: s.config for s in load_pipeline("sdpo", [f"output_dir={out}"]).stages}
    step1, step2, everything = sdpo["dpo_step1"], sdpo["dpo_step2"], sdpo["dpo_all"]
    assert (step1.data_shard, step2.data_shard, everything.data_shard) == ("1/2", "2/2", None)
    assert step1.model == everything.model == f"{out}/sft/final" and step2.model == f"{out}/dpo_step1/final"
    assert step2.ref_model_path is None and step1.dataset == step2.dataset  # reference = frozen copy of its start
    rso = {s.name: s.config for s in load_pipeline("rso", [f"output_dir={out}"]).stages}
    assert rso["rso_pairs"].selection == "rso" and rso["rso_pairs"].reward_funcs == [f"reward_model:path={out}/rm/final"]
    assert rso["dpo"].dataset == f"{out}/rso_pairs/final/pairs.jsonl"
    rounds = {s.name: s.config for s in load_pipeline("iterative_rlhf", [f"output_dir={out}"]).stages}
    assert rounds["pairs2"].model == f"{out}/grpo1/final" and rounds["rm2"].dataset == f"{out}/pairs2/final/pairs.jsonl"
    assert rounds["grpo2"].model == f"{out}/grpo1/final" and rounds["grpo2"].reward_funcs == [f"reward_model:path={out}/rm2/final"]
    assert rounds["grpo1"].monitor_funcs == rounds["grpo2"].monitor_funcs == ["task::gold"]
