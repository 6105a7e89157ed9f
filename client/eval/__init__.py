"""Evaluate models with and without patches: toxicity, bias, harm and fluency suites.

Import the modules by their full names (`ppatch.eval.runner.run_eval`, `ppatch.eval.report`):
the package imports nothing, so its modules can import each other without a cycle.
"""

__all__: list[str] = []
