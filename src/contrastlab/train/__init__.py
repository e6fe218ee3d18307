"""Training: config, objective, the loop, checkpoints and run directories.

Needs the ``train`` extra (pydantic, PyYAML, tqdm).
"""

from contrastlab.train.callbacks import Callback, Control
from contrastlab.train.checkpoint import CheckpointError, load_checkpoint, read_history
from contrastlab.train.config import ConfigError, TrainConfig, load_config
from contrastlab.train.config import validate as validate_config
from contrastlab.train.objective import Objective, scheduled_weight
from contrastlab.train.rundir import RunDir, RunDirError
from contrastlab.train.trainer import RunResult, StepState, TrainingDiverged, train

__all__ = [
    "Callback",
    "CheckpointError",
    "ConfigError",
    "Control",
    "Objective",
    "RunDir",
    "RunDirError",
    "RunResult",
    "StepState",
    "TrainConfig",
    "TrainingDiverged",
    "load_checkpoint",
    "load_config",
    "read_history",
    "scheduled_weight",
    "train",
    "validate_config",
]
