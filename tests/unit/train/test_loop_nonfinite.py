"""A step whose loss or gradient is not finite changes nothing and is counted; `max_nonfinite_steps`
such steps in a row stop the run with one clear error; all ranks decide together.

The non-finite values are real: a forward hook on the input embeddings sets one position to inf on
chosen forward calls, so the model's own forward gives a NaN loss and its backward NaN gradients."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch

from conftest import read_metrics, sft_config, sft_rows, write_jsonl
from gloo_processes import run_in_two_processes
from posttrain.algorithms.sft import SFT, as_rows, load_examples
from posttrain.data.steps import OfflineSource
from posttrain.errors import ConfigError, NonFiniteError
from posttrain.train.checkpoint import list_checkpoints
from posttrain.train.loop import build_optimizer, train, train_step
from posttrain.train.precision import Precision
from posttrain.train.scaffold import load_model_for, load_tokenizer_for
from posttrain.train.schedule import build_scheduler


TINY_MODEL_ENV = "POSTTRAIN_TEST_TINY_MODEL"


class PoisonedEmbeddings:
    """On the forward calls numbered in `calls` (1-based), the first position's input embedding becomes inf."""

    def __init__(self, model, calls):
        self.calls, self.count = set(calls), 0
        model.get_input_embeddings().register_forward_hook(self)

    def __call__(self, module, args, output):
        self.count += 1
        if self.count in self.calls:
            output = output.clone()
            output[:, 0] = float("inf")
            return output
        return None


def setup_run(tiny_llama, tmp_path, **values):
    config = sft_config(model=tiny_llama, dataset=write_jsonl(tmp_path / "train.jsonl", sft_rows(24)), output_dir=str(tmp_path / "run"),
                        batch_size=2, max_steps=6, **values)
    tokenizer = load_tokenizer_for(config)
    items = as_rows(load_examples(tokenizer, config.dataset, None, config), config)
    return config, tokenizer, SFT(tokenizer.pad_token_id), items


