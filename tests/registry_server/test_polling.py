"""The batched PostgreSQL ETag lookup behind the 304 polling path (registry_server.polling)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from registry_server.polling import AsyncPostgresEtagLookup, etag_lookup_for

# The batched lookup is PostgreSQL's (SQLite's is queried inline): the registry fixtures run on
# PostgreSQL only here.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


@pytest.fixture
def packages(acme, make_patch):
    for package in ("toxicity", "bias", "refusal"):
        response = acme.upload(make_patch(name=f"acme/{package}"), path=f"acme/{package}")
        assert response.status_code == 201, response.text
    return acme


def _lookup(harness, **options: float) -> AsyncPostgresEtagLookup:
    lookup = etag_lookup_for(harness.engine)
    assert isinstance(lookup, AsyncPostgresEtagLookup)
    if options:
        url = harness.engine.url.set(drivername="postgresql")
        lookup = AsyncPostgresEtagLookup(url.render_as_string(hide_password=False), **options)  # type: ignore[arg-type]
    return lookup


def _admin(harness) -> psycopg.Connection:
    url = harness.engine.url.set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def _etags(harness) -> dict[str, str]:
    return {
        name: harness.client.get(f"/api/v1/packages/acme/{name}").headers["etag"]
        for name in ("toxicity", "bias", "refusal")
    }


def test_concurrent_lookups_are_answered_by_shared_queries(packages) -> None:
    expected = _etags(packages)
    lookup = _lookup(packages)
    queries: list[int] = []
    run_query = lookup._query

    async def counted(batcher, slot, keys):
        queries.append(len(keys))
        return await run_query(batcher, slot, keys)

    lookup._query = counted  # type: ignore[method-assign]
    names = ["toxicity", "bias", "refusal", "missing"] * 15

    async def scenario() -> list[str | None]:
        try:
            return await asyncio.gather(*(lookup.fetch("acme", name) for name in names))
        finally:
            await lookup.aclose()

    answers = asyncio.run(scenario())
    assert answers == [expected.get(name) for name in names]
    assert len(queries) <= 2, queries  # 60 lookups, four distinct keys
    assert sum(queries) <= 8


@pytest.mark.parametrize("connections", [1, 2])
def test_a_lookup_never_joins_a_query_already_running(packages, connections: int) -> None:
    """A lookup asked after a change sees the change, even while an older query is running."""
    old = _etags(packages)["toxicity"]
    lookup = _lookup(packages, connections=connections)
    run_query = lookup._query
    first_has_read = asyncio.Event()
    release_first = asyncio.Event()

    async def first_held(batcher, slot, keys):
        rows = await run_query(batcher, slot, keys)
        if not first_has_read.is_set():
            first_has_read.set()
            await release_first.wait()
        return rows

    lookup._query = first_held  # type: ignore[method-assign]

    async def scenario() -> tuple[str | None, str | None]:
        try:
            early = asyncio.create_task(lookup.fetch("acme", "toxicity"))
            await first_has_read.wait()
            with _admin(packages) as admin:
                admin.execute("UPDATE packages SET index_etag = 'changed' WHERE name = 'toxicity'")
            late = asyncio.create_task(lookup.fetch("acme", "toxicity"))
            await asyncio.sleep(0.05)
            release_first.set()
            return await early, await late
        finally:
            await lookup.aclose()

    early, late = asyncio.run(scenario())
    assert early == old
    assert late == '"changed"'


def test_a_stuck_query_fails_within_the_timeout_and_the_lookup_recovers(packages) -> None:
    expected = _etags(packages)["toxicity"]
    lookup = _lookup(packages, query_timeout=0.5)

    async def scenario() -> tuple[float, str | None]:
        try:
            assert await lookup.fetch("acme", "toxicity") == expected
            with _admin(packages) as admin, admin.transaction():
                # The lookup's query waits behind this lock, as behind a hung database.
                admin.execute("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                with pytest.raises(OperationalError):
                    await lookup.fetch("acme", "toxicity")
                waited = time.monotonic() - started
            return waited, await lookup.fetch("acme", "toxicity")
        finally:
            await lookup.aclose()

    waited, after = asyncio.run(scenario())
    # The lock is held until the failure is raised, so the query cannot have finished: it was
    # its own 0.5 s timeout that ended it, which the lower bound confirms (scheduling only ever
    # adds time). The upper bound only tells a hang from a timeout, 60 times the timeout so a
    # loaded machine cannot trip it; speed is not what this test checks.
    assert 0.45 <= waited < 30
    assert after == expected


def test_a_cancelled_request_leaves_the_others_answered(packages) -> None:
    expected = _etags(packages)["bias"]
    lookup = _lookup(packages)

    async def scenario() -> str | None:
        try:
            gone = asyncio.create_task(lookup.fetch("acme", "bias"))
            kept = asyncio.create_task(lookup.fetch("acme", "bias"))
            await asyncio.sleep(0)  # both are queued
            gone.cancel()
            return await kept
        finally:
            await lookup.aclose()

    assert asyncio.run(scenario()) == expected


def test_closing_ends_the_requests_still_waiting(packages) -> None:
    lookup = _lookup(packages, connections=1)
    run_query = lookup._query
    hold = asyncio.Event()

    async def held(batcher, slot, keys):
        await hold.wait()
        return await run_query(batcher, slot, keys)

    lookup._query = held  # type: ignore[method-assign]

    async def scenario() -> list[BaseException | str | None]:
        running = asyncio.create_task(lookup.fetch("acme", "toxicity"))
        await asyncio.sleep(0.01)
        queued = asyncio.create_task(lookup.fetch("acme", "bias"))
        await asyncio.sleep(0.01)
        await lookup.aclose()
        return await asyncio.wait_for(
            asyncio.gather(running, queued, return_exceptions=True), timeout=5
        )

    outcomes = asyncio.run(scenario())
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes), outcomes
