"""A miniature of the paper's world: tiny models and prompt files built locally, no downloads.

Import the modules by their full names (`ppatch.miniature.world.build_world`): the package
imports nothing, so its modules can import each other without a cycle.
"""

__all__: list[str] = []
