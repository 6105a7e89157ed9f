"""The resolver is pure: every rule is checked against plain index dicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchfmt import parse_version
from ppatch.errors import NotFoundError, UsageError
from ppatch.resolver import (
    AmbiguousPackageError,
    NoArtifactError,
    NoMatchingVersionError,
    PackageSubstitutedError,
    UnknownPackageError,
    resolve,
)
from tests.patchfmt.range_oracle import expected_contains

MODEL_A = "sha256:" + "a" * 64
MODEL_B = "sha256:" + "b" * 64
MODEL_C = "sha256:" + "c" * 64


def artifact(fingerprint: str, version: str) -> dict[str, Any]:
    digest = (version.replace(".", "").replace("-", "") + fingerprint[7]).ljust(64, "0")[:64]
    return {
        "fingerprint": fingerprint,
        "sha256": digest,
        "size": 100,
        "url": f"/blobs/sha256/{digest}",
        "filename": f"toxicity-{version}.ppatch",
        "key_id": "k1",
    }


def release(version: str, *fingerprints: str, yanked: str | None = None) -> dict[str, Any]:
    return {
        "version": version,
        "yanked": yanked is not None,
        "yanked_reason": yanked,
        "created": "2026-11-28T10:00:00Z",
        "artifacts": [artifact(fp, version) for fp in fingerprints],
    }


def index(namespace: str, name: str, *releases: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "domain": "toxicity",
        "summary": "",
        "releases": list(releases),
    }


ACME = index(
    "acme",
    "toxicity",
    release("1.2.0", MODEL_A, MODEL_B),
    release("1.2.1", MODEL_A, MODEL_B),
    release("1.2.2", MODEL_B),
    release("1.3.0", MODEL_A, MODEL_B),
    release("1.4.0", MODEL_A, yanked="broke refusals"),
    release("2.0.0-rc.1", MODEL_A),
)
INDEXES = {"acme/toxicity": ACME}


@pytest.mark.parametrize(
    ("spec", "fingerprint", "expected"),
    [
        ("acme/toxicity@1.2", MODEL_A, "1.2.1"),
        ("acme/toxicity@1.2", MODEL_B, "1.2.2"),
        ("acme/toxicity@1.2.0", MODEL_A, "1.2.0"),
        ("acme/toxicity@^1.2", MODEL_A, "1.3.0"),  # 1.4.0 is yanked
        ("acme/toxicity@~1.2.0", MODEL_A, "1.2.1"),
        ("acme/toxicity", MODEL_A, "1.3.0"),
        ("acme/toxicity@latest", MODEL_A, "1.3.0"),
        ("acme/toxicity@>=1.0.0 <1.3.0", MODEL_B, "1.2.2"),
        ("acme/toxicity@2.0.0-rc.1", MODEL_A, "2.0.0-rc.1"),  # a named pre-release is asked for
        ("toxicity@1.2", MODEL_A, "1.2.1"),  # a bare name with one namespace
    ],
)
def test_resolves_highest_matching_release_for_the_model(
    spec: str, fingerprint: str, expected: str
) -> None:
    resolution = resolve(spec, INDEXES, fingerprint)
    assert resolution.pin.version == expected
    assert resolution.pin.fingerprint == fingerprint
    assert resolution.pin.full_name == "acme/toxicity"
    assert resolution.warnings == ()


def test_pin_carries_the_artifact_for_the_model() -> None:
    pin = resolve("acme/toxicity@1.2.1", INDEXES, MODEL_B).pin
    expected = artifact(MODEL_B, "1.2.1")
    assert (pin.sha256, pin.size, pin.url, pin.key_id) == (
        expected["sha256"],
        100,
        expected["url"],
        "k1",
    )


def test_pre_releases_only_when_asked() -> None:
    assert resolve("acme/toxicity", INDEXES, MODEL_A).pin.version == "1.3.0"
    chosen = resolve("acme/toxicity", INDEXES, MODEL_A, allow_prerelease=True)
    assert chosen.pin.version == "2.0.0-rc.1"


def test_yanked_version_resolves_only_when_pinned_exactly_with_a_warning() -> None:
    resolution = resolve("acme/toxicity@1.4.0", INDEXES, MODEL_A)
    assert resolution.pin.version == "1.4.0"
    assert resolution.pin.yanked
    assert resolution.warnings == ("acme/toxicity 1.4.0 is yanked: broke refusals",)
    assert resolve("acme/toxicity@>=1.3.0", INDEXES, MODEL_A).pin.version == "1.3.0"


def test_yanked_only_range_lists_what_exists() -> None:
    with pytest.raises(NoMatchingVersionError) as caught:
        resolve("acme/toxicity@1.4", INDEXES, MODEL_A)
    assert "1.4.0 (yanked)" in str(caught.value)


def test_no_release_in_range_lists_available_versions() -> None:
    with pytest.raises(NoMatchingVersionError) as caught:
        resolve("acme/toxicity@3", INDEXES, MODEL_A)
    error = caught.value
    assert isinstance(error, NotFoundError)
    assert error.available == [
        "1.2.0",
        "1.2.1",
        "1.2.2",
        "1.3.0",
        "1.4.0 (yanked)",
        "2.0.0-rc.1",
    ]
    assert str(error).startswith("no release of 'acme/toxicity' matches '3' (available: 1.2.0,")


@pytest.mark.parametrize("spec", ["acme/toxicity@1.2", "acme/toxicity@1.2.2", "acme/toxicity"])
def test_no_artifact_for_the_model_names_both_fingerprints(spec: str) -> None:
    with pytest.raises(NoArtifactError) as caught:
        resolve(spec, INDEXES, MODEL_C)
    message = str(caught.value)
    assert MODEL_C in message
    assert f"{MODEL_A} (" in message
    assert f"{MODEL_B} (" in message
    assert caught.value.fingerprint == MODEL_C


def test_unknown_package_suggests_close_names() -> None:
    known = ["acme/toxicity", "acme/bias", "other/harm"]
    with pytest.raises(UnknownPackageError) as caught:
        resolve("acme/toxicty", {}, MODEL_A, known_names=known)
    assert caught.value.suggestions == ["acme/toxicity"]
    assert str(caught.value) == "unknown package 'acme/toxicty'; did you mean acme/toxicity?"


def test_unknown_bare_name_suggests_and_unknown_without_candidates_says_so() -> None:
    with pytest.raises(UnknownPackageError) as caught:
        resolve("toxicty", {}, MODEL_A, known_names=["acme/toxicity"])
    assert caught.value.suggestions == ["acme/toxicity"]
    with pytest.raises(UnknownPackageError, match=r"^unknown package 'nothing'$"):
        resolve("nothing", {}, MODEL_A, known_names=["acme/toxicity"])


OTHER = index("other", "toxicity", release("0.1.0", MODEL_B))


def test_bare_name_picks_the_one_namespace_built_for_the_model() -> None:
    indexes = {
        "acme/toxicity": index("acme", "toxicity", release("1.0.0", MODEL_A)),
        **{"other/toxicity": OTHER},
    }
    assert resolve("toxicity", indexes, MODEL_A).pin.full_name == "acme/toxicity"
    assert resolve("toxicity", indexes, MODEL_B).pin.full_name == "other/toxicity"


def test_bare_name_in_several_qualifying_namespaces_lists_them() -> None:
    indexes = {"acme/toxicity": ACME, "other/toxicity": OTHER}
    with pytest.raises(AmbiguousPackageError) as caught:
        resolve("toxicity", indexes, MODEL_B)
    assert caught.value.candidates == ["acme/toxicity", "other/toxicity"]
    assert isinstance(caught.value, UsageError)
    assert "acme/toxicity, other/toxicity" in str(caught.value)
    # Naming the namespace settles it.
    assert resolve("other/toxicity", indexes, MODEL_B).pin.version == "0.1.0"


def test_bare_name_with_no_namespace_for_the_model_lists_namespaces() -> None:
    indexes = {"acme/toxicity": ACME, "other/toxicity": OTHER}
    with pytest.raises(NoArtifactError) as caught:
        resolve("toxicity", indexes, MODEL_C)
    assert "acme/toxicity, other/toxicity" in str(caught.value)


def test_namespaced_spec_ignores_other_namespaces() -> None:
    with pytest.raises(UnknownPackageError):
        resolve("nobody/toxicity", {"acme/toxicity": ACME}, MODEL_A)


@pytest.mark.parametrize(
    "answered", [index("evil", "toxicity", release("6.6.6", MODEL_A)), index("acme", "bias")]
)
def test_an_index_answered_for_another_package_is_refused(answered: dict[str, Any]) -> None:
    with pytest.raises(PackageSubstitutedError) as caught:
        resolve("acme/toxicity", {"acme/toxicity": answered}, MODEL_A)
    assert "asked the registry for acme/toxicity" in str(caught.value)


def test_the_pin_names_the_requested_package() -> None:
    pin = resolve("toxicity", INDEXES, MODEL_A).pin
    assert (pin.namespace, pin.name, pin.full_name) == ("acme", "toxicity", "acme/toxicity")


def test_unparsable_versions_in_an_index_are_ignored() -> None:
    broken = index("acme", "toxicity", release("1.0.0", MODEL_A), release("not-semver", MODEL_A))
    assert resolve("acme/toxicity", {"acme/toxicity": broken}, MODEL_A).pin.version == "1.0.0"


_versions = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.booleans()).map(
    lambda parts: f"{parts[0]}.{parts[1]}.{parts[2]}" + ("-rc.1" if parts[3] else "")
)
_releases = st.lists(
    st.tuples(
        _versions, st.booleans(), st.sampled_from([(MODEL_A,), (MODEL_B,), (MODEL_A, MODEL_B)])
    ),
    max_size=8,
    unique_by=lambda item: item[0],
)
_ranges = st.sampled_from(["", "latest", "1", "1.2", "^1.1", "~2.0.1", ">=1.0.0 <3.0.0", "0.x"])


@settings(max_examples=150, deadline=None)
@given(_releases, _ranges, st.booleans())
def test_a_resolution_always_obeys_every_rule(
    releases: list[tuple[str, bool, tuple[str, ...]]], range_text: str, pre: bool
) -> None:
    built = index(
        "acme",
        "toxicity",
        *(release(v, *fps, yanked="bad" if yanked else None) for v, yanked, fps in releases),
    )
    spec = f"acme/toxicity@{range_text}" if range_text else "acme/toxicity"
    # The oracle is hand-written (tests/patchfmt/range_oracle.py), not VersionRange itself.
    eligible = [
        parse_version(v)
        for v, yanked, fps in releases
        if MODEL_A in fps and not yanked and expected_contains(range_text, parse_version(v), pre)
    ]
    try:
        pin = resolve(spec, {"acme/toxicity": built}, MODEL_A, allow_prerelease=pre).pin
    except NotFoundError:
        assert eligible == []
        return
    assert parse_version(pin.version) == max(eligible)
    assert pin.fingerprint == MODEL_A
    assert not pin.yanked
