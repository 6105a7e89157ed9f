"""Property tests for the registry's small parsers: Range headers, If-None-Match, tokens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry_server.auth import issue_token, parse_token
from registry_server.index import etag_matches
from registry_server.ranges import RangeNotSatisfiableError, parse_range


@given(header=st.text(max_size=60), size=st.integers(min_value=0, max_value=10**9))
def test_parse_range_never_crashes_and_stays_inside_the_blob(header: str, size: int) -> None:
    try:
        parsed = parse_range(header, size)
    except RangeNotSatisfiableError:
        return
    if parsed is not None:
        first, last = parsed
        assert 0 <= first <= last < size


@given(
    size=st.integers(min_value=1, max_value=10**6),
    first=st.integers(min_value=0, max_value=10**6),
    length=st.integers(min_value=1, max_value=10**6),
)
def test_parse_range_of_a_well_formed_range(size: int, first: int, length: int) -> None:
    header = f"bytes={first}-{first + length - 1}"
    if first >= size:
        try:
            parse_range(header, size)
        except RangeNotSatisfiableError:
            return
        raise AssertionError("a range past the end must be unsatisfiable")
    assert parse_range(header, size) == (first, min(first + length - 1, size - 1))


@given(suffix=st.integers(min_value=1, max_value=10**6), size=st.integers(1, 10**6))
def test_suffix_ranges_take_the_last_bytes(suffix: int, size: int) -> None:
    first, last = parse_range(f"bytes=-{suffix}", size) or (None, None)
    assert last == size - 1
    assert first == max(size - suffix, 0)


tags = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32).map(lambda t: f'"{t}"')


@given(etag=tags, others=st.lists(tags, max_size=4), weak=st.booleans())
def test_if_none_match_finds_the_tag_in_any_list(etag: str, others: list[str], weak: bool) -> None:
    listed = [*others, f"W/{etag}" if weak else etag]
    assert etag_matches(", ".join(listed), etag)
    assert etag_matches("*", etag)
    assert etag_matches(", ".join(o for o in others if o != etag), etag) is False


@given(text=st.text(max_size=120))
def test_parse_token_accepts_only_issued_shapes(text: str) -> None:
    parsed = parse_token(text)
    if parsed is not None:
        assert text == f"ppr_{parsed.token_id}_{parsed.secret}"


def test_every_issued_token_parses() -> None:
    for _ in range(200):
        issued = issue_token()
        parsed = parse_token(issued.value)
        assert parsed is not None and parsed.token_id == issued.token_id
