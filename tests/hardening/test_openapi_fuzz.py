"""schemathesis over the registry's own OpenAPI schema, in-process (ASGI): for every operation,
generated requests, valid and invalid (both generation modes), never get a 5xx, and every
response conforms to the schema. Requests carry an admin token of namespace `acme`, so the
write operations are exercised past authentication where the namespace matches."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

import patchfmt
from registry_server import admin
from registry_server.config import Settings
from registry_server.db import create_registry_engine, session_factory
from registry_server.main import create_app
from registry_server.migrations import upgrade


@pytest.fixture(scope="module")
def registry_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    root = tmp_path_factory.mktemp("openapi-fuzz")
    config = Settings(
        home=root / "home",
        database_url=f"sqlite:///{root / 'registry.db'}",
        storage=str(root / "blobs"),
    )
    engine = create_registry_engine(config.resolved_database_url)
    upgrade(engine)
    key = Ed25519PrivateKey.generate()
    with session_factory(engine)() as session:
        admin.create_namespace(session, "acme", admin.CLI_ACTOR)
        admin.add_key(
            session, "acme", patchfmt.public_key_to_pem(key.public_key()), admin.CLI_ACTOR
        )
        token = admin.create_token(session, "acme", "admin", admin.CLI_ACTOR).value
        session.commit()
    app = create_app(config, engine=engine)
    with TestClient(app):  # runs the lifespan once for the whole module
        yield app, token
    engine.dispose()


@pytest.fixture(scope="module")
def api_schema(registry_app: tuple[Any, str]) -> Any:
    app, _ = registry_app
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_no_server_error_and_responses_match_the_schema(
    api_schema: Any, registry_app: tuple[Any, str]
) -> None:
    _, token = registry_app
    headers = {"Authorization": f"Bearer {token}"}
    operations = _operations(api_schema)
    assert len(operations) >= 15, [op.label for op in operations]
    statuses: list[int] = []
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance]
            )
            statuses.append(response.status_code)

        try:
            check()
        except Unsatisfiable:
            # An operation with no parameters or body has no invalid request to generate.
            if mode is GenerationMode.POSITIVE:
                raise
    # Bounded but not trivial: most operations get their 20 examples, and the examples reach
    # past validation into successful answers as well as refusals.
    assert len(statuses) >= 10 * len(operations) * len(GenerationMode)
    assert {200, 201} & set(statuses) and {400, 404} & set(statuses)
    print(f"schemathesis: {len(operations)} operations, {len(statuses)} requests", end=" ")
    print({code: statuses.count(code) for code in sorted(set(statuses))})
