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


# Exact messages and fields: the CLI prints these errors as its one line, so each is asserted
# whole, written out by hand.

ALL_AVAILABLE = "1.2.0, 1.2.1, 1.2.2, 1.3.0, 1.4.0 (yanked), 2.0.0-rc.1"
EXISTING = [
    f"{MODEL_A} (1.2.0, 1.2.1, 1.3.0, 1.4.0, 2.0.0-rc.1)",
    f"{MODEL_B} (1.2.0, 1.2.1, 1.2.2, 1.3.0)",
]


@pytest.mark.parametrize(
    ("spec", "range_text"),
    [
        ("acme/toxicity@3", "3"),
        ("acme/toxicity@>1.4.0 <2", ">1.4.0 <2"),
        ("acme/toxicity@1.2.3", "1.2.3"),  # an exact pin of a version that does not exist
        ("acme/toxicity@2.0.0-rc.2", "2.0.0-rc.2"),
    ],
)
def test_no_matching_version_message_in_full(spec: str, range_text: str) -> None:
    with pytest.raises(NoMatchingVersionError) as caught:
        resolve(spec, INDEXES, MODEL_A)
    error = caught.value
    assert str(error) == (
        f"no release of 'acme/toxicity' matches '{range_text}' (available: {ALL_AVAILABLE})"
    )
    assert (error.name, error.range) == ("acme/toxicity", range_text)


def test_a_package_with_no_release_says_none_and_latest() -> None:
    empty = {"acme/toxicity": index("acme", "toxicity")}
    with pytest.raises(NoMatchingVersionError) as caught:
        resolve("acme/toxicity", empty, MODEL_A)
    assert str(caught.value) == "no release of 'acme/toxicity' matches 'latest' (available: none)"
    assert caught.value.available == []
    assert caught.value.range == "latest"


@pytest.mark.parametrize(
    ("spec", "range_text"),
    [
        ("acme/toxicity@1.2", "1.2"),
        ("acme/toxicity@1.2.2", "1.2.2"),  # the exact path
        ("acme/toxicity", "latest"),
    ],
)
def test_no_artifact_message_in_full(spec: str, range_text: str) -> None:
    with pytest.raises(NoArtifactError) as caught:
        resolve(spec, INDEXES, MODEL_C)
    error = caught.value
    assert str(error) == (
        f"acme/toxicity@{range_text} has no artifact for this model (fingerprint {MODEL_C}); "
        f"artifacts exist for: {', '.join(EXISTING)}"
    )
    assert (error.name, error.range, error.fingerprint) == ("acme/toxicity", range_text, MODEL_C)
    assert error.existing == EXISTING


def test_an_exact_pin_without_an_artifact_for_the_model() -> None:
    # 1.2.2 exists, but only for MODEL_B.
    with pytest.raises(NoArtifactError) as caught:
        resolve("acme/toxicity@1.2.2", INDEXES, MODEL_A)
    assert caught.value.existing == EXISTING


def test_releases_without_artifacts_say_none_exist() -> None:
    bare = index("acme", "toxicity", {"version": "1.0.0"}, release("1.1.0"))
    with pytest.raises(NoArtifactError) as caught:
        resolve("acme/toxicity@1", {"acme/toxicity": bare}, MODEL_A)
    assert str(caught.value) == (
        f"acme/toxicity@1 has no artifact for this model (fingerprint {MODEL_A}); "
        "artifacts exist for: none"
    )
    assert caught.value.existing == []


def test_ambiguous_message_in_full() -> None:
    indexes = {"other/toxicity": OTHER, "acme/toxicity": ACME}
    with pytest.raises(AmbiguousPackageError) as caught:
        resolve("toxicity", indexes, MODEL_B)
    assert str(caught.value) == (
        "'toxicity' is ambiguous: acme/toxicity, other/toxicity all have a release for this "
        "model; name one with its namespace"
    )
    assert caught.value.name == "toxicity"


