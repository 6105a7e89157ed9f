"""The update check's decisions (`registry_server.updates`), without the HTTP layer.

`answer_update` is a pure function over a package's releases: each rule of the docstring (newest
release, not yanked, not a pre-release, with an artifact for the fingerprint or a vendor-listed
compatible one; the installed version's yank) has a row of its own here. `check_updates` runs on
an in-memory database filled row by row, so each answer is checked against rows written by hand,
and its queries are counted (one for the batch, a second only when a fingerprint has no artifact
of its own). The HTTP round trip is tests/registry_server/test_search_and_updates.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from registry_server.models import Artifact, Base, Namespace, Package, Release
from registry_server.schemas import InstalledPatch
from registry_server.updates import ArtifactView, ReleaseView, answer_update, check_updates

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64
FP_C = "sha256:" + "c" * 64
SHA_1 = "1" * 64
SHA_2 = "2" * 64
SHA_3 = "3" * 64
SHA_4 = "4" * 64
SHA_5 = "5" * 64


def _artifact(fingerprint: str = FP_A, sha256: str = SHA_1, **kwargs: Any) -> ArtifactView:
    fields: dict[str, Any] = {"size": 100, "filename": "f.ppatch", "key_id": "ed25519:k"}
    return ArtifactView(fingerprint, sha256, **{**fields, **kwargs})


def _release(
    version: str,
    *artifacts: ArtifactView,
    yanked: bool = False,
    reason: str | None = None,
    prerelease: bool = False,
) -> ReleaseView:
    return ReleaseView(version, yanked, reason, prerelease, list(artifacts))


def _installed(version: str = "1.0.0", fingerprint: str = FP_A, name: str = "acme/tox") -> Any:
    return InstalledPatch(name=name, version=version, fingerprint=fingerprint)


# -- the artifact's answer ----------------------------------------------------------------------


def test_artifact_json_holds_each_field_and_the_blob_url() -> None:
    view = ArtifactView(FP_B, SHA_2, 4321, "acme-tox-1.0.0-bbbbbbbbbbbb.ppatch", "ed25519:abc")
    assert view.json() == {
        "fingerprint": FP_B,
        "sha256": SHA_2,
        "size": 4321,
        "url": "/blobs/sha256/" + SHA_2,
        "filename": "acme-tox-1.0.0-bbbbbbbbbbbb.ppatch",
        "key_id": "ed25519:abc",
    }
    assert view.compatible == ()


def test_an_exact_artifact_wins_over_a_compatible_one() -> None:
    compatible = _artifact(FP_B, SHA_2, compatible=(FP_A,))
    exact = _artifact(FP_A, SHA_1)
    # The compatible artifact comes first, so only a preference for the exact one picks SHA_1.
    assert _release("1.0.0", compatible, exact).artifact_for(FP_A) is exact
    assert _release("1.0.0", compatible).artifact_for(FP_A) is compatible
    assert _release("1.0.0", compatible, exact).artifact_for(FP_B) is compatible
    assert _release("1.0.0", compatible, exact).artifact_for(FP_C) is None
    assert _release("1.0.0").artifact_for(FP_A) is None


# -- one answer -------------------------------------------------------------------------------


def test_an_unknown_package_is_not_found_and_offers_nothing() -> None:
    assert answer_update(_installed("1.2.3", FP_C, "acme/gone"), None) == {
        "name": "acme/gone",
        "version": "1.2.3",
        "fingerprint": FP_C,
        "found": False,
        "latest": None,
        "latest_artifact": None,
        "yanked": False,
        "yanked_reason": None,
    }


def test_a_package_without_releases_is_found_and_offers_nothing() -> None:
    answer = answer_update(_installed(), [])
    assert answer["found"] is True
    assert (answer["latest"], answer["latest_artifact"], answer["yanked"]) == (None, None, False)
    assert answer["yanked_reason"] is None


def test_the_newest_release_is_offered_with_its_artifact() -> None:
    newest = _artifact(FP_A, SHA_3, size=7, filename="new.ppatch", key_id="ed25519:new")
    releases = [
        _release("1.9.0", _artifact(FP_A, SHA_1)),
        _release("1.10.0", newest),  # newer than 1.9.0 by SemVer, older as text
        _release("1.2.0", _artifact(FP_A, SHA_2)),
    ]
    assert answer_update(_installed("1.2.0"), releases) == {
        "name": "acme/tox",
        "version": "1.2.0",
        "fingerprint": FP_A,
        "found": True,
        "latest": "1.10.0",
        "latest_artifact": {
            "fingerprint": FP_A,
            "sha256": SHA_3,
            "size": 7,
            "url": "/blobs/sha256/" + SHA_3,
            "filename": "new.ppatch",
            "key_id": "ed25519:new",
        },
        "yanked": False,
        "yanked_reason": None,
    }


@pytest.mark.parametrize(
    ("releases", "latest"),
    [
        # (version, fingerprint of its one artifact, yanked, pre-release), oldest first
        ([("1.0.0", FP_A, False, False), ("1.1.0", FP_A, True, False)], "1.0.0"),
        ([("1.0.0", FP_A, False, False), ("2.0.0-rc.1", FP_A, False, True)], "1.0.0"),
        ([("1.0.0", FP_A, False, False), ("1.1.0", FP_B, False, False)], "1.0.0"),
        ([("1.0.0", FP_A, True, False)], None),
        ([("2.0.0-rc.1", FP_A, False, True)], None),
        ([("1.1.0", FP_B, False, False)], None),
        ([("1.1.0", FP_A, False, False), ("1.0.0", FP_A, False, False)], "1.1.0"),
    ],
)
def test_yanked_prerelease_and_foreign_releases_are_never_offered(releases, latest) -> None:
    views = [
        _release(v, _artifact(fp, str(i) * 64), yanked=y, prerelease=p)
        for i, (v, fp, y, p) in enumerate(releases, start=1)
    ]
    answer = answer_update(_installed("1.0.0", FP_A), views)
    assert answer["latest"] == latest
    if latest is not None:
        index = [v for v, *_ in releases].index(latest) + 1
        assert answer["latest_artifact"]["sha256"] == str(index) * 64


def test_a_compatible_artifact_is_offered_for_a_fingerprint_without_its_own() -> None:
    vendor = _artifact(FP_B, SHA_2, compatible=(FP_C, FP_A))
    answer = answer_update(_installed("1.0.0", FP_A), [_release("1.1.0", vendor)])
    assert answer["latest"] == "1.1.0"
    assert answer["latest_artifact"]["fingerprint"] == FP_B
    assert answer["latest_artifact"]["sha256"] == SHA_2


def test_the_installed_versions_yank_is_reported_with_its_reason() -> None:
    releases = [
        _release("1.0.0", _artifact(FP_B, SHA_1), yanked=True, reason="broke fluency"),
        _release("1.1.0", _artifact(FP_A, SHA_2), yanked=True, reason="another release's"),
        _release("1.2.0", _artifact(FP_A, SHA_3)),
    ]
    # A yank covers the version whatever the fingerprint: FP_A's install of 1.0.0 is yanked.
    answer = answer_update(_installed("1.0.0", FP_A), releases)
    assert (answer["yanked"], answer["yanked_reason"]) == (True, "broke fluency")
    assert answer["latest"] == "1.2.0"
    # Another version's yank is not this install's.
    answer = answer_update(_installed("1.2.0", FP_A), releases)
    assert (answer["yanked"], answer["yanked_reason"]) == (False, None)


def test_a_yank_without_a_reason_reports_none() -> None:
    answer = answer_update(_installed(), [_release("1.0.0", _artifact(), yanked=True)])
    assert (answer["yanked"], answer["yanked_reason"], answer["latest"]) == (True, None, None)


# -- the batch, from the database ---------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _manifest(compatible: list[str] | None) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "tiny-model", "fingerprint": FP_A}
    if compatible is not None:
        base["compatible_fingerprints"] = compatible
    return {"name": "x", "base_model": base}


def _package(session: Session, namespace: str, name: str) -> Package:
    ns = session.query(Namespace).filter_by(name=namespace).one_or_none()
    if ns is None:
        ns = Namespace(name=namespace)
        session.add(ns)
        session.flush()
    package = Package(namespace_id=ns.id, name=name, index_etag="e")
    session.add(package)
    session.flush()
    return package


def _row(
    session: Session,
    package: Package,
    version: str,
    artifacts: list[tuple[str, str, list[str] | None]],
    *,
    yanked: bool = False,
    reason: str | None = None,
) -> None:
    """A release of `package` with one artifact per (fingerprint, sha256, compatible list)."""
    release = Release(
        package_id=package.id,
        version=version,
        prerelease="-" in version,
        yanked=yanked,
        yanked_reason=reason,
    )
    session.add(release)
    session.flush()
    for fingerprint, sha256, compatible in artifacts:
        session.add(
            Artifact(
                release_id=release.id,
                fingerprint=fingerprint,
                sha256=sha256,
                size=int(sha256[0]) * 10,
                filename=f"{version}-{sha256[0]}.ppatch",
                key_id=f"ed25519:{sha256[0]}",
                manifest=_manifest(compatible),
            )
        )
    session.flush()


class _Statements:
    """The SELECT statements a session's engine runs."""

    def __init__(self, session: Session) -> None:
        self.seen: list[str] = []
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append(statement)


