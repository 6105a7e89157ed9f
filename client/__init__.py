"""ppatch: safety patches for language models, installed and applied like software fixes.

The model-facing API (`load_model`, `apply`) imports torch only when called, so importing
`ppatch` stays cheap for registry-facing tools.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
