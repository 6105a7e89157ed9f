"""Package names and `[namespace/]name[@range]` specs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchfmt import InvalidNameError, InvalidRangeError, PackageSpec
from patchfmt.names import parse_package_name


@pytest.mark.parametrize(
    ("text", "namespace", "name", "range_text", "exact"),
    [
        ("toxicity", None, "toxicity", "", None),
        ("acme/toxicity", "acme", "toxicity", "", None),
        ("acme/toxicity@1.2", "acme", "toxicity", "1.2", None),
        ("acme/toxicity@1.2.3", "acme", "toxicity", "1.2.3", "1.2.3"),
        ("tox@^1.2", None, "tox", "^1.2", None),
        ("a-b_c/x9@latest", "a-b_c", "x9", "latest", None),
        ("0day/fix@~1.2.3", "0day", "fix", "~1.2.3", None),
        ("acme/tox@>=1.0.0 <2.0.0", "acme", "tox", ">=1.0.0 <2.0.0", None),
    ],
)
def test_valid_specs(
    text: str, namespace: str | None, name: str, range_text: str, exact: str | None
) -> None:
    spec = PackageSpec.parse(text)
    assert (spec.namespace, spec.name, spec.range.text) == (namespace, name, range_text)
    assert (None if spec.range.exact is None else str(spec.range.exact)) == exact
    assert PackageSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("Acme/tox", InvalidNameError, "lowercase"),
        ("acme/Tox", InvalidNameError, "lowercase"),
        ("acme/tox/extra", InvalidNameError, "[namespace/]name[@range]"),
        ("/tox", InvalidNameError, "namespace"),
        ("acme/", InvalidNameError, "name"),
        ("tox@", InvalidNameError, "nothing after '@'"),
        ("-tox", InvalidNameError, "lowercase"),
        ("_tox", InvalidNameError, "lowercase"),
        ("tox!", InvalidNameError, "lowercase"),
        ("", InvalidNameError, "lowercase"),
        (" tox", InvalidNameError, "lowercase"),
        ("a" * 65, InvalidNameError, "at most 64"),
        ("tox@not-a-range", InvalidRangeError, "invalid version range"),
        ("tox@1.2@3", InvalidRangeError, "invalid version range"),
    ],
)
def test_invalid_specs(text: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as caught:
        PackageSpec.parse(text)
    message = str(caught.value)
    assert fragment in message
    assert repr(text) in message


@pytest.mark.parametrize("text", ["acme", "acme/tox/x", "Acme/tox", "acme/", "/x"])
def test_full_names_need_a_namespace(text: str) -> None:
    with pytest.raises(InvalidNameError, match="namespace"):
        parse_package_name(text)


parts = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)


@given(st.one_of(st.none(), parts), parts, st.sampled_from(["", "1.2", "^1.0.0", "latest"]))
def test_specs_round_trip(namespace: str | None, name: str, range_text: str) -> None:
    text = (f"{namespace}/" if namespace else "") + name + (f"@{range_text}" if range_text else "")
    spec = PackageSpec.parse(text)
    assert (spec.namespace, spec.name, spec.range.text) == (namespace, name, range_text)
    assert str(spec) == text


@given(st.text(max_size=30))
def test_any_text_parses_or_fails_with_a_typed_error_quoting_it(text: str) -> None:
    try:
        spec = PackageSpec.parse(text)
    except (InvalidNameError, InvalidRangeError) as error:
        assert repr(text) in str(error)
    else:
        assert PackageSpec.parse(str(spec)) == spec
