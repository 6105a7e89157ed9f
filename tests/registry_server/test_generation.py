"""The registry's generation (registry_server.generation): every write replaces it in its own
transaction, nothing else does, and the readers see the committed value at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

import patchfmt
from registry_server import admin
from registry_server.db import create_registry_engine
from registry_server.errors import RegistryError
from registry_server.generation import (
    AsyncPostgresGeneration,
    DbapiGeneration,
    generation_reader_for,
)
from registry_server.migrations import upgrade


def stored_generation(harness) -> str | None:
    """The generation row, read with plain SQL."""
    with harness.engine.connect() as connection:
        return connection.execute(
            text("SELECT generation FROM registry_state WHERE id = 1")
        ).scalar()


@pytest.fixture
def published(acme, make_patch):
    assert acme.upload(make_patch()).status_code == 201
    return acme


def _yank(harness) -> None:
    response = harness.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
        json={"reason": "broken"},
        headers=harness.auth(scope="yank"),
    )
    assert response.status_code == 200, response.text


def _unyank(harness) -> None:
    response = harness.client.post(
        "/api/v1/packages/acme/toxicity/releases/1.0.0/unyank", headers=harness.auth(scope="yank")
    )
    assert response.status_code == 200, response.text


def _publish(harness, make_patch) -> None:
    assert harness.upload(make_patch(version="1.1.0", seed=3)).status_code == 201


def _in_session(step: Callable[..., object]) -> Callable[..., None]:
    def run(harness, _make_patch) -> None:
        with harness.session() as session:
            step(session)
            session.commit()

    return run


def _other_pem() -> bytes:
    return patchfmt.public_key_to_pem(patchfmt.generate_private_key().public_key())


WRITES: dict[str, Callable[..., None]] = {
    "publish": _publish,
    "yank": lambda harness, _: _yank(harness),
    "namespace": _in_session(lambda s: admin.create_namespace(s, "beta", admin.CLI_ACTOR)),
    "token": _in_session(lambda s: admin.create_token(s, "acme", "publish", admin.CLI_ACTOR)),
    "key": _in_session(lambda s: admin.add_key(s, "acme", _other_pem(), admin.CLI_ACTOR)),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_replaces_the_generation(published, make_patch, write) -> None:
    before = stored_generation(published)
    assert before is not None and re.fullmatch(r"[0-9a-f]{32}", before)
    WRITES[write](published, make_patch)
    after = stored_generation(published)
    assert after is not None and re.fullmatch(r"[0-9a-f]{32}", after)
    assert after != before


def test_unyank_and_revocations_replace_it_too(published) -> None:
    _yank(published)
    seen = [stored_generation(published)]
    _unyank(published)
    seen.append(stored_generation(published))
    with published.session() as session:
        key_id = admin.list_keys(session, "acme")[0].key_id
        admin.revoke_key(session, "acme", key_id, admin.CLI_ACTOR)
        session.commit()
    seen.append(stored_generation(published))
    token_id = published.token("acme").split("_")[1]
    with published.session() as session:
        admin.revoke_token(session, "acme", token_id, admin.CLI_ACTOR)
        session.commit()
    seen.append(stored_generation(published))
    assert len(set(seen)) == 4


def test_reads_leave_the_generation_alone(published) -> None:
    before = stored_generation(published)
    for path in ("/api/v1/search?q=tox", "/", "/p/acme/toxicity", "/api/v1/packages/acme/toxicity"):
        assert published.client.get(path).status_code == 200
    assert published.client.post("/api/v1/updates", json={"installed": []}).status_code == 200
    assert stored_generation(published) == before


def test_a_write_rolled_back_leaves_it_alone(published) -> None:
    before = stored_generation(published)
    with published.session() as session:
        admin.record_audit(session, admin.CLI_ACTOR, "acme", "release.yank", "acme/toxicity")
        session.rollback()
        session.commit()  # a later commit of nothing: the rolled-back mark is forgotten
    with published.session() as session, pytest.raises(RegistryError):
        admin.create_namespace(session, "acme", admin.CLI_ACTOR)  # exists: refused
    assert stored_generation(published) == before


def test_a_missing_row_is_written_again_by_the_next_write(published, make_patch) -> None:
    with published.engine.begin() as connection:
        connection.execute(text("DELETE FROM registry_state"))
    assert stored_generation(published) is None
    _publish(published, make_patch)
    assert re.fullmatch(r"[0-9a-f]{32}", stored_generation(published) or "")


def test_a_migrated_database_starts_with_a_generation(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = create_registry_engine(url)
    upgrade(engine)
    engine.dispose()
    plain = create_engine(url)
    with plain.connect() as connection:
        rows = connection.execute(text("SELECT id, generation FROM registry_state")).all()
    plain.dispose()
    assert len(rows) == 1 and rows[0][0] == 1 and re.fullmatch(r"[0-9a-f]{32}", rows[0][1])


def test_the_reader_sees_each_committed_value(published, make_patch) -> None:
    reader = generation_reader_for(published.engine)
    expected_type = (
        AsyncPostgresGeneration if "postgresql" in str(published.engine.url) else (DbapiGeneration)
    )
    assert isinstance(reader, expected_type)

    async def scenario() -> list[str | None]:
        try:
            seen = [await reader.current()]
            _yank(published)
            seen.append(await reader.current())
            with published.engine.begin() as connection:
                connection.execute(text("DELETE FROM registry_state"))
            seen.append(await reader.current())
            return seen
        finally:
            await reader.aclose()

    first = stored_generation(published)
    seen = asyncio.run(scenario())
    assert seen[0] == first
    assert seen[1] != first and seen[1] is not None
    assert seen[2] is None


def test_the_reader_raises_when_the_database_is_gone(tmp_path) -> None:
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema at all
    reader = generation_reader_for(engine)

    async def scenario() -> None:
        try:
            await reader.current()
        finally:
            await reader.aclose()

    with pytest.raises(OperationalError, match="registry_state"):
        asyncio.run(scenario())
    engine.dispose()
