#!/usr/bin/env python3
"""Mutation testing (mutmut 3) over the modules that carry the security and correctness claims.

For each module, mutmut flips one decision at a time (an operator, a constant, a condition) and
runs the tests that cover it; a mutant is killed when a test fails. The score is killed / (killed +
survived + no tests + timeouts); docs/testing.md lists every survivor and why it is accepted.

mutmut names a mutant after its file's path (`client/trust.py` -> `client.trust`) and activates it
only when the running function's `__module__` matches, but the tests import the client as
`ppatch` (pyproject maps client/ to ppatch). So each module runs in a staging copy of the tree,
`.mutation/<module>/`, where client/ is named ppatch/, with its own `[tool.mutmut]` section: the
module to mutate and the test files that cover it.

    .venv/bin/python benchmarks/mutation.py                 # every module (long: tens of minutes)
    .venv/bin/python benchmarks/mutation.py client/trust.py # one module
    .venv/bin/python benchmarks/mutation.py --list          # the modules and their tests
    .venv/bin/python benchmarks/mutation.py patchfmt/versions.py --only 'patchfmt.versions.x__c*'

Prints one line per module (killed, survived, no tests, timeout, score) and each survivor's
name; with --json, writes the figures to benchmarks/results/mutation.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGING = ROOT / ".mutation"
# The directories copied into a staging tree, under the name the tests import them by.
PACKAGES = {"patchfmt": "patchfmt", "registry_server": "registry_server", "client": "ppatch"}
# Every run: quiet, stop at the first failure (a mutant needs one failing test to be killed),
# SQLite only (the PostgreSQL runs of the same tests decide nothing more about these modules).
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not postgres and not slow"]


@dataclass(frozen=True)
class Target:
    module: str  # the path in this repository
    tests: tuple[str, ...]  # the test files that cover it
    # Seconds added to each test's measured time before mutmut's timeout (x15) applies; the
    # measured time leaves out fixture setup, which for a model's tests is most of the run.
    timeout_constant: float | None = None

    @property
    def staged(self) -> str:
        top, _, rest = self.module.partition("/")
        return f"{PACKAGES[top]}/{rest}"

    @property
    def slug(self) -> str:
        return self.module.removesuffix(".py").replace("/", ".")


TARGETS = [
    Target("patchfmt/versions.py", ("tests/patchfmt/test_versions.py",)),
    Target(
        "patchfmt/signing.py",
        ("tests/patchfmt/test_signing.py", "tests/patchfmt/test_container.py"),
    ),
    Target(
        "client/trust.py",
        ("tests/client/test_trust.py", "tests/client/test_trust_and_verify.py"),
    ),
    Target("client/resolver.py", ("tests/client/test_resolver.py",)),
    # The decisions, on hand-written rows and release tables; the HTTP round trip
    # (test_search_and_updates.py) uploads real patches for every test and decides nothing more.
    Target("registry_server/updates.py", ("tests/registry_server/test_updates.py",)),
    Target("client/install_plan.py", ("tests/client/test_install_plan.py",)),
    Target(
        "client/install.py",
        ("tests/client/test_trust_and_verify.py", "tests/client/test_install.py"),
    ),
    Target(
        "registry_server/upload.py",
        ("tests/registry_server/test_upload_steps.py", "tests/registry_server/test_upload.py"),
    ),
    Target(
        "patchfmt/fingerprint.py",
        (
            "tests/patchfmt/test_fingerprint.py",
            "tests/patchfmt/test_fingerprint_decisions.py",
            "tests/patchfmt/test_fingerprint_gguf.py",
        ),
    ),
    # The prefix-equivalence path: a patched forward and generate equal the concatenation
    # reference (test_patched_model.py); the shared prefix cache's own rules (test_prefix.py).
    Target(
        "client/runtime/prefix.py",
        ("tests/client/runtime/test_prefix.py", "tests/client/runtime/test_patched_model.py"),
        timeout_constant=10,  # building and loading the tiny model: seconds on a loaded machine
    ),
]

# mutmut forks each mutant's run from a process that has already run the tests: a thread pool
# (OpenMP's under torch, the tokenizers') started there is gone in the child while its locks
# stay held, and the child's first parallel call waits forever. Single-threaded, nothing is lost.
FORK_SAFE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

# The verdicts that count towards the score (mutmut's names).
JUDGED = {"killed", "survived", "no tests", "timeout", "suspicious", "segfault"}
MUTMUT_SECTION = re.compile(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", re.MULTILINE)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def stage(target: Target) -> Path:
    """A fresh staging tree for `target`: the packages under their import names, the tests, and
    a pyproject.toml whose `[tool.mutmut]` names this module and its tests."""
    work = STAGING / target.slug
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, name in PACKAGES.items():
        shutil.copytree(ROOT / source, work / name, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    section = (
        "[tool.mutmut]\n"
        f"source_paths = {_toml_list(sorted(PACKAGES.values()))}\n"
        f"only_mutate = {_toml_list([target.staged])}\n"
        f"pytest_add_cli_args = {_toml_list(PYTEST_ARGS)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(list(target.tests))}\n"
    )
    if target.timeout_constant is not None:
        section += f"timeout_constant = {target.timeout_constant}\n"
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    pyproject = MUTMUT_SECTION.sub("", pyproject).rstrip() + "\n\n" + section
    (work / "pyproject.toml").write_text(pyproject, "utf-8")
    return work


def mutmut(work: Path, *args: str, timeout: float | None = None) -> str:
    executable = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "PPATCH_NO_PROGRESS": "1", **FORK_SAFE}
    completed = subprocess.run(
        [str(executable), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return completed.stdout + completed.stderr


@dataclass(frozen=True)
class Score:
    module: str
    counts: dict[str, int]
    survivors: list[str]
    seconds: float

    @property
    def score(self) -> float:
        killed = self.counts.get("killed", 0)
        judged = sum(n for status, n in self.counts.items() if status != "skipped")
        return killed / judged if judged else 0.0


def run(target: Target, children: int, only: list[str] | None = None) -> Score:
    """Mutate `target` (only the mutants whose names match a pattern of `only`, when given)."""
    work = stage(target)
    started = time.monotonic()
    log = mutmut(work, "run", "--max-children", str(children), *(only or []))
    seconds = time.monotonic() - started
    (work / "run.log").write_text(log, "utf-8")
    listing = mutmut(work, "results", "--all", "true")
    counts: dict[str, int] = {}
    survivors: list[str] = []
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" not in name or status not in JUDGED:
            continue  # "not checked": left out by --only
        counts[status] = counts.get(status, 0) + 1
        if status != "killed":
            survivors.append(f"{name}: {status}")
    if not counts:
        raise SystemExit(f"mutmut produced no results for {target.module}; see {work}/run.log")
    return Score(target.module, counts, survivors, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all)")
    parser.add_argument("--children", type=int, default=2, help="parallel mutant runs")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--json", action="store_true", help="also write results/mutation.json")
    parser.add_argument("--min-score", type=float, default=None, help="exit 1 below this score")
    parser.add_argument(
        "--only",
        action="append",
        help="mutant name pattern, e.g. 'patchfmt.versions.x__compare*' (repeatable)",
    )
    args = parser.parse_args(argv)
    by_module = {target.module: target for target in TARGETS}
    if args.list:
        for target in TARGETS:
            print(f"{target.module}: {' '.join(target.tests)}")
        return 0
    unknown = [module for module in args.modules if module not in by_module]
    if unknown:
        print(f"mutation.py: error: not a listed module: {', '.join(unknown)}", file=sys.stderr)
        return 2
    scores = []
    for target in [by_module[m] for m in args.modules] or TARGETS:
        score = run(target, args.children, args.only)
        scores.append(score)
        counts = " ".join(f"{status}={n}" for status, n in sorted(score.counts.items()))
        print(f"{score.module}: {counts} score={score.score:.1%} ({score.seconds:.0f} s)")
        for survivor in score.survivors:
            print(f"    {survivor}")
        sys.stdout.flush()
    if args.json:
        out = ROOT / "benchmarks" / "results" / "mutation.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                [
                    {
                        "module": s.module,
                        "counts": s.counts,
                        "score": s.score,
                        "survivors": s.survivors,
                        "seconds": s.seconds,
                    }
                    for s in scores
                ],
                indent=2,
            )
            + "\n",
            "utf-8",
        )
    if args.min_score is not None and any(s.score < args.min_score for s in scores):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
