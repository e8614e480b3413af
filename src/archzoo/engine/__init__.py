"""The training engine: one loop for every model in the zoo.

    import archzoo
    summary = archzoo.train("resnet20", "digits", epochs=30, out="runs/r20")

:class:`Trainer` runs epochs (optimizer, schedule, EMA, precision, DDP, checkpoints, resume);
a :class:`Task` supplies what is task-specific (:class:`ClassificationTask`,
:class:`SegmentationTask`, :class:`DetectionTask`; :func:`make_task` picks one by name);
:class:`TrainConfig` is the recipe. Only torch is imported here; pictures and TensorBoard load
when used.
"""

from .api import load_training_data, train
from .config import TrainConfig
from .detection import DetectionTask
from .segmentation import SegmentationTask
from .task import ClassificationTask, Task, make_task
from .trainer import Trainer, TrainingDiverged

__all__ = ["ClassificationTask", "DetectionTask", "SegmentationTask", "Task", "TrainConfig", "Trainer",
           "TrainingDiverged", "load_training_data", "make_task", "train"]
