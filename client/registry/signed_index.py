"""The registry's signed index (TUF), checked with python-tuf's client, `tuf.ngclient.Updater`.

A registry that runs `ppatch-registry tuf init` serves TUF metadata under `/tuf/`. The first
time a client meets it, it pins the registry's root version 1 (trust on first use, its
fingerprint printed), or the root file the operator gives in `PPATCH_TUF_ROOT`; from then on
the Updater follows root rotations as the specification says and refuses metadata that is
expired, older than what it has seen, signed by too few keys, or longer than its limits.

Once a registry's root is pinned, its index is never read unsigned again: a registry (or a
proxy) that stops serving `/tuf/` is refused, not trusted.

What the signed targets say per artifact (`custom`: namespace, name, version, fingerprint,
yank state and reason) is looked up by path with `Updater.get_targetinfo`, the public API. To
list a package's releases (so that a hidden release or a hidden yank shows), the paths are read
from the `targets.json` the Updater has just verified and persisted in its metadata directory,
and every entry used is looked up again with `get_targetinfo`: the file only says which paths
to ask about, the Updater's answer is what counts.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppatch import constants
from ppatch.errors import NetworkError, StaleIndexError, UsageError, VerificationError

__all__ = [
    "ArtifactInfo",
    "SignedIndex",
    "artifact_path",
    "keys_path",
    "open_signed_index",
    "package_prefix",
    "refreshed_signed_index",
]


def artifact_path(namespace: str, name: str, version: str, fingerprint: str) -> str:
    """The target path of one artifact in the registry's targets metadata."""
    return f"packages/{namespace}/{name}/{version}/{fingerprint.removeprefix('sha256:')}.ppatch"


def package_prefix(namespace: str, name: str) -> str:
    """The target path prefix of every artifact of one package."""
    return f"packages/{namespace}/{name}/"


def keys_path(namespace: str) -> str:
    """The target path of one namespace's vendor keys."""
    return f"keys/{namespace}.json"


@dataclass(frozen=True)
class ArtifactInfo:
    """What the signed index says about one artifact."""

    length: int
    sha256: str
    yanked: bool
    yanked_reason: str | None


# Cloud SDKs that securesystemslib's optional signers import when they are installed (boto3
# alone costs more than the rest of `ppatch outdated`). The client only verifies, with the keys
# the metadata holds, and never signs; so while tuf loads, `import boto3` fails as if it were
# not installed, which securesystemslib handles (its AWS signer is then unavailable in this
# process). An SDK already imported is left alone, and afterwards it imports normally.
_SIGNER_SDKS = ("boto3",)


