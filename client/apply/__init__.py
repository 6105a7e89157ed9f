"""Running a model with patches: the prefix cache, `PatchedModel`, loading, PEFT interop.

This package's `__init__` stays empty on purpose: `import ppatch` imports it (see
`ppatch/__init__.py`), and nothing here may pull torch in. Import the modules themselves:
`ppatch.apply.patched_model`, `ppatch.apply.prefix`, `ppatch.apply.loading`,
`ppatch.apply.peft_interop`.
"""

__all__: list[str] = []
