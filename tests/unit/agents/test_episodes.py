"""Multi-turn episodes: a hand-built trajectory's tokens and loss mask, per-turn rewards at the turn ends,
and how episodes end (done, max_turns, overflow, a cut-off turn, an environment that raises or hangs).

The generation engine here replays fixed replies (a RolloutBackend whose output is known), so the
trajectory can be checked token by token against the embedded chat template rendered by hand."""

import torch

from replay_backend import Replay
from posttrain.agents.environment import Turn
from posttrain.agents.episodes import EpisodeRunner
from posttrain.generation import SamplingParams
from posttrain.losses.advantages import discounted_returns
from posttrain.models.loading import load_tokenizer
from posttrain.online.experience import Sample, collate_samples
from posttrain.online.maker import model_tokens, trajectory_return

TOKENIZER = load_tokenizer("embedded")
ROW = {"prompt": [{"role": "user", "content": "What is 12 * 3?"}]}


class TwoStep:
    """Answers the first turn with an observation (reward 0.5), ends the episode on the second (reward 1)."""
    tools: list = []

    def reset(self, row):
        self.turn = 0
        return list(row["prompt"])

    def step(self, reply):
        self.turn += 1
        if self.turn == 1:
            return Turn([{"role": "tool", "content": "36"}], reward=0.5, events=[{"type": "goal", "verified": False}],
                        info={"tool_calls": 1})
        return Turn(done=True, reward=1.0, info={"success": True})


def run(env=TwoStep, replies=("call 12*3", "<answer>36</answer>"), cut=False, **options):
    options = {"max_turns": 4, "max_length": 512, "tool_style": "hermes", **options}
    runner = EpisodeRunner(env, TOKENIZER, Replay(TOKENIZER, list(replies), cut), **options)
    return runner, runner.run([ROW], 2, SamplingParams(max_new_tokens=16, temperature=1.0, seeds=[7]))


def ids(text: str) -> list[int]:
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def test_a_trajectory_is_the_model_turns_and_the_observations_the_template_puts_between_them():
    _, rollouts = run()
    eos = [TOKENIZER.eos_token_id]
    first, observation, second = ids("call 12*3") + eos, ids("\n<|tool|>\n36<|end|>\n<|assistant|>\n"), ids("<answer>36</answer>") + eos
    assert rollouts.completion_ids[0] == first + observation + second
    extra = rollouts.extra["sample_extra"][0]
    assert extra["loss_mask"] == [1.0] * len(first) + [0.0] * len(observation) + [1.0] * len(second)
    assert rollouts.old_logps[0] == [-0.5] * len(first) + [0.0] * len(observation) + [-0.5] * len(second)
    assert extra["turn_ends"] == [len(first) - 1, len(first) + len(observation) + len(second) - 1]
    assert extra["turn_rewards"] == [0.5, 1.0]
    # the whole sequence is exactly the chat template's rendering of the conversation
    conversation = ROW["prompt"] + [{"role": "assistant", "content": "call 12*3"}, {"role": "tool", "content": "36"},
                                    {"role": "assistant", "content": "<answer>36</answer>"}]
    rendered = TOKENIZER.apply_chat_template(conversation, tokenize=False)
    assert TOKENIZER.decode(rollouts.prompt_ids[0] + rollouts.completion_ids[0], skip_special_tokens=False) == rendered
    assert rollouts.extra["completions"][0] == conversation[1:]
    assert rollouts.extra["columns"]["turns"] == [2, 2]
    assert rollouts.extra["columns"]["events"][0] == [{"type": "goal", "verified": False}]
    assert rollouts.extra["columns"]["trajectory"][0][0] == {"observation": "What is 12 * 3?", "action": "call 12*3", "next_observation": "36"}
    assert extra["episode"] | {} == {**extra["episode"], "turns": 2, "success": 1, "tool_calls": 1, "overflow": 0}