def test_check_updates_answers_each_entry_from_the_rows(session: Session) -> None:
    tox = _package(session, "acme", "tox")
    _row(session, tox, "1.0.0", [(FP_A, SHA_1, None)], yanked=True, reason="regressed")
    _row(session, tox, "1.1.0", [(FP_A, SHA_2, None), (FP_B, SHA_3, None)])
    _row(session, tox, "1.2.0", [(FP_B, SHA_4, None)])
    _row(session, tox, "2.0.0-rc.1", [(FP_A, SHA_5, None)])
    _row(session, tox, "3.0.0", [])  # a release whose artifacts were all deleted
    other = _package(session, "beta", "tox")
    _row(session, other, "9.0.0", [(FP_A, "6" * 64, None)])
    session.commit()
    statements = _Statements(session)
    answers = check_updates(
        session,
        [
            _installed("1.0.0", FP_A, "acme/tox"),
            _installed("1.1.0", FP_B, "acme/tox"),
            _installed("1.0.0", FP_A, "beta/tox"),
            _installed("1.0.0", FP_A, "acme/missing"),
            _installed("1.0.0", FP_A, "gamma/tox"),
            _installed("1.0.0", FP_A, "acme"),
            _installed("1.0.0", FP_A, "/tox"),
            _installed("1.0.0", FP_A, "acme/"),
            _installed("1.0.0", FP_A, "acme/tox/x"),
        ],
    )
    assert answers[0] == {
        "name": "acme/tox",
        "version": "1.0.0",
        "fingerprint": FP_A,
        "found": True,
        "latest": "1.1.0",
        "latest_artifact": {
            "fingerprint": FP_A,
            "sha256": SHA_2,
            "size": 20,
            "url": "/blobs/sha256/" + SHA_2,
            "filename": "1.1.0-2.ppatch",
            "key_id": "ed25519:2",
        },
        "yanked": True,
        "yanked_reason": "regressed",
    }
    assert answers[1]["latest"] == "1.2.0"
    assert answers[1]["latest_artifact"]["sha256"] == SHA_4
    assert (answers[1]["yanked"], answers[1]["yanked_reason"]) == (False, None)
    assert answers[2]["latest"] == "9.0.0"
    assert answers[2]["latest_artifact"]["sha256"] == "6" * 64
    assert [a["name"] for a in answers] == [
        "acme/tox",
        "acme/tox",
        "beta/tox",
        "acme/missing",
        "gamma/tox",
        "acme",
        "/tox",
        "acme/",
        "acme/tox/x",
    ]
    for answer in answers[3:]:
        assert (answer["found"], answer["latest"], answer["yanked"]) == (False, None, False)
    # Every installed fingerprint has an artifact of its own: one query for the whole batch.
    assert len(statements.seen) == 1


