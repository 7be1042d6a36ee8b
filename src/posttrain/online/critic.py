"""The critic of online RL: V(s_t) at every completion token, and its (clipped) value loss.

Two kinds (`critic=`):
    value_head  one linear layer on the policy's own trunk: one forward gives log-probs and values
                (the hidden states the output head reads, those that predict a completion token)
    model       a separate trunk with its own head (InstructGPT's critic): a copy of the reward
                model's trunk when there is one (the seed's warm start, S3 L1249-1258), else of the
                policy's. Twice the memory and a second forward, but the value loss never reaches
                the policy's weights.

Either way the head starts from the reward model's score head when `reward_model` is given, else
from zero (V = 0). The critic is attached to the policy as submodules (`v_head`, `critic_trunk`), so
the one optimizer, the checkpoints and LoRA cover it; `final/` leaves it out (the actor alone).
"""

from __future__ import annotations

import contextlib
import copy

import torch

from posttrain.models.shared_prefix_attention import shared_prefix_attention

CRITICS = ("value_head", "model")


def unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class Critic:
    def __init__(self, kind: str, reward_model: str | None = None, pad_token_id: int | None = None):
        if kind not in CRITICS:
            raise ValueError(f"critic must be one of {CRITICS}, got {kind!r}")
        self.kind, self.reward_model, self.pad_token_id = kind, reward_model, pad_token_id

    def attach(self, model):
        """Give the model its critic (once; a model rebuilt for saving gets one too, so the trained
        weights load into it), kept out of `save_pretrained`. Returns the model."""
        base = unwrap(model)
        if hasattr(base, "v_head"):
            return model
        rm = None
        if self.reward_model:
            from posttrain.models.reward_model import REWARD_MODEL_HINT, load_reward_model

            rm = load_reward_model(self.reward_model, self.pad_token_id, option="reward_model", hint=REWARD_MODEL_HINT)
        if self.kind == "model":
            trunk = (rm if rm is not None else base).base_model
            base.critic_trunk = copy.deepcopy(trunk).to(next(base.parameters()).dtype)
        base.v_head = torch.nn.Linear(base.config.hidden_size, 1).to(next(base.parameters()).dtype)
        with torch.no_grad():
            if rm is not None:  # warm start from the reward model's score head
                from posttrain.models.reward_model import reward_offset, score_head

                base.v_head.weight.copy_(score_head(rm).weight)
                base.v_head.bias.fill_(reward_offset(rm))
            else:
                base.v_head.weight.zero_()
                base.v_head.bias.zero_()
        critic_keys = [k for k in base.state_dict() if k.startswith(("v_head.", "critic_trunk."))]
        base._keys_to_ignore_on_save = set(base._keys_to_ignore_on_save or ()) | set(critic_keys)  # final/ is the actor alone
        return model

    def trainable(self, model) -> None:
        """The critic trains even when LoRA froze the policy's weights."""
        base = unwrap(model)
        base.v_head.requires_grad_(True)
        if self.kind == "model":
            base.critic_trunk.requires_grad_(True)

    def values(self, model, batch: dict, policy_hidden: torch.Tensor) -> torch.Tensor:
        """V at each completion token, (N,) in the order of batch["targets"]. `policy_hidden` is what
        the policy's output head read for those tokens (used by the value head on the shared trunk)."""
        base = unwrap(model)
        if self.kind == "value_head":
            return base.v_head(policy_hidden).float()[:, 0]
        targets = batch["targets"]
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "prefix_groups") if k in batch}
        trunk = base.critic_trunk
        with shared_prefix_attention(trunk) if "prefix_groups" in batch else contextlib.nullcontext():
            hidden = trunk(**inputs, use_cache=False).last_hidden_state
        return base.v_head(hidden[targets.rows, targets.cols]).float()[:, 0]
