"""The ppatch registry: a FastAPI service that stores, indexes and serves signed `.ppatch` files.

`create_app(settings)` in `registry_server.main` builds the application; `ppatch-registry`
(`registry_server.cli`) serves it and runs the admin commands.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
