"""The signed index's metadata versions on SQLite and on PostgreSQL: made once, served by every
process alike, a new version for each change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from registry_server import tuf_repo
from tests.registry_server.conftest import Harness
from tests.registry_server.test_tuf import Signed


def test_versions_move_with_the_database_and_only_then(
    acme: Harness, tmp_path: Path, make_patch: Callable[..., bytes]
) -> None:
    signed = Signed(acme, tmp_path)
    first = json.loads(signed.get("/tuf/timestamp.json"))["signed"]
    assert signed.get("/tuf/timestamp.json") == signed.get("/tuf/timestamp.json")
    assert acme.upload(make_patch()).status_code == 201
    second = json.loads(signed.get("/tuf/timestamp.json"))["signed"]
    assert second["version"] == first["version"] + 1
    assert signed.refreshed().get_targetinfo("packages/acme/toxicity/1.0.0/" + "a" * 64 + ".ppatch")
    with acme.session() as session:
        # A second process finding the same state makes nothing new.
        again = tuf_repo.current_metadata(session, signed.online, tuf_repo.Lifetimes())
        assert again.version == second["version"]
        rows = [tuf_repo.latest(session, role) for role in ("targets", "snapshot", "timestamp")]
        assert [row.version for row in rows if row is not None] == [2, 2, 2]
