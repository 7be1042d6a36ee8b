"""The training loop's pieces: gradient clipping bounds the update, and eval batches cover every item once."""

import pytest
import torch

from posttrain.train.loop import eval_batches
from posttrain.train.precision import Precision


def test_clipping_bounds_the_update():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    opt = torch.optim.SGD([p], lr=1.0)
    norm, stepped = Precision("no", torch.device("cpu")).step(opt, [p], max_norm=1.0)
    assert norm == pytest.approx(5.0) and stepped
    torch.testing.assert_close(p.detach(), torch.tensor([-0.6, -0.8, 0.0]))


def test_eval_batches_cover_every_item_once():
    batches = eval_batches(list(range(10)), lambda items: {"items": items}, batch_size=4)
    assert [b["items"] for b in batches] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_an_own_optimizer_is_two_adamws_each_with_its_learning_rate_and_clip():
    """build_optimizer(own=(("v_head",), 0.05)) + Precision.step(own_params=...) update the model exactly as
    two AdamWs would, the trunk's at learning_rate 0.01 and the head's at 0.05, each gradient clipped to norm
    1 on its own (one clip over both would scale the small trunk gradient down with the head's)."""
    from types import SimpleNamespace

    from posttrain.train.loop import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"trunk": torch.nn.Linear(3, 3), "v_head": torch.nn.Linear(3, 1)})
    twin = {k: torch.nn.Linear(m.in_features, m.out_features) for k, m in model.items()}
    for k in twin:
        twin[k].load_state_dict(model[k].state_dict())
    config = SimpleNamespace(learning_rate=0.01, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)
    opt = build_optimizer(model, config, own=(("v_head",), 0.05))
    assert sorted((g["lr"], g["clip"], len(g["params"])) for g in opt.param_groups) == [(0.01, 0, 1), (0.01, 0, 1), (0.05, 1, 1), (0.05, 1, 1)]
    twin_opts = {k: torch.optim.AdamW(twin[k].parameters(), lr=lr, weight_decay=0.0, fused=True) for k, lr in (("trunk", 0.01), ("v_head", 0.05))}
    x = torch.randn(4, 3)
    for _ in range(3):
        for modules in (model, twin):
            (modules["trunk"](x).pow(2).sum() * 0.1 + modules["v_head"](x).pow(2).sum() * 100).backward()
        trunk, head = list(model["trunk"].parameters()), list(model["v_head"].parameters())
        norm, stepped = Precision("no", torch.device("cpu")).step(opt, trunk, 1.0, own_params=head)
        twin_norms = [float(torch.nn.utils.clip_grad_norm_(twin[k].parameters(), 1.0)) for k in ("trunk", "v_head")]
        assert stepped and norm == pytest.approx(twin_norms[0]) and twin_norms[1] > 1.0 > twin_norms[0]
        for k in twin_opts:
            twin_opts[k].step()
            twin_opts[k].zero_grad()
        opt.zero_grad()
    for k in twin:
        for a, b in zip(model[k].parameters(), twin[k].parameters()):
            torch.testing.assert_close(a, b)