def test_the_loss_mask_reaches_the_training_batch_and_returns_skip_the_observations():
    _, rollouts = run()
    extra = rollouts.extra["sample_extra"][0]
    sample = Sample(rollouts.prompt_ids[0], rollouts.completion_ids[0], rollouts.old_logps[0], 0, reward=2.0, extra=extra)
    batch = collate_samples([sample], TOKENIZER.pad_token_id)
    assert batch["mask"][0].tolist() == extra["loss_mask"]
    assert batch["completion_mask"][0].all()  # the forward still reads every token
    mask = model_tokens([sample], len(sample.completion_ids))
    rewards = torch.zeros_like(mask)
    end0, end1 = extra["turn_ends"]
    rewards[0, end0], rewards[0, end1] = 0.5, 1.0
    returns = discounted_returns(rewards, mask, gamma=0.5)[0]
    # G at turn 0's last token: 0.5 + 0.5 * (the next *model* token's return, 1.0 · 0.5^(tokens of turn 1 − 1))
    turn1 = len(sample.completion_ids) - 1 - end0 - extra["loss_mask"][end0 + 1:].count(0.0)
    assert returns[end1].item() == 1.0
    assert abs(returns[end0].item() - (0.5 + 0.5 * 0.5 ** (turn1 - 1))) < 1e-6
    assert returns[end0 + 1].item() == 0.0  # an observation token: no return of its own


def test_the_trajectory_return_discounts_each_turn_and_counts_the_score_at_the_last():
    assert trajectory_return([0.5, 0.0, 1.0], 2.0, 0.9) == 0.5 + 0.81 * 1.0 + 0.81 * 2.0
    assert trajectory_return([0.5, 1.0], None, 0.5) == 0.5 + 0.5 * 1.0
    assert trajectory_return([0.0], 1.0, 0.9) == 1.0


def test_episodes_end_at_max_turns_and_on_overflow_and_go_on_after_a_cut_off_turn():
    _, capped = run(max_turns=1)
    assert capped.extra["sample_extra"][0]["episode"]["max_turns_reached"] == 1
    assert capped.extra["sample_extra"][0]["loss_mask"] == [1.0] * len(capped.completion_ids[0])  # no trailing observation
    prompt = ids(TOKENIZER.apply_chat_template(ROW["prompt"], add_generation_prompt=True, tokenize=False))
    _, full = run(max_length=len(prompt) + 16 + 5)  # room for the first turn (16 new tokens), not the second
    assert full.extra["sample_extra"][0]["episode"]["overflow"] == 1
    assert full.extra["columns"]["turns"][0] == 1
    # a turn cut off at max_new_tokens is still handed to the environment: the template's end of turn (never
    # generated) comes with the observation, so the sequence is still exactly the rendered conversation
    _, cut = run(cut=True)
    assert cut.truncated == [True, True] and cut.extra["columns"]["turns"] == [2, 2]
    assert cut.extra["sample_extra"][0]["episode"]["truncated"] == 1
    conversation = ROW["prompt"] + [{"role": "assistant", "content": "call 12*3"}, {"role": "tool", "content": "36"},
                                    {"role": "assistant", "content": "<answer>36</answer>"}]
    rendered = TOKENIZER.apply_chat_template(conversation, tokenize=False)
    assert TOKENIZER.decode(cut.prompt_ids[0] + cut.completion_ids[0], skip_special_tokens=False) == rendered.removesuffix(TOKENIZER.eos_token)


class Raises(TwoStep):
    def step(self, reply):
        raise RuntimeError("broken environment")


class Hangs(TwoStep):
    def step(self, reply):
        import time
        time.sleep(30)


def test_an_environment_that_raises_or_hangs_ends_its_episode_counted(capsys):
    _, raised = run(env=Raises)
    assert [x["episode"]["env_errors"] for x in raised.extra["sample_extra"]] == [1, 1]
    assert "broken environment" in capsys.readouterr().err
    runner = EpisodeRunner(Hangs, TOKENIZER, Replay(TOKENIZER, ["call"]), max_turns=2, max_length=512, tool_style="hermes")
    runner.step_timeout = 0.2
    hung = runner.run([ROW], 1, SamplingParams(max_new_tokens=16, temperature=1.0, seeds=[7]))
    assert hung.extra["sample_extra"][0]["episode"]["env_errors"] == 1
