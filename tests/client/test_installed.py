"""`ppatch.installed`: which installed patch a name or a spec means."""

from __future__ import annotations

import pytest

from patchfmt import PackageSpec
from ppatch.errors import NotFoundError, UsageError
from ppatch.installed import find_installed, installed_file, installed_for_spec, satisfies
from ppatch.store import InstalledPatch, InstalledSet, write_installed

FINGERPRINT = "sha256:" + "cd" * 32
ACME = InstalledPatch("acme/toxicity", "1.2.0", "a" * 64)
OTHER = InstalledPatch("other/toxicity", "2.0.0", "b" * 64)
RC = InstalledPatch("acme/bias", "2.0.0-rc.1", "c" * 64)


def _state(*patches: InstalledPatch) -> InstalledSet:
    return InstalledSet(FINGERPRINT, None, list(patches))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("acme/toxicity", ACME),
        ("toxicity", ACME),
        ("toxicity@^1", ACME),
        ("acme/toxicity@1.2.0", ACME),
        ("bias@^2.0.0-rc.0", RC),
        ("bias@>=1", RC),  # an installed pre-release counts: it was installed on purpose
        ("bias", RC),
    ],
)
def test_a_spec_names_the_installed_patch(spec: str, expected: InstalledPatch) -> None:
    assert installed_for_spec(_state(ACME, RC), PackageSpec.parse(spec)) == expected


@pytest.mark.parametrize("spec", ["toxicity@2", "other/toxicity", "missing", "bias@<2.0.0-rc.0"])
def test_a_spec_that_matches_nothing_lists_what_is_installed(spec: str) -> None:
    with pytest.raises(NotFoundError, match=r"no installed patch matches .*acme/toxicity 1\.2\.0"):
        installed_for_spec(_state(ACME, RC), PackageSpec.parse(spec))


@pytest.mark.parametrize("spec", ["toxicity", "toxicity@^1"])
def test_a_bare_name_in_two_namespaces_is_ambiguous_whatever_the_range(spec: str) -> None:
    with pytest.raises(UsageError, match=r"'toxicity' matches several installed patches"):
        installed_for_spec(_state(ACME, OTHER), PackageSpec.parse(spec))


def test_find_installed_by_full_or_bare_name() -> None:
    state = _state(ACME, RC)
    assert find_installed(state, "acme/bias") == RC
    assert find_installed(state, "bias") == RC
    assert find_installed(state, "other/bias") is None
    assert find_installed(state, "nothing") is None


def test_satisfies_counts_pre_releases_in_range() -> None:
    assert satisfies(RC, PackageSpec.parse("bias@>=1"))
    assert not satisfies(RC, PackageSpec.parse("bias@<2.0.0-rc.0"))


def test_installed_file_refuses_a_text_that_is_no_spec() -> None:
    with pytest.raises(NotFoundError, match="neither a file nor a package spec"):
        installed_file(FINGERPRINT, "No Such/Thing!")


def test_installed_file_of_a_missing_blob_says_reinstall() -> None:
    write_installed(_state(ACME))
    with pytest.raises(NotFoundError, match=r"acme/toxicity 1\.2\.0 is installed but its file"):
        installed_file(FINGERPRINT, "toxicity")
