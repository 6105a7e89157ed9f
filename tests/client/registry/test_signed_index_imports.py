"""Loading python-tuf for the signed index leaves optional cloud SDKs unimported."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from ppatch.registry.signed_index import _without_signer_sdks
with _without_signer_sdks():
    from tuf.ngclient import Updater
assert "boto3" not in sys.modules, "boto3 was imported"
if {installed}:
    import boto3  # still importable afterwards
    assert sys.modules["boto3"] is boto3
print("ok")
"""

ALREADY = """
import sys
import boto3
from ppatch.registry.signed_index import _without_signer_sdks
with _without_signer_sdks():
    from tuf.ngclient import Updater
import securesystemslib.signer._aws_signer as aws
assert sys.modules["boto3"] is boto3 and aws.AWS_IMPORT_ERROR is None
print("ok")
"""


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_tuf_loads_without_boto3_which_still_imports_afterwards() -> None:
    installed = importlib.util.find_spec("boto3") is not None
    assert run(SCRIPT.format(installed=installed)) == "ok"


def test_an_sdk_already_imported_is_left_alone() -> None:
    pytest.importorskip("boto3")
    assert run(ALREADY) == "ok"