def test_three_qualifying_namespaces_are_ambiguous_too() -> None:
    third = index("zeta", "toxicity", release("5.0.0", MODEL_B))
    indexes = {"acme/toxicity": ACME, "other/toxicity": OTHER, "zeta/toxicity": third}
    with pytest.raises(AmbiguousPackageError) as caught:
        resolve("toxicity", indexes, MODEL_B)
    assert caught.value.candidates == ["acme/toxicity", "other/toxicity", "zeta/toxicity"]


def test_substituted_index_message_and_fields() -> None:
    answered = index("evil", "toxicity", release("6.6.6", MODEL_A))
    with pytest.raises(PackageSubstitutedError) as caught:
        resolve("acme/toxicity", {"acme/toxicity": answered}, MODEL_A)
    assert str(caught.value) == (
        "asked the registry for acme/toxicity but it answered with the index of evil/toxicity; "
        "refusing it (a registry or proxy substituting packages)"
    )
    assert (caught.value.requested, caught.value.answered) == ("acme/toxicity", "evil/toxicity")


def test_an_index_that_names_no_package_is_refused() -> None:
    nameless = {"releases": [release("1.0.0", MODEL_A)]}
    with pytest.raises(PackageSubstitutedError) as caught:
        resolve("acme/toxicity", {"acme/toxicity": nameless}, MODEL_A)
    assert caught.value.answered == "None/None"


def test_several_namespaces_without_the_model_message_in_full() -> None:
    indexes = {"acme/toxicity": ACME, "other/toxicity": OTHER}
    with pytest.raises(NoArtifactError) as caught:
        resolve("toxicity@>=0.1.0", indexes, MODEL_C)
    existing = [
        f"acme/toxicity {MODEL_A} (1.2.0, 1.2.1, 1.3.0, 1.4.0, 2.0.0-rc.1)",
        f"acme/toxicity {MODEL_B} (1.2.0, 1.2.1, 1.2.2, 1.3.0)",
        f"other/toxicity {MODEL_B} (0.1.0)",
    ]
    assert str(caught.value) == (
        f"toxicity (in acme/toxicity, other/toxicity)@>=0.1.0 has no artifact for this model "
        f"(fingerprint {MODEL_C}); artifacts exist for: {', '.join(existing)}"
    )
    assert caught.value.existing == existing


def test_several_namespaces_one_without_the_range_one_without_the_model() -> None:
    # acme has no 0.x release at all (no artifacts to list); other has 0.1.0, built for
    # MODEL_B only.
    indexes = {"acme/toxicity": ACME, "other/toxicity": OTHER}
    with pytest.raises(NoArtifactError) as caught:
        resolve("toxicity@0.x", indexes, MODEL_A)
    assert str(caught.value) == (
        f"toxicity (in acme/toxicity, other/toxicity)@0.x has no artifact for this model "
        f"(fingerprint {MODEL_A}); artifacts exist for: other/toxicity {MODEL_B} (0.1.0)"
    )


def test_several_namespaces_without_the_range_is_no_match_listing_each() -> None:
    # Once reported as "has no artifact for this model ... artifacts exist for: none", which
    # named the wrong problem: no namespace has a release in the range at all.
    indexes = {"other/toxicity": OTHER, "acme/toxicity": ACME}
    with pytest.raises(NoMatchingVersionError) as caught:
        resolve("toxicity@9", indexes, MODEL_A)
    available = [f"acme/toxicity {v}" for v in ALL_AVAILABLE.split(", ")]
    available.append("other/toxicity 0.1.0")
    assert str(caught.value) == (
        "no release of 'toxicity (in acme/toxicity, other/toxicity)' matches '9' "
        f"(available: {', '.join(available)})"
    )
    assert caught.value.available == available


def test_the_pin_is_the_release_and_artifact_field_by_field() -> None:
    from ppatch.resolver import Pin

    expected = artifact(MODEL_A, "1.4.0")
    assert resolve("acme/toxicity@1.4.0", INDEXES, MODEL_A).pin == Pin(
        namespace="acme",
        name="toxicity",
        version="1.4.0",
        fingerprint=MODEL_A,
        sha256=expected["sha256"],
        size=100,
        url=expected["url"],
        filename="toxicity-1.4.0.ppatch",
        key_id="k1",
        yanked=True,
        yanked_reason="broke refusals",
    )


