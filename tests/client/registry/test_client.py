"""The HTTP layer against `httpx.MockTransport`: retries, error mapping, ETag cache, downloads."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable

import httpx
import pytest

from ppatch.errors import ExitCode, NetworkError
from ppatch.registry.client import RegistryClient
from ppatch.registry.errors import (
    RegistryNotFoundError,
    RegistryUnavailableError,
    UnexpectedResponseError,
    VersionExistsError,
)

BASE = "https://registry.test"
INDEX = {"namespace": "acme", "name": "toxicity", "releases": []}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A transport handler that answers from a script and records what it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(
    handler: Handler, *, retries: int = 2, token: str | None = None
) -> tuple[RegistryClient, list[float]]:
    pauses: list[float] = []
    client = RegistryClient(
        BASE,
        token=token,
        retries=retries,
        transport=httpx.MockTransport(handler),
        sleep=pauses.append,
    )
    return client, pauses


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}})


def test_get_retries_connection_errors_with_backoff() -> None:
    recorder = Recorder(
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=INDEX),
    )
    client, pauses = client_for(recorder)
    assert client.get_index("acme", "toxicity") == INDEX
    assert len(recorder.requests) == 3
    assert pauses == [0.25, 0.5]


def test_get_retries_5xx_then_raises_the_mapped_error() -> None:
    recorder = Recorder(error(503, "database_unavailable"))
    client, pauses = client_for(recorder)
    with pytest.raises(RegistryUnavailableError) as caught:
        client.get_index("acme", "toxicity")
    assert len(recorder.requests) == 3
    assert caught.value.exit_code == ExitCode.NETWORK
    assert len(pauses) == 2


def test_4xx_is_not_retried() -> None:
    recorder = Recorder(error(404, "not_found"))
    client, _ = client_for(recorder)
    with pytest.raises(RegistryNotFoundError):
        client.get_index("acme", "toxicity")
    assert len(recorder.requests) == 1


def test_unreachable_registry_is_a_network_error_naming_it() -> None:
    client, _ = client_for(Recorder(httpx.ConnectError("connection refused")))
    with pytest.raises(NetworkError) as caught:
        client.search("tox")
    assert caught.value.exit_code == ExitCode.NETWORK
    assert str(caught.value) == (f"cannot reach the registry at {BASE!r}: connection refused")


def test_publish_is_not_retried_after_a_5xx() -> None:
    recorder = Recorder(error(500, "internal"), httpx.Response(201, json={"name": "acme/t"}))
    client, _ = client_for(recorder, token="secret")
    with pytest.raises(RegistryUnavailableError):
        client.publish("acme", "toxicity", "t.ppatch", b"bytes")
    assert len(recorder.requests) == 1
    assert recorder.requests[0].headers["Authorization"] == "Bearer secret"


def test_publish_is_retried_when_the_connection_never_opened() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(201, json={"name": "a/t"}))
    client, _ = client_for(recorder)
    assert client.publish("acme", "toxicity", "t.ppatch", b"bytes") == {
        "name": "a/t",
        "created": True,
    }
    assert len(recorder.requests) == 2
    assert b'name="file"; filename="t.ppatch"' in recorder.requests[1].content


def test_publish_conflict_maps_to_version_exists() -> None:
    client, _ = client_for(Recorder(error(409, "version_exists")))
    with pytest.raises(VersionExistsError):
        client.publish("acme", "toxicity", "t.ppatch", b"bytes")


def test_update_check_is_one_batch_request() -> None:
    results = [{"name": "acme/toxicity", "latest": "1.3.0"}]
    recorder = Recorder(httpx.Response(200, json={"results": results}))
    client, _ = client_for(recorder)
    installed = [
        {"name": "acme/toxicity", "version": "1.2.1", "fingerprint": "sha256:aa"},
        {"name": "acme/bias", "version": "0.1.0", "fingerprint": "sha256:aa"},
    ]
    assert client.check_updates(installed) == results
    assert len(recorder.requests) == 1
    assert json.loads(recorder.requests[0].content) == {"installed": installed}


def test_index_is_revalidated_with_its_etag() -> None:
    recorder = Recorder(
        httpx.Response(200, json=INDEX, headers={"ETag": '"v1"'}), httpx.Response(304)
    )
    client, _ = client_for(recorder)
    assert client.get_index("acme", "toxicity") == INDEX
    assert client.get_index("acme", "toxicity") == INDEX
    assert "If-None-Match" not in recorder.requests[0].headers
    assert recorder.requests[1].headers["If-None-Match"] == '"v1"'


def test_offline_serves_the_cached_index_and_refuses_everything_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(httpx.Response(200, json=INDEX, headers={"ETag": '"v1"'}))
    client, _ = client_for(recorder)
    client.get_index("acme", "toxicity")
    monkeypatch.setenv("PPATCH_OFFLINE", "1")
    assert client.get_index("acme", "toxicity") == INDEX
    with pytest.raises(NetworkError, match="PPATCH_OFFLINE is set"):
        client.get_index("acme", "bias")
    with pytest.raises(NetworkError, match="PPATCH_OFFLINE is set"):
        client.search("tox")
    assert len(recorder.requests) == 1


def test_an_answer_that_is_not_json_says_the_url_may_be_wrong() -> None:
    client, _ = client_for(Recorder(httpx.Response(200, text="<html>welcome</html>")))
    with pytest.raises(UnexpectedResponseError, match=r"is .https://registry\.test. a ppatch"):
        client.get_index("acme", "toxicity")


def test_download_streams_and_hashes() -> None:
    payload = bytes(range(256)) * 5000
    recorder = Recorder(httpx.Response(200, content=payload))
    client, _ = client_for(recorder)
    sink = io.BytesIO()
    seen: list[int] = []
    digest = client.download("/blobs/sha256/abc", sink, on_bytes=seen.append)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert sink.getvalue() == payload
    assert sum(seen) == len(payload)
    assert str(recorder.requests[0].url) == f"{BASE}/blobs/sha256/abc"


def test_download_restarts_from_empty_after_a_dropped_connection() -> None:
    class Flaky(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield b"partial"
            raise httpx.ReadError("connection reset")

    recorder = Recorder(httpx.Response(200, stream=Flaky()), httpx.Response(200, content=b"whole"))
    client, _ = client_for(recorder)
    sink = io.BytesIO()
    assert client.download("/blobs/x", sink) == hashlib.sha256(b"whole").hexdigest()
    assert sink.getvalue() == b"whole"


def test_download_of_a_missing_blob_is_not_found() -> None:
    client, _ = client_for(Recorder(error(404, "not_found")))
    with pytest.raises(RegistryNotFoundError):
        client.download("/blobs/x", io.BytesIO())


@pytest.mark.parametrize("value", ["abc", "-1", "0"])
def test_bad_timeout_setting_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from ppatch.errors import UsageError

    monkeypatch.setenv("PPATCH_HTTP_TIMEOUT", value)
    with pytest.raises(UsageError, match=f"PPATCH_HTTP_TIMEOUT={value!r} is not valid"):
        RegistryClient(BASE)
