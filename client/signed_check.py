"""What a registry's unsigned answer chose, checked against what its signed index says.

Pure: the install resolves a spec twice, over the registry's package index and over the same
package as the signed targets give it (`SignedIndex.package_index`), and `mismatch` names the
lie when the two choices differ: a release the index never signed, a newer release or a yank
the answer hid, or another artifact (digest, length) than the signed one.

`signed_update` answers the update check (`POST /api/v1/updates`) for one installed patch from
the signed targets alone, so `ppatch outdated` against a signing registry needs no unsigned
answer at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ppatch.resolver import Pin

__all__ = ["is_prerelease_text", "mismatch", "signed_release", "signed_update"]


def signed_release(signed_index: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    """The release `version` of a signed package index, or None when it has none."""
    for release in signed_index.get("releases", []):
        if release.get("version") == version:
            return release  # type: ignore[no-any-return]
    return None


def _signed_artifact(release: Mapping[str, Any], fingerprint: str) -> Mapping[str, Any] | None:
    for artifact in release.get("artifacts", []):
        if artifact.get("fingerprint") == fingerprint:
            return artifact  # type: ignore[no-any-return]
    return None


def mismatch(
    answered: Pin, signed: Pin | None, signed_index: Mapping[str, Any], registry: str
) -> str | None:
    """Why the answered pin is not the one the signed index leads to; None when they agree
    on package, version, fingerprint, sha256 and length."""
    what = f"{answered.full_name} {answered.version}"
    release = signed_release(signed_index, answered.version)
    artifact = _signed_artifact(release, answered.fingerprint) if release else None
    if artifact is None:
        return (
            f"{what} for {answered.fingerprint} is not in the signed index of {registry}: the "
            "registry answered about a release it never signed"
        )
    if (artifact.get("sha256"), artifact.get("size")) != (answered.sha256, answered.size):
        return (
            f"the registry's index gives {what} the artifact sha256 {answered.sha256} "
            f"({answered.size} bytes) but its signed index has sha256 {artifact.get('sha256')} "
            f"({artifact.get('size')} bytes): a substituted artifact"
        )
    if signed is None:
        # The answered release is signed, yet the signed index resolves to nothing: it is
        # yanked there, and the spec's range holds no other release.
        if release is not None and release.get("yanked"):
            return _hidden_yank(what, release, registry)
        return f"{what} does not resolve from the signed index of {registry}"
    if signed.version == answered.version and signed.full_name == answered.full_name:
        return None
    if release is not None and release.get("yanked"):
        return _hidden_yank(what, release, registry)
    return (
        f"the registry's index hides {signed.full_name} {signed.version}, which its signed "
        f"index has (it offered {answered.version}); its answer is not trusted"
    )


def _hidden_yank(what: str, release: Mapping[str, Any] | None, registry: str) -> str:
    reason = (release or {}).get("yanked_reason") or "no reason given"
    return (
        f"{what} is yanked in the signed index of {registry} ({reason}), but the registry's "
        "index hid the yank; its answer is not trusted"
    )


def is_prerelease_text(version: str) -> bool:
    """SemVer 2.0.0: a version has a pre-release part exactly when the text before any `+`
    (build metadata) holds a `-`. The same answer as `patchfmt.versions.is_prerelease` for
    every valid version, without importing `semantic_version` (slow) for a cron job."""
    return "-" in version.split("+", 1)[0]


def signed_update(
    signed_index: Mapping[str, Any], name: str, version: str, fingerprint: str
) -> dict[str, Any]:
    """The update check's answer for `name` `version` on `fingerprint`, from the package's
    signed index: the highest release that is not yanked, not a pre-release and has an
    artifact for the model, and the installed release's yank state (the server's rule,
    `registry_server.updates.answer_update`, for a model whose fingerprint has artifacts)."""
    releases = list(signed_index.get("releases", []))
    installed = signed_release(signed_index, version)
    yanked = bool(installed is not None and installed.get("yanked"))
    candidates = sorted(
        {
            str(release.get("version"))
            for release in releases
            if not release.get("yanked")
            and _signed_artifact(release, fingerprint) is not None
            and not is_prerelease_text(str(release.get("version")))
        }
    )
    latest: str | None = candidates[0] if candidates else None
    if len(candidates) > 1:
        from patchfmt.versions import version_sort_key

        latest = max(candidates, key=version_sort_key)
    return {
        "name": name,
        "version": version,
        "found": bool(releases),
        "latest": latest,
        "yanked": yanked,
        "yanked_reason": installed.get("yanked_reason") if yanked and installed else None,
    }