def test_a_minimal_artifact_gets_a_default_filename_and_no_key() -> None:
    minimal = index(
        "acme",
        "toxicity",
        {
            "version": "1.0.0",
            "artifacts": [{"fingerprint": MODEL_A, "sha256": "f" * 64, "size": "7", "url": "/b"}],
        },
    )
    pin = resolve("acme/toxicity", {"acme/toxicity": minimal}, MODEL_A).pin
    assert (pin.filename, pin.key_id, pin.size) == ("toxicity-1.0.0.ppatch", None, 7)
    assert (pin.yanked, pin.yanked_reason) == (False, None)


def test_a_yanked_exact_pin_without_a_reason_says_so() -> None:
    yanked = index("acme", "toxicity", release("1.0.0", MODEL_A, yanked=""))
    resolution = resolve("acme/toxicity@1.0.0", {"acme/toxicity": yanked}, MODEL_A)
    assert resolution.warnings == ("acme/toxicity 1.0.0 is yanked: no reason given",)


def test_releases_without_a_version_or_with_a_bad_one_are_skipped_wherever_they_are() -> None:
    messy = index(
        "acme",
        "toxicity",
        {"artifacts": [artifact(MODEL_A, "9.9.9")]},
        release("not-semver", MODEL_A),
        release("1.0.0", MODEL_A),
        release("1.1.0", MODEL_A),
    )
    indexes = {"acme/toxicity": messy}
    assert resolve("acme/toxicity", indexes, MODEL_A).pin.version == "1.1.0"
    assert resolve("acme/toxicity@1.0.0", indexes, MODEL_A).pin.version == "1.0.0"


def test_a_release_without_artifacts_key_has_none() -> None:
    partial = index("acme", "toxicity", {"version": "2.0.0"}, release("1.0.0", MODEL_A))
    assert resolve("acme/toxicity", {"acme/toxicity": partial}, MODEL_A).pin.version == "1.0.0"


def test_an_exact_pin_ignores_build_metadata_as_ranges_do() -> None:
    # SemVer: build metadata does not count in precedence, so `1.0.0` names `1.0.0+b1`, as the
    # range `1.0.0` does in patchfmt.VersionRange (tests/patchfmt/test_versions.py). The exact
    # path once compared the parsed versions whole and answered "no release of ... matches
    # '1.0.0+b1' (available: 1.0.0+b1)".
    built = {"acme/toxicity": index("acme", "toxicity", release("1.0.0+b1", MODEL_A))}
    assert resolve("acme/toxicity@1.0.0", built, MODEL_A).pin.version == "1.0.0+b1"
    assert resolve("acme/toxicity@1.0.0+b1", built, MODEL_A).pin.version == "1.0.0+b1"
    # Two builds of one release: the exact pin takes the last in version-then-text order,
    # whatever the index's order.
    both = index("acme", "toxicity", release("1.0.0+b1", MODEL_A), release("1.0.0+b2", MODEL_A))
    pinned = resolve("acme/toxicity@1.0.0", {"acme/toxicity": both}, MODEL_A)
    assert pinned.pin.version == "1.0.0+b2"


def test_listings_order_builds_of_one_release_by_their_text() -> None:
    builds = index(
        "acme",
        "toxicity",
        release("1.0.0+b2", MODEL_B),
        release("1.0.0+b1", MODEL_B),
        release("0.9.0", MODEL_B),
    )
    with pytest.raises(NoMatchingVersionError) as no_match:
        resolve("acme/toxicity@2", {"acme/toxicity": builds}, MODEL_A)
    assert no_match.value.available == ["0.9.0", "1.0.0+b1", "1.0.0+b2"]
    with pytest.raises(NoArtifactError) as no_artifact:
        resolve("acme/toxicity", {"acme/toxicity": builds}, MODEL_A)
    assert no_artifact.value.existing == [f"{MODEL_B} (0.9.0, 1.0.0+b1, 1.0.0+b2)"]


def test_an_index_without_a_releases_key_has_none() -> None:
    with pytest.raises(NoMatchingVersionError) as caught:
        resolve(
            "acme/toxicity", {"acme/toxicity": {"namespace": "acme", "name": "toxicity"}}, MODEL_A
        )
    assert caught.value.available == []


