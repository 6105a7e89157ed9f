"""The registry's fixtures (a clean database on SQLite and PostgreSQL, the app behind a
TestClient, namespaces and tokens), shared with tests/registry_server rather than copied.

The suite imports test files with `--import-mode=importlib`, so a conftest of a sibling folder
is not visible here: load it by path and re-export its fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.hardening import live_registry as live


def _registry_conftest() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "registry_server" / "conftest.py"
    spec = importlib.util.spec_from_file_location("registry_server_test_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


_fixtures = _registry_conftest()
Harness = _fixtures.Harness
build_patch = _fixtures.build_patch
signing_key = _fixtures.signing_key
other_key = _fixtures.other_key
make_patch = _fixtures.make_patch
postgres_database = _fixtures.postgres_database
sqlite_template = _fixtures.sqlite_template
database_url = _fixtures.database_url
settings = _fixtures.settings
harness = _fixtures.harness
acme = _fixtures.acme


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new, migrated SQLite registry database for a `serve` subprocess."""
    return live.sqlite_database(tmp_path)
