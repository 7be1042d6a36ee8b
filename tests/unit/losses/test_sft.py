"""The SFT loss: a token mean over the whole batch (not a mean of per-sequence means) that micro-batches add up
to, computed in float32 from half-precision logits."""

import torch
import torch.nn.functional as F

from posttrain.data.collate import IGNORE_INDEX
from posttrain.losses import count_tokens, sft_loss


def test_loss_is_token_mean_over_the_batch_not_mean_of_means():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[1, 2, 3, 4, 5, 6], [7, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    nll = -torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    mask = labels != IGNORE_INDEX
    token_mean = nll[mask].sum() / mask.sum()
    mean_of_means = torch.stack([nll[i][mask[i]].mean() for i in range(2)]).mean()
    assert count_tokens(labels) == 7
    torch.testing.assert_close(sft_loss(logits, labels, num_tokens=count_tokens(labels)), token_mean)
    assert not torch.allclose(token_mean, mean_of_means)
    # split into micro-batches normalised by the whole batch's count: the sum is the large-batch loss
    parts = sft_loss(logits[:1], labels[:1], num_tokens=7) + sft_loss(logits[1:], labels[1:], num_tokens=7)
    torch.testing.assert_close(parts, token_mean)


def test_loss_upcasts_half_precision_logits():
    logits = torch.randn(5, 50).to(torch.bfloat16)
    labels = torch.arange(5)
    ref = F.cross_entropy(logits.float(), labels, reduction="sum")
    assert sft_loss(logits, labels).dtype == torch.float32
    torch.testing.assert_close(sft_loss(logits, labels), ref)