def test_a_bare_name_takes_only_keys_with_one_namespace() -> None:
    # `x/y/toxicity` is not a package of that name (a namespace holds no '/'), even if its index
    # claims namespace "x" and name "y/toxicity"; a key without a namespace is never the answer.
    odd = index("x", "y/toxicity", release("1.0.0", MODEL_A))
    with pytest.raises(UnknownPackageError):
        resolve("toxicity", {"x/y/toxicity": odd}, MODEL_A)
    with pytest.raises(PackageSubstitutedError):
        resolve("toxicity", {"toxicity": ACME}, MODEL_A)


def test_a_pre_release_without_the_model_is_missing_an_artifact_only_when_pre_is_allowed() -> None:
    only_pre = {"acme/toxicity": index("acme", "toxicity", release("2.0.0-rc.1", MODEL_A))}
    with pytest.raises(NoArtifactError):
        resolve("acme/toxicity", only_pre, MODEL_B, allow_prerelease=True)
    with pytest.raises(NoMatchingVersionError):
        resolve("acme/toxicity", only_pre, MODEL_B)


def test_a_yanked_release_without_the_model_is_no_match_not_a_missing_artifact() -> None:
    # 1.4.0 is the only ^1.4 release; it is yanked and built for MODEL_A only.
    with pytest.raises(NoMatchingVersionError):
        resolve("acme/toxicity@^1.4", INDEXES, MODEL_B)


def test_a_parsed_spec_resolves_like_its_text() -> None:
    from patchfmt import PackageSpec

    parsed = PackageSpec.parse("acme/toxicity@~1.2.0")
    assert resolve(parsed, INDEXES, MODEL_A).pin.version == "1.2.1"


def test_a_bare_name_ignores_indexes_of_other_names() -> None:
    bias = index("acme", "bias", release("1.0.0", MODEL_A))
    with pytest.raises(UnknownPackageError):
        resolve("toxicity", {"acme/bias": bias}, MODEL_A)


@pytest.mark.parametrize(
    ("wanted", "known", "suggestions"),
    [
        # At most three, the closest first (each added character lowers the similarity).
        ("acme/tox", ["acme/tox123", "acme/tox1", "acme/tox1234", "acme/tox12"],
         ["acme/tox1", "acme/tox12", "acme/tox123"]),
        ("acme/zzz", ["acme/toxicity"], []),
        # A bare name is compared with the names without their namespace, which may be long.
        ("tex", ["a-long-namespace/tox"], ["a-long-namespace/tox"]),
        ("tox", ["beta/tox", "acme/tox"], ["acme/tox", "beta/tox"]),
        ("tox", ["n/tox123", "n/tox1", "n/tox1234", "n/tox12"],
         ["n/tox1", "n/tox12", "n/tox123"]),
        # Everything after the first '/' is the name; a known name without one is all name.
        ("tox", ["x/longmiddle/tox"], []),
        ("toxicty", ["toxicity"], ["toxicity"]),
    ],
)  # fmt: skip
def test_suggestions_table(wanted: str, known: list[str], suggestions: list[str]) -> None:
    with pytest.raises(UnknownPackageError) as caught:
        resolve(wanted, {}, MODEL_A, known_names=known)
    assert caught.value.suggestions == suggestions
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    assert str(caught.value) == f"unknown package {wanted!r}{hint}"
    assert caught.value.name == wanted


def test_as_range() -> None:
    from patchfmt.versions import VersionRange
    from ppatch.resolver import as_range

    given_range = VersionRange.parse("^1.2")
    assert as_range(given_range) is given_range
    assert as_range(None) == VersionRange.parse("latest")
    assert as_range("") == VersionRange.parse("latest")
    assert as_range(">1.2.0").text == ">1.2.0"


def test_the_artifact_filename_is_taken_when_given() -> None:
    named = dict(artifact(MODEL_A, "1.0.0"), filename="from-the-index.ppatch")
    given = index("acme", "toxicity", {"version": "1.0.0", "artifacts": [named]})
    pin = resolve("acme/toxicity", {"acme/toxicity": given}, MODEL_A).pin
    assert pin.filename == "from-the-index.ppatch"
