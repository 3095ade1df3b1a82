"""Training: :class:`Trainer` (AdamW, warm-up/cosine, AMP, accumulation, augmentation, curriculum, early
stopping, atomic checkpoints with exact resume, DDP) and task metrics."""

from .metrics import classification_metrics, lm_metrics, multilabel_metrics, regression_metrics, task_metrics
from .trainer import (Trainer, TrainingInterrupted, TrainOptions, TrainResult, check_output_dir,
                      distributed_env, train)

__all__ = [
    "Trainer", "TrainOptions", "TrainResult", "TrainingInterrupted", "train", "check_output_dir",
    "distributed_env",
    "classification_metrics", "multilabel_metrics", "regression_metrics", "lm_metrics", "task_metrics",
]
