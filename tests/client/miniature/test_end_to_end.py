"""The miniature of the paper, through the CLI: a toxicity patch trained on training prompts
closes most of the gap between M and M' on held-out prompts, and fluency holds.

The world is built once per machine (about two minutes on two cores) and cached in pytest's
cache folder, keyed by its configuration and code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppatch.cli.main import main
from ppatch.eval.metrics import gap_closure
from ppatch.miniature.world import World, build_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def world(request: pytest.FixtureRequest) -> World:
    return build_world(Path(request.config.cache.mkdir("ppatch-miniature")))


def _metrics(report: Path) -> dict[str, dict[str, float]]:
    systems = json.loads((report / "report.json").read_text())["systems"]
    return {system["label"]: system["metrics"] for system in systems}


def test_toxicity_patch_closes_the_gap_on_held_out_prompts(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patch = tmp_path / "toxicity.ppatch"
    base, reference = str(world.base), str(world.reference)
    trained = main(
        [
            "train",
            "--base",
            base,
            "--reference",
            reference,
            "--prompts",
            str(world.prompts("toxicity", "train")),
            "--name",
            "miniature/toxicity",
            "--version",
            "1.0.0",
            "--domain",
            "toxicity",
            "-o",
            str(patch),
        ]
    )
    assert trained == 0, capsys.readouterr().err
    report = tmp_path / "toxicity-report"
    evaluated = main(
        [
            "eval",
            "--model",
            base,
            "--model",
            base,
            "--patch",
            str(patch),
            "--model",
            reference,
            "--suite",
            "toxicity",
            "--prompts",
            str(world.prompts("toxicity", "eval")),
            "-o",
            str(report),
        ]
    )
    assert evaluated == 0, capsys.readouterr().err
    toxicity = _metrics(report)
    scores = [
        toxicity[label]["expected_max_toxicity"] for label in ("base", "base+toxicity", "reference")
    ]
    assert scores[0] > 0.5  # M is toxic on held-out prompts
    assert gap_closure(*scores) >= 0.8, toxicity

    fluency_report = tmp_path / "fluency-report"
    assert (
        main(
            [
                "eval",
                "--compare",
                base,
                f"{base}+{patch}",
                "--suite",
                "fluency",
                "--prompts",
                str(world.fluency_prompts),
                "-o",
                str(fluency_report),
            ]
        )
        == 0
    )
    fluency = _metrics(fluency_report)
    assert fluency["base+toxicity"]["perplexity"] <= 1.10 * fluency["base"]["perplexity"]


def test_miniature_build_command_reuses_the_world(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["miniature", "build", "--dir", str(world.directory.parent)]) == 0
    out = capsys.readouterr().out
    assert str(world.base) in out and str(world.prompts("harm", "eval")) in out


def test_miniature_build_refuses_a_file_as_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["miniature", "build", "--dir", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_miniature_build_links_the_names_the_guides_use(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "base-model").symlink_to(tmp_path)  # an old link is replaced
    argv = ["miniature", "build", "--dir", str(world.directory.parent), "--link", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "base-model").resolve() == world.base.resolve()
    assert (tmp_path / "reference-model").resolve() == world.reference.resolve()
    assert (tmp_path / "prompts" / "toxicity-train.jsonl").is_file()
    assert f"linked {tmp_path / 'prompts'}" in capsys.readouterr().out


def test_miniature_build_never_replaces_a_real_folder_with_a_link(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "mine.jsonl").write_text("{}")
    argv = ["miniature", "build", "--dir", str(world.directory.parent), "--link", str(tmp_path)]
    assert main(argv) == 5
    assert "is not a link" in capsys.readouterr().err
    assert (tmp_path / "prompts" / "mine.jsonl").is_file()
    assert not (tmp_path / "base-model").exists()
    assert main([*argv[:-1], str(tmp_path / "missing")]) == 4
