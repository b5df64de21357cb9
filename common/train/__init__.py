"""Training: the one loop (`train`, `TrainConfig`), learning-rate schedules, checkpoints and the
from-scratch optimizers.

    from common.train import TrainConfig, train, train_config_for

`loop.py` is the loop, `schedules.py` the learning rate per step, `checkpoint.py` the saved state,
`optim.py` SGD/Adam/AdamW written out by hand (day 11). Their public names are re-exported here.
"""

from common.train.checkpoint import best_path, load_checkpoint, save_checkpoint
from common.train.loop import (
                               TrainConfig,
                               TrainResult,
                               autocast,
                               evaluate,
                               full_split_loss,
                               non_finite,
                               train,
                               train_config_for,
)
from common.train.schedules import SCHEDULES, lr_at

__all__ = ["best_path", "load_checkpoint", "save_checkpoint", "TrainConfig", "TrainResult", "autocast",
           "evaluate", "full_split_loss", "non_finite", "train", "train_config_for", "SCHEDULES", "lr_at"]