def test_only_malformed_names_make_no_query(session: Session) -> None:
    statements = _Statements(session)
    answers = check_updates(session, [_installed(name="acme"), _installed(name="a/b/c")])
    assert [a["found"] for a in answers] == [False, False]
    assert statements.seen == []
    assert check_updates(session, []) == []
    assert statements.seen == []


def test_vendor_compatible_lists_are_read_only_when_needed(session: Session) -> None:
    tox = _package(session, "acme", "tox")
    _row(session, tox, "1.0.0", [(FP_A, SHA_1, [])])
    _row(session, tox, "1.1.0", [(FP_A, SHA_2, [FP_C])])
    _row(session, tox, "1.2.0", [(FP_B, SHA_3, None)])
    session.commit()
    statements = _Statements(session)
    (exact,) = check_updates(session, [_installed("1.0.0", FP_A)])
    assert (exact["latest"], exact["latest_artifact"]["sha256"]) == ("1.1.0", SHA_2)
    assert len(statements.seen) == 1
    # FP_C has no artifact: the vendors' lists are read (one more query), and 1.1.0's artifact,
    # built for FP_A, declares FP_C compatible.
    (compatible,) = check_updates(session, [_installed("1.0.0", FP_C)])
    assert len(statements.seen) == 3
    assert compatible["latest"] == "1.1.0"
    assert compatible["latest_artifact"] == {
        "fingerprint": FP_A,
        "sha256": SHA_2,
        "size": 20,
        "url": "/blobs/sha256/" + SHA_2,
        "filename": "1.1.0-2.ppatch",
        "key_id": "ed25519:2",
    }


