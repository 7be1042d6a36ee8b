"""Learning-rate schedules equal transformers' (cosine, linear, constant, with warmup); warmup steps from a ratio."""

import pytest
import torch
import transformers

from posttrain.train.schedule import lr_multiplier, warmup_steps_for


@pytest.mark.parametrize("kind,hf", [
    ("cosine", transformers.get_cosine_schedule_with_warmup),
    ("linear", transformers.get_linear_schedule_with_warmup),
    ("constant", lambda opt, w, t: transformers.get_constant_schedule_with_warmup(opt, w)),
])
def test_schedule_matches_transformers(kind, hf):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = hf(opt, 3, 20)
    for step in range(20):
        assert lr_multiplier(step, 20, 3, kind) == pytest.approx(sched.get_last_lr()[0], abs=1e-12)
        opt.step()
        sched.step()
    assert warmup_steps_for(100, 0, 0.05) == 5 and warmup_steps_for(100, 7, 0.05) == 7