@contextmanager
def _without_signer_sdks() -> Iterator[None]:
    hidden = [name for name in _SIGNER_SDKS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                sys.modules.pop(name, None)


def _metadata_dir(base_url: str) -> Path:
    # Trust state, not a cache: it lives with the pinned keys, not under the cache directory.
    key = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return constants.data_dir() / "tuf" / key


def _fetch_first_root(base_url: str) -> bytes | None:
    """Root version 1 of the registry, or None when it does not sign its index."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            f"{base_url}/tuf/1.root.json", timeout=constants.http_timeout()
        ) as answer:
            body: bytes = answer.read(512_000 + 1)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise NetworkError(f"cannot read the signed index root of {base_url}: {error}") from error
    except OSError as error:
        raise NetworkError(f"cannot reach the registry at {base_url!r}: {error}") from error
    if len(body) > 512_000:
        raise VerificationError(f"{base_url}/tuf/1.root.json is larger than any root")
    return body


class SignedIndex:
    """One registry's TUF metadata, refreshed and verified by `tuf.ngclient.Updater`."""

    def __init__(self, base_url: str, metadata_dir: Path, bootstrap: bytes | None) -> None:
        with _without_signer_sdks():
            from tuf.ngclient import Updater

        self.base_url = base_url
        self._metadata_dir = metadata_dir
        self._target_paths: list[str] | None = None
        self._refreshed = False
        self._updater = Updater(str(metadata_dir), f"{base_url}/tuf/", bootstrap=bootstrap)

    def refresh(self) -> None:
        """Fetch the timestamp (and snapshot and targets when it changed), or say why not."""
        from tuf.api import exceptions

        if self._refreshed:
            return
        try:
            self._updater.refresh()
            self._refreshed = True
        except exceptions.ExpiredMetadataError as error:
            raise StaleIndexError(
                f"the signed index of {self.base_url} has expired ({error}): the registry or a "
                "mirror is serving frozen metadata; its answers are not trusted"
            ) from error
        except exceptions.BadVersionNumberError as error:
            raise StaleIndexError(
                f"the signed index of {self.base_url} was rolled back ({error}): an older index "
                "than one already seen; its answers are not trusted"
            ) from error
        except exceptions.RepositoryError as error:
            raise VerificationError(
                f"the signed index of {self.base_url} does not verify: {error}"
            ) from error
        except exceptions.DownloadHTTPError as error:
            if error.status_code != 404:
                raise NetworkError(
                    f"cannot read the signed index of {self.base_url}: {error}"
                ) from error
            raise VerificationError(
                f"{self.base_url} no longer serves the signed index this client pinned; its "
                "answers are not trusted"
            ) from error
        except exceptions.DownloadError as error:
            raise NetworkError(
                f"cannot read the signed index of {self.base_url}: {error}"
            ) from error

    def artifact(self, namespace: str, name: str, version: str, fingerprint: str) -> ArtifactInfo:
        """The signed facts of one artifact; `VerificationError` when the index lacks it."""
        path = artifact_path(namespace, name, version, fingerprint)
        info = self._target(path)
        if info is None:
            raise VerificationError(
                f"{namespace}/{name} {version} for {fingerprint} is not in the signed index of "
                f"{self.base_url}: the registry answered about a release it never signed"
            )
        custom: dict[str, Any] = info.custom or {}
        if (custom.get("namespace"), custom.get("name"), custom.get("version")) != (
            namespace,
            name,
            version,
        ):
            raise VerificationError(f"the signed index entry {path} names another release")
        return ArtifactInfo(
            length=info.length,
            sha256=str(info.hashes.get("sha256", "")),
            yanked=bool(custom.get("yanked")),
            yanked_reason=custom.get("yanked_reason"),
        )

    def _target(self, path: str) -> Any:
        from tuf.api import exceptions

        try:
            return self._updater.get_targetinfo(path)
        except exceptions.RepositoryError as error:
            raise VerificationError(f"the signed index of {self.base_url}: {error}") from error

    def _paths(self, prefix: str) -> list[str]:
        """The target paths under `prefix` in the targets metadata the Updater verified."""
        if self._target_paths is None:
            import json

            if not self._refreshed:
                self.refresh()
            try:
                document = json.loads((self._metadata_dir / "targets.json").read_bytes())
                self._target_paths = sorted(str(path) for path in document["signed"]["targets"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise VerificationError(
                    f"cannot read the verified targets of {self.base_url}: {error}"
                ) from error
        return [path for path in self._target_paths if path.startswith(prefix)]

    def package_index(self, namespace: str, name: str) -> dict[str, Any]:
        """The package's releases as the signed targets give them, shaped like the registry's
        package index (`GET /api/v1/packages/{ns}/{name}`) so the resolver reads either."""
        releases: dict[str, dict[str, Any]] = {}
        for path in self._paths(package_prefix(namespace, name)):
            info = self._target(path)
            if info is None:
                raise VerificationError(f"the signed index of {self.base_url} lost {path}")
            custom: dict[str, Any] = info.custom or {}
            if (custom.get("namespace"), custom.get("name")) != (namespace, name):
                raise VerificationError(f"the signed index entry {path} names another package")
            version = str(custom.get("version"))
            release = releases.setdefault(
                version,
                {
                    "version": version,
                    "yanked": bool(custom.get("yanked")),
                    "yanked_reason": custom.get("yanked_reason"),
                    "artifacts": [],
                },
            )
            release["artifacts"].append(
                {
                    "fingerprint": custom.get("fingerprint"),
                    "sha256": str(info.hashes.get("sha256", "")),
                    "size": info.length,
                    "url": custom.get("url"),
                    "key_id": custom.get("key_id"),
                }
            )
        return {"namespace": namespace, "name": name, "releases": list(releases.values())}

    def namespace_keys(self, namespace: str) -> dict[str, Any]:
        """The namespace's vendor keys (active and revoked) as the signed targets give them,
        shaped like the registry's keys answer (`GET /api/v1/namespaces/{ns}/keys`)."""
        info = self._target(keys_path(namespace))
        custom: dict[str, Any] = (info.custom or {}) if info is not None else {}
        if info is None or custom.get("namespace") != namespace:
            raise VerificationError(
                f"the signed index of {self.base_url} has no keys for namespace {namespace!r}"
            )
        keys = custom.get("keys")
        return {"namespace": namespace, "keys": keys if isinstance(keys, list) else []}


def open_signed_index(base_url: str) -> SignedIndex | None:
    """The registry's signed index, pinning its root on first contact; None when the registry
    has never signed one (and no root was pinned for it)."""
    base_url = base_url.rstrip("/")
    metadata_dir = _metadata_dir(base_url)
    if (metadata_dir / "root.json").exists():
        return SignedIndex(base_url, metadata_dir, None)  # the pinned root is the anchor
    given = constants.tuf_root_file()
    if given is not None:
        try:
            bootstrap = given.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read PPATCH_TUF_ROOT {str(given)!r}: {error}") from error
    else:
        first = _fetch_first_root(base_url)
        if first is None:
            return None
        bootstrap = first
        print(
            f"ppatch: pinned the signed-index root of {base_url}: "
            f"sha256:{hashlib.sha256(bootstrap).hexdigest()}",
            file=sys.stderr,
        )
    metadata_dir.mkdir(parents=True, exist_ok=True)
    try:
        return SignedIndex(base_url, metadata_dir, bootstrap)
    except Exception as error:  # tuf raises several types for a root it cannot load
        raise VerificationError(
            f"the signed-index root of {base_url} is not valid: {error}"
        ) from error


def refreshed_signed_index(base_url: str) -> SignedIndex | None:
    """The registry's signed index, refreshed (`StaleIndexError` when expired or rolled
    back), or None when the registry has never signed one."""
    from ppatch.registry.errors import refuse_offline

    refuse_offline(base_url.rstrip("/"), "a signed index refresh")
    signed = open_signed_index(base_url)
    if signed is not None:
        signed.refresh()
    return signed
