"""Lockfiles round-trip, and every problem in a bad one is reported at once."""

from __future__ import annotations

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from ppatch import lockfile
from ppatch.lockfile import InvalidLockfileError
from ppatch.store import InstalledPatch, InstalledSet

MODEL = "sha256:" + "cd" * 32


def test_freeze_then_load_round_trips() -> None:
    state = InstalledSet(
        fingerprint=MODEL,
        patches=[
            InstalledPatch("acme/toxicity", "1.2.1", "a" * 64, 1234, "https://r.example", "/b/a"),
            InstalledPatch("acme/bias", "0.1.0-rc.1", "b" * 64),
        ],
    )
    locked = lockfile.loads(lockfile.dumps(state), "ppatch.lock")
    assert locked.fingerprint == MODEL
    assert [entry.as_installed() for entry in locked.entries] == state.patches


def test_every_problem_is_listed() -> None:
    text = tomli_w.dumps(
        {
            "format": "ppatch-lock/9",
            "model_fingerprint": "md5:x",
            "patches": [
                {"name": "Acme", "version": "", "sha256": "xyz", "size": -1},
                {"name": "acme/a", "version": "1.0.0", "sha256": "a" * 64},
                {"name": "acme/a", "version": "1.0.1", "sha256": "b" * 64},
            ],
        }
    )
    with pytest.raises(InvalidLockfileError) as caught:
        lockfile.loads(text, "bad.lock")
    assert caught.value.problems == [
        "format 'ppatch-lock/9' is not 'ppatch-lock/1'",
        "model_fingerprint 'md5:x' is not 'sha256:<hex>'",
        "patches[0].name 'Acme' is not 'namespace/name'",
        "patches[0].version '' is not a version string",
        "patches[0].sha256 'xyz' is not 64 lowercase hex digits",
        "patches[0].size -1 is not a byte count",
        "packages listed twice: acme/a",
    ]
    assert str(caught.value).startswith("lockfile 'bad.lock' is not valid: format")


def test_not_toml_at_all() -> None:
    with pytest.raises(InvalidLockfileError, match="not TOML"):
        lockfile.loads("[[patches]\n", "x.lock")


_part = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)
_patch = st.builds(
    InstalledPatch,
    name=st.tuples(_part, _part).map("/".join),
    version=st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    size=st.none() | st.integers(0, 2**40),
    registry=st.none() | st.just("https://r.example"),
    url=st.none() | st.text(min_size=1, max_size=30),
)


@settings(max_examples=40)
@given(st.lists(_patch, max_size=5, unique_by=lambda patch: patch.name))
def test_any_installed_set_round_trips(patches: list[InstalledPatch]) -> None:
    state = InstalledSet(fingerprint=MODEL, patches=patches)
    locked = lockfile.loads(lockfile.dumps(state), "p.lock")
    assert [entry.as_installed() for entry in locked.entries] == patches


@given(
    st.dictionaries(
        st.sampled_from(["name", "version", "sha256", "size", "registry", "url"]),
        st.none() | st.integers() | st.text(max_size=70) | st.booleans(),
    )
)
def test_any_entry_parses_or_raises_the_typed_error(entry: dict[str, object]) -> None:
    body = {"format": "ppatch-lock/1", "model_fingerprint": MODEL, "patches": [entry]}
    clean = {key: value for key, value in entry.items() if value is not None}
    text = tomli_w.dumps({**body, "patches": [clean]})
    try:
        locked = lockfile.loads(text, "fuzz.lock")
    except InvalidLockfileError as error:
        assert error.problems
    else:
        assert locked.entries[0].name == clean["name"]
