"""The update check: one `POST /api/v1/updates` for everything installed, run from cron.

`check_updates` sends it over the standard library (`ppatch.registry.json_transport`), so `ppatch
outdated` does not import httpx, which takes longer to import than the whole check otherwise
takes. Where a proxy applies to the registry it goes through `RegistryClient` instead, which
honours the proxy variables; the answer and the errors are the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ppatch.registry.direct_http import direct_connection_possible
from ppatch.registry.errors import refuse_offline

__all__ = ["UPDATES_PATH", "check_updates", "update_results", "updates_request"]

UPDATES_PATH = "/api/v1/updates"
JsonObject = dict[str, Any]


def updates_request(installed: Sequence[Mapping[str, str]]) -> JsonObject:
    """The request body: each installed package's name, version and model fingerprint."""
    return {"installed": [dict(item) for item in installed]}


def update_results(answer: Mapping[str, Any]) -> list[JsonObject]:
    """The per-package results of an answer; anything that is not an object is dropped."""
    results = answer.get("results", [])
    return [item for item in results if isinstance(item, dict)] if isinstance(results, list) else []


def check_updates(
    registry: str,
    installed: Sequence[Mapping[str, str]],
    *,
    token: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> list[JsonObject]:
    """Ask `registry` about every (name, version, fingerprint) in `installed` at once.

    Raises `NetworkError` when `PPATCH_OFFLINE` is set or the registry cannot be reached, and
    the mapped `RegistryError` when it refuses.
    """
    base_url = registry.rstrip("/")
    refuse_offline(base_url, "an update check")
    if not direct_connection_possible(base_url + UPDATES_PATH):
        from ppatch.registry.client import RegistryClient

        with RegistryClient(base_url, token=token, timeout=timeout, retries=retries) as client:
            return client.check_updates(installed)
    from ppatch.registry.json_transport import JsonTransport

    transport = JsonTransport(base_url, token=token, timeout=timeout, retries=retries)
    # Read-only on the server, so as safe to repeat as a GET (as RegistryClient treats it).
    answer = transport.request(
        "POST", UPDATES_PATH, body=updates_request(installed), idempotent=True
    )
    return update_results(answer)
