"""The one training loop (layer 6): an algorithm gives a loss and its micro-batches; the loop does the rest."""

from posttrain.data.steps import OfflineSource, StepSource
from posttrain.train.loop import Algorithm, evaluate, train

__all__ = ["Algorithm", "OfflineSource", "StepSource", "evaluate", "train"]
