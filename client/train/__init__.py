"""Train a policy patch: a soft prompt fitted by SFT then DPO on a frozen base model.

torch and transformers load only when a function that touches a model runs. Import the modules
by their full names (`ppatch.train.pipeline.train_patch`, `ppatch.train.config.TrainConfig`):
the package imports nothing, so its modules can import each other without a cycle.
"""

__all__: list[str] = []
