"""A miniature of the paper's world: tiny models and prompt files built locally, no downloads."""

from ppatch.miniature.world import World, WorldConfig, build_world, save_untrained_model

__all__ = ["World", "WorldConfig", "build_world", "save_untrained_model"]
