"""Train a policy patch: a soft prompt fitted by SFT then DPO on a frozen base model.

torch and transformers load only when a function that touches a model runs.
"""

from ppatch.train.config import TrainConfig
from ppatch.train.pipeline import train_patch

__all__ = ["TrainConfig", "train_patch"]
