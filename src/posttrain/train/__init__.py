"""The one training loop (layer 6): an algorithm gives a loss and its micro-batches; the loop does the rest."""

from posttrain.train.loop import Algorithm, OfflineSource, StepSource, evaluate, train

__all__ = ["Algorithm", "OfflineSource", "StepSource", "evaluate", "train"]
