"""Talking to a registry: requests, answers mapped to typed errors, retries, blob downloads.

`ppatch.registry.client.RegistryClient` is the public client. The package's `__init__` imports
nothing, so that `ppatch outdated`'s update check (`ppatch.registry.update_check`, standard
library only) starts without loading httpx.
"""

__all__: list[str] = []
