"""Two `ppatch-registry serve` processes on one database and one S3 bucket act as one registry."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import boto3
import httpx
import pytest

from tests.ports import port_from_log


def _latest(client: httpx.Client) -> str | None:
    found = client.get("/api/v1/search", params={"q": "toxicity"}).json()["results"]
    assert [result["name"] for result in found] == ["toxicity"]
    return found[0]["latest_version"]


@pytest.fixture
def two_servers(acme, moto_endpoint, tmp_path) -> Iterator[tuple[str, str, str]]:
    bucket = f"scale-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    processes, urls = [], []
    for number in range(2):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_REGISTRY_")}
        env.update(
            PPATCH_REGISTRY_HOME=str(tmp_path / f"node{number}"),
            PPATCH_REGISTRY_DATABASE_URL=acme.settings.resolved_database_url,
            PPATCH_REGISTRY_STORAGE=f"s3://{bucket}/blobs",
            PPATCH_REGISTRY_S3_ENDPOINT_URL=moto_endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        log_path = tmp_path / f"node{number}.log"
        with log_path.open("wb") as log:  # port 0: each server binds a port of its own
            process = subprocess.Popen(
                [sys.executable, "-m", "registry_server.cli", "serve", "--port", "0",
                 "--log-level", "info"],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        processes.append(process)
        port = port_from_log(log_path, lambda process=process: process.poll() is None)
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        for process, url in zip(processes, urls, strict=True):
            while True:
                assert process.poll() is None, "a registry process exited"
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the registries did not start"
                time.sleep(0.1)
        yield urls[0], urls[1], bucket
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def test_two_processes_are_one_registry(acme, two_servers, make_patch, moto_endpoint) -> None:
    *urls, bucket = two_servers
    first, second = (httpx.Client(base_url=url, timeout=30) for url in urls)
    with first, second:
        published = first.post(
            "/api/v1/packages/acme/toxicity/releases",
            files={"file": ("p.ppatch", make_patch())},
            headers=acme.auth(),
        )
        assert published.status_code == 201
        index = second.get("/api/v1/packages/acme/toxicity")
        assert index.headers["etag"] == first.get("/api/v1/packages/acme/toxicity").headers["etag"]
        assert second.get(published.json()["url"]).content == make_patch()
        # Searched on the first process (and so kept in its response cache) before the yank...
        assert _latest(first) == "1.0.0" and _latest(first) == "1.0.0"
        yank = second.post(
            "/api/v1/packages/acme/toxicity/releases/1.0.0/yank",
            json={"reason": "bad"},
            headers=acme.auth(scope="yank"),
        )
        assert yank.status_code == 200
        seen = first.get(
            "/api/v1/packages/acme/toxicity", headers={"If-None-Match": index.headers["etag"]}
        )
        assert seen.status_code == 200 and seen.json()["releases"][0]["yanked"] is True
        assert _latest(first) is None  # ...and the yank on the second is seen there at once

        # The same new version with other bytes, sent to both processes at once.
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def send(client: httpx.Client, seed: int) -> None:
            data = make_patch(version="2.0.0", seed=seed)
            barrier.wait()
            response = client.post(
                "/api/v1/packages/acme/toxicity/releases",
                files={"file": ("p.ppatch", data)},
                headers=acme.auth(),
            )
            statuses.append(response.status_code)

        threads = [
            threading.Thread(target=send, args=(client, seed))
            for client, seed in ((first, 11), (second, 12))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(statuses) == [201, 409]
        releases = first.get("/api/v1/packages/acme/toxicity").json()["releases"]
        assert [len(r["artifacts"]) for r in releases] == [1, 1]
    objects = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in objects) == sorted(
        a["sha256"] for r in releases for a in r["artifacts"]
    )  # the losing upload's blob was removed
