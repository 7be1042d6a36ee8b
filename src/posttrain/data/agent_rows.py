"""Agent data: ranked trajectory pairs (a step reward model's training data) and Agent DPO step pairs.

Ranked trajectory pairs (`TRAJECTORY_PAIRS`, read by `posttrain rm`), one row per comparison:

    {"chosen_trajectory":   [{"observation": "...", "action": "...", "next_observation": "..."}, ...],
     "rejected_trajectory": [ ... the same kind of steps ... ],
     "label": 1.0, "margin": 0.0}                # optional, as for preference pairs

Each step is seed 003's (o_t, a_t, o_{t+1}) as text: the observation the agent acted on, its action
(the assistant's reply, tool calls included) and the observation that followed. The reward model
R_φ scores each step on its own, and the pair is Bradley-Terry on the summed step rewards (seed 002
L98-110; losses/reward.py). A step reaches the model as the conversation `step_messages` writes:
observation as a user turn, action as the assistant's, next observation as a user turn (rendered
with the model's chat template, or as plain labelled text when it has none). The multi-turn rollout
gives reward functions the same steps in the episode's `trajectory` column, which the `step_reward`
reward scores with the trained model.

Agent DPO step pairs (`AGENT_STEPS`, read by `posttrain dpo` and the other preference stages; UI-TARS,
seed 001 L562-564): the agent's context at a step it got wrong, the erroneous step and its correction.

    {"prompt": [...the conversation up to the step...], "corrected": "...", "erroneous": "..."}

`prompt` is a string or a message list; `corrected` / `erroneous` a string (the assistant's reply) or
assistant message(s) (e.g. with `tool_calls`). `step_pairs_to_pairs` makes preference rows:
prompt = the context, chosen = the corrected step, rejected = the erroneous one.
"""

from __future__ import annotations

from posttrain.data.values import check_conversation, check_text, is_number, type_name
from posttrain.errors import data_error

STEP_KEYS = ("observation", "action", "next_observation")
TRAJECTORY_COLUMNS = ("chosen_trajectory", "rejected_trajectory")
STEP_COLUMNS = ("prompt", "corrected", "erroneous")


# ------------------------------------------------------------------------------ trajectories


def check_trajectory(value, source, i, column, *, require_action: bool = True) -> list[dict]:
    """A trajectory cell: a non-empty list of {observation, action, next_observation} string steps.
    `require_action=False` lets an empty action through (a sampled episode's empty reply is scored, not refused)."""
    if not isinstance(value, list) or not value:
        got = "an empty list" if isinstance(value, list) else type_name(value)
        raise data_error(source, i, column, f"expected a non-empty list of steps {{observation, action, next_observation}}, got {got}")
    for t, step in enumerate(value):
        if not isinstance(step, dict):
            raise data_error(source, i, column, f"step {t}: expected an object with {', '.join(STEP_KEYS)}, got {type_name(step)}")
        for key in STEP_KEYS:
            if not isinstance(step.get(key), str):
                got = "missing" if key not in step else f"a {type_name(step[key])}"
                raise data_error(source, i, column, f"step {t}: '{key}' must be a string, got {got}")
        if require_action and not step["action"].strip():
            raise data_error(source, i, column, f"step {t}: 'action' is empty; every step needs the agent's action")
    return value


def check_trajectory_pair(row, source, i) -> dict:
    """The row check of TRAJECTORY_PAIRS (formats.validate): both trajectories, optional label / margin."""
    for column in TRAJECTORY_COLUMNS:
        if column not in row:
            raise data_error(source, i, column, f"missing column '{column}'; trajectory pairs have {', '.join(TRAJECTORY_COLUMNS)}")
        check_trajectory(row[column], source, i, column)
    label = row.get("label")
    if label is not None and not isinstance(label, bool) and not (is_number(label) and 0.0 <= label <= 1.0):
        raise data_error(source, i, "label", f"expected P(chosen ≻ rejected) as a bool or a number in [0, 1], got {label!r}")
    if row.get("margin") is not None and not is_number(row["margin"]):
        raise data_error(source, i, "margin", f"expected a finite number, got {row['margin']!r}")
    return {}


def step_messages(step: dict) -> list[dict]:
    """One step (o_t, a_t, o_{t+1}) as the conversation a step reward model reads."""
    return [{"role": "user", "content": step["observation"]}, {"role": "assistant", "content": step["action"]},
            {"role": "user", "content": step["next_observation"]}]


def step_row(tokenizer, step: dict) -> dict:
    """A tokenizable row for one step: `messages` through the chat template, or labelled text without one."""
    if getattr(tokenizer, "chat_template", None):
        return {"messages": step_messages(step)}
    return {"text": f"Observation: {step['observation']}\nAction: {step['action']}\nNext observation: {step['next_observation']}"}


# ------------------------------------------------------------------------------ Agent DPO steps


def check_step_pair(row, source, i) -> dict:
    """The row check of AGENT_STEPS: a context and two different steps, in one form (strings or messages)."""
    for column in STEP_COLUMNS:
        if column not in row:
            raise data_error(source, i, column, f"missing column '{column}'; Agent DPO rows have {', '.join(STEP_COLUMNS)}")
    kinds = {"prompt": check_text(row["prompt"], source, i, "prompt", allow_empty=True)}
    for column in ("corrected", "erroneous"):
        value = row[column]
        if isinstance(value, dict):
            check_conversation([value], source, i, column)
        else:
            check_text(value, source, i, column, allow_empty=False, needs_assistant=True)
        kinds[column] = "standard" if isinstance(value, str) else "conversational"
    if row["corrected"] == row["erroneous"]:
        raise data_error(source, i, "erroneous", "equals 'corrected'; an Agent DPO pair needs the erroneous step and its correction")
    return {}


def _as_messages(value) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return [value] if isinstance(value, dict) else list(value)


def step_pairs_to_pairs(rows: list[dict]) -> list[dict]:
    """Agent DPO rows -> preference rows: chosen = the corrected step, rejected = the erroneous one.

    All strings stay strings; otherwise every cell becomes messages (a string prompt a user turn, a
    string step an assistant turn). The other columns (`tools`, ids, ...) are kept.
    """
    out = []
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in STEP_COLUMNS}
        prompt, good, bad = row["prompt"], row["corrected"], row["erroneous"]
        if not all(isinstance(v, str) for v in (prompt, good, bad)):
            prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            good, bad = _as_messages(good), _as_messages(bad)
        out.append({**extra, "prompt": prompt, "chosen": good, "rejected": bad})
    return out
