"""The manifest: every field's rule, every problem reported at once, canonical bytes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchfmt import (
    InvalidManifestError,
    InvalidWeightsError,
    Manifest,
    UnsupportedFormatError,
    build_manifest,
)
from patchfmt.canonical import canonical_json

HEX = "0123456789abcdef"


def manifest_dict(manifest: Manifest) -> dict[str, Any]:
    return json.loads(manifest.canonical_bytes())


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


def test_build_manifest_fills_the_computed_fields(manifest: Manifest, weights: bytes) -> None:
    assert manifest.format == "ppatch/1"
    assert (manifest.patch.num_virtual_tokens, manifest.patch.hidden_size) == (4, 8)
    assert manifest.patch.dtype == "float32"
    assert manifest.patch.kind == "prompt_tuning"
    digest = manifest.files["weights.safetensors"]
    assert digest.size == len(weights)
    assert len(digest.sha256) == 64


def test_canonical_bytes_are_sorted_compact_utf8(manifest: Manifest) -> None:
    data = manifest.canonical_bytes()
    parsed = json.loads(data)
    assert data == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    assert list(parsed) == sorted(parsed)
    assert Manifest.from_json_bytes(data) == manifest


def test_non_ascii_text_is_stored_as_utf8(fields: dict[str, Any], weights: bytes) -> None:
    fields["summary"] = "Réduit la toxicité ✓"
    manifest = build_manifest(fields, weights)
    assert "Réduit la toxicité ✓".encode() in manifest.canonical_bytes()


BAD_FIELDS = [
    ("name", "Acme/tox", "lowercase"),
    ("name", "toxicity", "namespace/name"),
    ("version", "1.2", "SemVer 2.0"),
    ("version", 120, "valid string"),
    ("domain", "safety", "'custom:<word>'"),
    ("domain", "custom:", "'custom:<word>'"),
    ("domain", "custom:Bad Word", "'custom:<word>'"),
    ("summary", "", "must not be empty"),
    ("summary", "two\nlines", "one line"),
    ("summary", "x" * 600, "at most 512"),
    ("summary", "\ud800", "lone surrogates"),
    ("license", "", "must not be empty"),
    ("base_model.id", "", "must not be empty"),
    ("base_model.fingerprint", "sha256:XYZ", "64 lowercase hex"),
    ("base_model.fingerprint", "md5:" + "a" * 32, "64 lowercase hex"),
    ("base_model.compatible_fingerprints", ["sha256:" + "c" * 64] * 2, "more than once"),
    ("base_model.compatible_fingerprints", ["nope"], "'nope' is not"),
    ("patch.kind", "lora", "'prompt_tuning'"),
    ("patch.num_virtual_tokens", 0, "greater than or equal to 1"),
    ("patch.num_virtual_tokens", True, "valid integer"),
    ("patch.num_virtual_tokens", "4", "valid integer"),
    ("patch.num_virtual_tokens", 4.0, "valid integer"),
    ("patch.hidden_size", 10**6, "less than or equal to 65536"),
    ("patch.dtype", "int8", "'float32', 'float16' or 'bfloat16'"),
    ("files.weights.safetensors", {"sha256": "A" * 64, "size": 1}, "64 lowercase hex"),
    ("files.weights.safetensors", {"sha256": "a" * 64, "size": -1}, "greater than or equal"),
    ("files", {}, "exactly one entry"),
    ("created", "2026-11-28 10:00:00", "RFC 3339"),
    ("created", "2026-13-01T00:00:00Z", "RFC 3339"),
    ("created", "2026-11-28T10:00:00.5Z", "RFC 3339"),
    ("requires", "latest", "SemVer 2.0"),
    ("training", [], "valid dictionary"),
]


@pytest.mark.parametrize(("path", "value", "fragment"), BAD_FIELDS)
def test_each_field_rule(manifest: Manifest, path: str, value: Any, fragment: str) -> None:
    data = manifest_dict(manifest)
    if path.startswith("files.weights.safetensors"):
        data["files"]["weights.safetensors"] = value
    else:
        set_path(data, path, value)
    with pytest.raises(InvalidManifestError) as caught:
        Manifest.from_json_bytes(json.dumps(data).encode())
    [problem] = caught.value.problems
    location = "files.weights.safetensors" if path.startswith("files.") else path
    assert problem.startswith(location)
    assert fragment in problem


def test_every_problem_is_reported_at_once(manifest: Manifest) -> None:
    data = manifest_dict(manifest)
    data["name"] = "Bad"
    data["version"] = "one"
    del data["license"]
    data["colour"] = "blue"
    data["base_model"]["extra"] = 1
    with pytest.raises(InvalidManifestError) as caught:
        Manifest.from_json_bytes(canonical_json(data))
    problems = caught.value.problems
    assert len(problems) == 5
    text = str(caught.value)
    assert text.startswith("invalid manifest.json (5 problems): ")
    for fragment in (
        "name:",
        "version:",
        "license: required field is missing",
        "colour: unknown field (not allowed under 'ppatch/1')",
        "base_model.extra: unknown field",
    ):
        assert fragment in text


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"{", "not valid UTF-8 JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"[1, 2]", "must be a JSON object, found list"),
        (b" " * (1024 * 1024 + 1), "at most 1048576"),
    ],
)
def test_unreadable_manifests(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidManifestError) as caught:
        Manifest.from_json_bytes(data)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("declared", ["ppatch/2", "ppatch/10"])
def test_unknown_major_version_is_named(manifest: Manifest, declared: str) -> None:
    data = manifest_dict(manifest)
    data["format"] = declared
    data["new_field_of_the_future"] = True
    with pytest.raises(UnsupportedFormatError) as caught:
        Manifest.from_json_bytes(canonical_json(data))
    assert repr(declared) in str(caught.value)
    assert caught.value.found == declared


def test_a_format_that_is_not_ppatch_is_a_manifest_problem(manifest: Manifest) -> None:
    data = manifest_dict(manifest)
    data["format"] = "zip/1"
    with pytest.raises(InvalidManifestError, match=r"format: expected 'ppatch/1'"):
        Manifest.from_json_bytes(canonical_json(data))


@pytest.mark.parametrize(
    ("fingerprint", "accepted"),
    [("sha256:" + "ab" * 32, True), ("sha256:" + "cd" * 32, True), ("sha256:" + "ef" * 32, False)],
)
def test_accepts_fingerprint(
    fields: dict[str, Any], weights: bytes, fingerprint: str, accepted: bool
) -> None:
    fields["base_model"]["compatible_fingerprints"] = ["sha256:" + "cd" * 32]
    assert build_manifest(fields, weights).accepts_fingerprint(fingerprint) is accepted


def test_build_manifest_refuses_a_patch_that_disagrees_with_the_weights(
    fields: dict[str, Any], weights: bytes
) -> None:
    fields["patch"] = {
        "kind": "prompt_tuning",
        "num_virtual_tokens": 99,
        "hidden_size": 8,
        "dtype": "float32",
    }
    with pytest.raises(InvalidManifestError, match=r"patch: .* disagrees with the weights"):
        build_manifest(fields, weights)


def test_build_manifest_refuses_non_finite_weights(fields: dict[str, Any], weights: bytes) -> None:
    broken = weights[:-4] + b"\x00\x00\xc0\x7f"  # the last float becomes NaN
    with pytest.raises(InvalidWeightsError, match="NaN"):
        build_manifest(fields, broken)


def test_created_defaults_to_source_date_epoch(
    fields: dict[str, Any], weights: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    del fields["created"]
    del fields["requires"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    manifest = build_manifest(fields, weights)
    assert manifest.created == "2023-11-14T22:13:20Z"
    assert manifest.requires == "0.1.0"


def test_training_values_must_be_finite_json(fields: dict[str, Any], weights: bytes) -> None:
    fields["training"] = {"learning_rate": float("inf")}
    with pytest.raises(InvalidManifestError, match="training: must hold only finite JSON"):
        build_manifest(fields, weights)


# -- random valid manifests ------------------------------------------------------------------

parts = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,15}", fullmatch=True)
one_line = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(str.strip)
semver = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{pre}" if pre else ""),
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 999),
    st.sampled_from(["", "rc.1", "alpha", "beta.2"]),
)
fingerprints = st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
manifests = st.fixed_dictionaries(
    {
        "format": st.just("ppatch/1"),
        "name": st.builds(lambda a, b: f"{a}/{b}", parts, parts),
        "version": semver,
        "domain": st.sampled_from(["toxicity", "bias", "harm"]) | parts.map("custom:{}".format),
        "summary": one_line,
        "license": one_line,
        "base_model": st.fixed_dictionaries(
            {
                "id": one_line,
                "revision": st.none() | one_line,
                "fingerprint": fingerprints,
                "compatible_fingerprints": st.lists(fingerprints, max_size=2, unique=True),
            }
        ),
        "patch": st.fixed_dictionaries(
            {
                "kind": st.just("prompt_tuning"),
                "num_virtual_tokens": st.integers(1, 4096),
                "hidden_size": st.integers(1, 65536),
                "dtype": st.sampled_from(["float32", "float16", "bfloat16"]),
            }
        ),
        "files": st.fixed_dictionaries(
            {
                "weights.safetensors": st.fixed_dictionaries(
                    {
                        "sha256": st.text(HEX, min_size=64, max_size=64),
                        "size": st.integers(0, 2**32 - 1),
                    }
                )
            }
        ),
        "training": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "evaluation": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "created": st.datetimes(min_value=datetime(1970, 1, 1)).map(
            lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
        "requires": semver,
    }
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(manifests)
def test_random_valid_manifests_round_trip(data: dict[str, Any]) -> None:
    encoded = canonical_json(data)
    manifest = Manifest.from_json_bytes(encoded)
    assert manifest.canonical_bytes() == encoded
    assert Manifest.from_json_bytes(manifest.canonical_bytes()) == manifest