def test_a_step_with_a_nan_loss_leaves_weights_optimizer_and_schedule_as_they_were(tiny_llama, tmp_path):
    config, _, algorithm, items = setup_run(tiny_llama, tmp_path, lr_scheduler="linear")
    model = load_model_for(config, device="cpu")
    poison = PoisonedEmbeddings(model, calls=[2])
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, 6, "linear")
    precision, cpu = Precision("no", torch.device("cpu")), torch.device("cpu")
    batch = [algorithm.collate(items[:2])]

    metrics, _, stepped = train_step(model, algorithm, batch, optimizer, scheduler, precision, config, cpu)
    assert stepped and metrics["loss"] > 0  # a normal step, so the optimizer has state to keep
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    optim_state, lr = copy.deepcopy(optimizer.state_dict()), scheduler.get_last_lr()

    metrics, _, stepped = train_step(model, algorithm, batch, optimizer, scheduler, precision, config, cpu)
    assert poison.count == 2 and not stepped
    assert torch.isnan(torch.tensor(metrics["loss"])) and torch.isnan(torch.tensor(metrics["grad_norm"]))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    after = optimizer.state_dict()
    assert after["param_groups"] == optim_state["param_groups"] and scheduler.get_last_lr() == lr
    for i, state in optim_state["state"].items():
        assert all(torch.equal(v, after["state"][i][k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())

    _, _, stepped = train_step(model, algorithm, batch, optimizer, scheduler, precision, config, cpu)
    assert stepped and not all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_a_nonfinite_gradient_skips_the_step_even_with_a_finite_loss():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([float("inf"), 1.0, 0.0])
    opt = torch.optim.AdamW([p], lr=1.0)
    norm, stepped = Precision("no", torch.device("cpu")).step(opt, [p], max_norm=1.0)
    assert norm == float("inf") and not stepped
    assert torch.equal(p.detach(), torch.zeros(3)) and opt.state_dict()["state"] == {}


def test_fp16_loss_scaling_skips_a_nan_loss_and_keeps_working():
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.5)
    precision = Precision("fp16", torch.device("cpu"))
    scale = precision.scaler.get_scale()
    for value, expect_step in ((float("nan"), False), (1.0, True)):
        precision.backward((p * value).sum())
        _, stepped = precision.step(opt, [p], max_norm=0.0, loss_is_finite=value == value)
        opt.zero_grad(set_to_none=True)
        assert stepped == expect_step
    assert precision.scaler.get_scale() < scale  # the NaN step lowered the scale, as an overflow does
    torch.testing.assert_close(p.detach(), torch.tensor([0.5, 0.5]))  # only the finite step moved p


def test_a_skipped_step_is_counted_and_the_run_goes_on(tiny_llama, tmp_path, capsys):
    config, tokenizer, algorithm, items = setup_run(tiny_llama, tmp_path, save_steps=2, keep_last=0)
    source = OfflineSource(items, algorithm.collate, config.batch_size, 1, config.seed)

    def build_model():
        model = load_model_for(config, device="cpu")
        PoisonedEmbeddings(model, calls=[3])
        return model

    train(config, build_model=build_model, tokenizer=tokenizer, algorithm=algorithm, source=source)
    records = read_metrics(config.output_dir)
    assert [r["nonfinite"] for r in records] == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert [r["nonfinite_steps"] for r in records] == [0, 0, 1, 1, 1, 1]
    assert "loss" not in records[2] and all(r["loss"] > 0 for r in records if r["step"] != 3)
    assert (tmp_path / "run" / "final").is_dir()
    err = capsys.readouterr().err
    assert "posttrain: warning: step 3: loss nan, grad_norm nan, not finite; the step was skipped" in err


def test_max_nonfinite_steps_in_a_row_stop_the_run_with_the_last_good_checkpoint(tiny_llama, tmp_path):
    config, tokenizer, algorithm, items = setup_run(tiny_llama, tmp_path, save_steps=2, keep_last=0, max_nonfinite_steps=3)
    source = OfflineSource(items, algorithm.collate, config.batch_size, 1, config.seed)

    def build_model():
        model = load_model_for(config, device="cpu")
        PoisonedEmbeddings(model, calls=range(3, 100))
        return model

    with pytest.raises(NonFiniteError, match=r"training stopped at step 5 of 6: the loss or gradient was not finite for 3 steps "
                                             r"in a row \(max_nonfinite_steps=3.*checkpoints/step-4 is the last checkpoint"):
        train(config, build_model=build_model, tokenizer=tokenizer, algorithm=algorithm, source=source)
    last = read_metrics(config.output_dir)[-1]
    assert (last["step"], last["nonfinite"], last["nonfinite_steps"]) == (5, 1.0, 3) and "loss" not in last
    assert not (tmp_path / "run" / "final").exists()
    # steps 3 and 4 made no update: the checkpoint of step 4 (saved on a skipped step) holds step 2's weights, all finite
    (two, ckpt2), (four, ckpt4) = list_checkpoints(tmp_path / "run" / "checkpoints")
    w2, w4 = torch.load(ckpt2 / "model.pt"), torch.load(ckpt4 / "model.pt")
    assert (two, four) == (2, 4) and all(torch.equal(w2[k], w4[k]) and torch.isfinite(w4[k]).all() for k in w2)


def test_max_nonfinite_steps_is_validated():
    with pytest.raises(ConfigError, match="'max_nonfinite_steps' must be >= 0"):
        sft_config(max_nonfinite_steps=-1)


def _one_rank_poisoned(rank: int):
    """Both ranks train the same FSDP2-sharded model (the parent's tiny_llama, named in TINY_MODEL_ENV);
    only rank 1's forward is poisoned, on the second step."""
    from posttrain.train import distributed
    from posttrain.train.loop import _seed_everything

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = sft_config(model=os.environ[TINY_MODEL_ENV], dataset="unused.jsonl", output_dir=tmp, batch_size=1)
        tokenizer = load_tokenizer_for(config)
        algorithm = SFT(tokenizer.pad_token_id)
        ids = [tokenizer(f"What is {rank} + {i}? {i + rank}")["input_ids"] for i in range(2)]
        rows = [[{"input_ids": x, "completion_mask": [0] * (len(x) - 3) + [1] * 3}] for x in ids]
        _seed_everything(0)
        model = load_model_for(config, device="cpu")
        PoisonedEmbeddings(model, calls=[2] if rank == 1 else [])
        model = distributed.shard_model(model, torch.device("cpu"))
        optimizer = build_optimizer(model, config)
        scheduler = build_scheduler(optimizer, 4, "constant")
        precision, out = Precision("no", torch.device("cpu")), []
        for row in rows:
            before = [p.detach().to_local().clone() for p in model.parameters()]  # this rank's shards
            metrics, _, stepped = train_step(model, algorithm, [algorithm.collate([row])], optimizer, scheduler, precision, config, torch.device("cpu"))
            after = [p.detach().to_local() for p in model.parameters()]
            out.append((stepped, metrics["loss"] == metrics["loss"], all(torch.equal(a, b) for a, b in zip(before, after))))
        return out


def test_all_ranks_skip_together_when_one_rank_has_a_nan_loss(tiny_llama, monkeypatch):
    """Rank 0's second loss is finite, rank 1's is NaN: both skip that step (rank 0 alone would have
    stepped, and the ranks' weights would part), and both stepped on the first."""
    monkeypatch.setenv(TINY_MODEL_ENV, tiny_llama)  # the spawned processes inherit it
    results = run_in_two_processes(_one_rank_poisoned)
    for rank in range(2):
        assert results[rank] == [(True, True, False), (False, False, True)], rank
