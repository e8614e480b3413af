"""The training engine: one loop for every model in the zoo.

    import archzoo
    summary = archzoo.train("resnet20", "digits", epochs=30, out="runs/r20")

:class:`Trainer` runs epochs (optimizer, schedule, EMA, precision, DDP, checkpoints, resume);
a :class:`Task` supplies what is task-specific (:class:`ClassificationTask` for classifiers);
:class:`TrainConfig` is the recipe. Only torch is imported here; pictures and TensorBoard load
when used.
"""

from .api import load_training_data, train
from .config import TrainConfig
from .task import ClassificationTask, Task
from .trainer import Trainer, TrainingDiverged

__all__ = ["ClassificationTask", "Task", "TrainConfig", "Trainer", "TrainingDiverged", "load_training_data", "train"]
