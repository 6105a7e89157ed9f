"""Running a model with patches: the prefix cache, `PatchedModel`, loading, PEFT interop.

The package is torch-free at import time; import its modules by their full names
(`ppatch.runtime.patched_model`, `ppatch.runtime.prefix`, `ppatch.runtime.loading`,
`ppatch.runtime.peft_interop`, `ppatch.runtime.attention`), which load torch themselves.
"""

__all__: list[str] = []