def test_a_fingerprint_no_vendor_lists_gets_nothing(session: Session) -> None:
    tox = _package(session, "acme", "tox")
    _row(session, tox, "1.0.0", [(FP_A, SHA_1, None)])
    session.commit()
    (answer,) = check_updates(session, [_installed("1.0.0", FP_C)])
    assert (answer["found"], answer["latest"], answer["latest_artifact"]) == (True, None, None)


def test_a_package_whose_releases_have_no_artifacts_makes_one_query(session: Session) -> None:
    tox = _package(session, "acme", "tox")
    _row(session, tox, "1.0.0", [], yanked=True, reason="gone")
    session.commit()
    statements = _Statements(session)
    (answer,) = check_updates(session, [_installed("1.0.0", FP_C)])
    assert (answer["found"], answer["latest"], answer["yanked"]) == (True, None, True)
    assert answer["yanked_reason"] == "gone"
    # FP_C matches nothing, but no artifact exists whose list could name it.
    assert len(statements.seen) == 1


def test_a_manifest_without_base_model_lists_nothing(session: Session) -> None:
    tox = _package(session, "acme", "tox")
    _row(session, tox, "1.0.0", [(FP_A, SHA_1, None)])
    session.query(Artifact).update({Artifact.manifest: {"name": "x"}})
    session.commit()
    (answer,) = check_updates(session, [_installed("1.0.0", FP_C)])
    assert (answer["found"], answer["latest"]) == (True, None)


def test_a_compatible_list_stays_with_its_own_artifact_in_a_release_of_several(
    session: Session,
) -> None:
    # Two artifacts in one release; only the first one's vendor lists FP_C. Putting its list on
    # the other artifact would offer a patch built for FP_B to an FP_C model.
    tox = _package(session, "acme", "tox")
    _row(session, tox, "1.1.0", [(FP_A, SHA_2, [FP_C]), (FP_B, SHA_3, None)])
    session.commit()
    (answer,) = check_updates(session, [_installed("1.0.0", FP_C)])
    assert answer["latest"] == "1.1.0"
    assert (answer["latest_artifact"]["fingerprint"], answer["latest_artifact"]["sha256"]) == (
        FP_A,
        SHA_2,
    )
