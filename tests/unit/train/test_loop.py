"""The training loop's pieces: gradient clipping bounds the update, and eval batches cover every item once."""

import pytest
import torch

from posttrain.train.loop import Precision, eval_batches


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
