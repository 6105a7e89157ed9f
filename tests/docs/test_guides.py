"""Every command shown in the guides runs, so the docs cannot drift from the code.

Convention (docs/README.md): a fenced block whose info string is `sh` or `python` is a runnable
example. The blocks of one guide run in order in one bash process with `set -euo pipefail` (a
`python` block as a script of the venv's interpreter, each in a fresh process), in a workspace
that holds what a reader is told they have: `./base-model` and `./reference-model` (the miniature
world's models), `./prompts/` (its prompt files), and a registry at `$PPATCH_REGISTRY` whose data
directory is `$PPATCH_REGISTRY_HOME`. The guides run in the order below and share the workspace
and registry, as a vendor and then a practitioner would. A block that cannot run here (Docker,
a cloud bucket, pseudocode) is preceded by `<!-- docs-test: skip (reason) -->`, and the reason is
required. A block shown for reading only (a crontab line, a synopsis) uses `text` or no info
string.

The vendor guide is run as a reader pastes it into an empty folder: it builds (here: reuses) the
miniature world under `~/ppatch-world` and links it in, and starts the registry itself, so its
environment has no `PPATCH_REGISTRY`; only its port 8080 is replaced by port 0, so the registry
binds a port nobody holds (parallel runs on one machine cannot collide), and the script reads
the port back from the log the guide writes. `HOME` is a folder of the workspace whose
`ppatch-world` is the test cache's miniature world. The other guides find the registry and the
links that the vendor guide left, or, run alone, get them from the fixture.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import port_from_log

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Run order: the vendor publishes what the practitioner installs.
RUNNABLE_GUIDES = (
    "vendor-guide.md",
    "practitioner-guide.md",
    "registry.md",
    "cli.md",
    "format.md",
    "apply.md",
    "training.md",
    "security.md",
)
RUNNABLE_LANGUAGES = ("sh", "python")
# Ends the heredoc that feeds a python block to the interpreter; no guide may contain it.
PYTHON_END = "PPATCH_DOCS_PYTHON_END"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\s*(?P<reason>\([^)]*\))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    guide: str
    line: int
    language: str
    code: str
    skip_reason: str | None

    def as_bash(self) -> str:
        """The block as lines of the guide's bash script."""
        if self.language == "sh":
            return self.code
        assert PYTHON_END not in self.code, f"{self.guide}:{self.line} contains {PYTHON_END!r}"
        return f"python - <<'{PYTHON_END}'\n{self.code}{PYTHON_END}"


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        language = match.group("info").strip()
        if language not in RUNNABLE_LANGUAGES:
            continue
        line = text.count("\n", 0, match.start()) + 1  # the opening fence, 1-based
        before = text[: match.start()].rstrip("\n").splitlines()
        mark = SKIP_MARK.search(before[-1]) if before else None
        reason = None
        if mark is not None:
            reason = (mark.group("reason") or "").strip("() ")
            assert reason, f"{path.name}:{line}: a skipped block needs a reason"
        found.append(Block(path.name, line, language, match.group("body"), reason))
    return found


def test_blocks_of_keeps_sh_and_python_and_reads_skip_marks(tmp_path: Path) -> None:
    guide = tmp_path / "guide.md"
    guide.write_text(
        "# Guide\n\n```sh\necho one\n```\n\n```text\nnot run\n```\n\n"
        "<!-- docs-test: skip (needs Docker) -->\n```sh\ndocker run x\n```\n\n"
        "```python\nprint(2)\n```\n\n```\nsynopsis\n```\n",
        encoding="utf-8",
    )
    found = blocks_of(guide)
    assert [(b.line, b.language, b.code, b.skip_reason) for b in found] == [
        (3, "sh", "echo one\n", None),
        (12, "sh", "docker run x\n", "needs Docker"),
        (16, "python", "print(2)\n", None),
    ]
    assert found[2].as_bash() == f"python - <<'{PYTHON_END}'\nprint(2)\n{PYTHON_END}"


def test_a_skip_mark_without_a_reason_is_refused(tmp_path: Path) -> None:
    guide = tmp_path / "guide.md"
    guide.write_text("<!-- docs-test: skip -->\n```sh\nfalse\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks_of(guide)


def test_every_guide_with_commands_is_run() -> None:
    # Every page's blocks are read (a skipped block without a reason fails here); a page whose
    # blocks are all skipped, each with its reason (serve.md: runs until stopped), has nothing
    # to run, and any other page with a runnable block must be in RUNNABLE_GUIDES.
    blocks = {p.name: blocks_of(p) for p in DOCS.glob("*.md")}
    with_commands = {
        name for name, found in blocks.items() if any(not b.skip_reason for b in found)
    }
    missing = with_commands - set(RUNNABLE_GUIDES)
    assert not missing, f"guides with sh blocks that no test runs: {sorted(missing)}"


VENDOR_GUIDE = "vendor-guide.md"
GUIDE_PORT = "8080"
# The vendor guide starts its registry on GUIDE_PORT. Run here, the registry binds port 0 itself
# (a port picked beforehand and freed may be taken by another suite before the server binds it)
# and the script reads the port back from the log the guide already writes.
GUIDE_SERVE = f"ppatch-registry serve --port {GUIDE_PORT} > registry.log 2>&1 &"
GUIDE_EXPORT = f"export PPATCH_REGISTRY=http://127.0.0.1:{GUIDE_PORT}"
GUIDE_LOG = "registry.log"
READ_PORT = r"""ppatch_docs_port() {  # the port the registry (given port 0) reports in its log
  local port=""
  for _ in $(seq 600); do
    port=$(sed -nE 's#.*Uvicorn running on https?://[^ :]+:([0-9]+).*#\1#p' "$1" | head -n1) || true
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    sleep 0.1
  done
  echo "the registry did not report its port in $1 within 60 s" >&2
  return 1
}"""


def vendor_script(text: str) -> str:
    """The vendor guide's commands with its registry on a port the registry binds itself."""
    assert GUIDE_SERVE in text and GUIDE_EXPORT in text, (
        f"docs/{VENDOR_GUIDE} no longer starts its registry with {GUIDE_SERVE!r} and "
        f"{GUIDE_EXPORT!r}: update the rewrite in tests/docs/test_guides.py"
    )
    text = text.replace(GUIDE_SERVE, GUIDE_SERVE.replace(f"--port {GUIDE_PORT}", "--port 0"))
    text = text.replace(
        GUIDE_EXPORT,
        f"PPATCH_DOCS_PORT=$(ppatch_docs_port {GUIDE_LOG})\n"
        "export PPATCH_REGISTRY=http://127.0.0.1:$PPATCH_DOCS_PORT",
    )
    text = text.replace(f":{GUIDE_PORT}", ":$PPATCH_DOCS_PORT")
    return f"{READ_PORT}\n{text}"


def test_the_vendor_guide_runs_with_a_port_its_registry_binds(tmp_path: Path) -> None:
    guide = [b for b in blocks_of(DOCS / VENDOR_GUIDE) if b.skip_reason is None]
    script = vendor_script("\n".join(block.as_bash() for block in guide))
    assert "ppatch-registry serve --port 0 > registry.log 2>&1 &" in script
    assert f":{GUIDE_PORT}" not in script and f"--port {GUIDE_PORT}" not in script
    # What uvicorn prints once it has bound the port it was asked to choose.
    (tmp_path / GUIDE_LOG).write_text(
        "INFO:     Started server process [42]\n"
        "INFO:     Uvicorn running on http://127.0.0.1:45123 (Press CTRL+C to quit)\n",
        encoding="utf-8",
    )
    read = f"set -euo pipefail\n{READ_PORT}\nppatch_docs_port {GUIDE_LOG}"
    found = subprocess.run(
        ["bash", "-c", read], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert (found.returncode, found.stdout) == (0, "45123\n")


@dataclass
class DocsWorkspace:
    root: Path
    environment: dict[str, str]
    world: Path
    process_groups: list[int]
    port: int | None = None  # the running registry's, once one has started

    def use_port(self, port: int) -> None:
        self.port = port
        self.environment["PPATCH_REGISTRY"] = f"http://127.0.0.1:{port}"

    def registry_up(self) -> bool:
        import httpx

        if self.port is None:
            return False
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure_registry(self) -> None:
        """Start the registry the vendor guide would have started, when it is not running: on
        port 0, the port it binds read back from its log."""
        if self.registry_up():
            return
        log = self.root / "registry-server.log"
        with log.open("ab") as handle:
            after = handle.tell()
            server = subprocess.Popen(
                [Path(sys.executable).parent / "ppatch-registry", "serve", "--port", "0"],
                env=self.environment,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process_groups.append(server.pid)
        self.use_port(port_from_log(log, lambda: server.poll() is None, after=after))
        deadline = time.monotonic() + 60  # a bound for a hung start, not a speed check
        while not self.registry_up():
            assert server.poll() is None, "the registry exited during start-up"
            assert time.monotonic() < deadline, "the registry did not start within 60 s"
            time.sleep(0.2)

    def ensure_links(self) -> None:
        """The folders a reader of the other guides is told they have."""
        for name, target in (
            ("base-model", self.world / "base"),
            ("reference-model", self.world / "reference"),
            ("prompts", self.world / "prompts"),
        ):
            if not (self.root / name).exists():
                (self.root / name).symlink_to(target, target_is_directory=True)


@pytest.fixture(scope="module")
def workspace(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DocsWorkspace]:
    from ppatch.miniature.world import build_world

    cache = Path(request.config.cache.mkdir("ppatch-miniature"))
    world = build_world(cache)
    root = tmp_path_factory.mktemp("docs-workspace")
    home = root / "home"
    home.mkdir()
    (home / "ppatch-world").symlink_to(cache, target_is_directory=True)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PPATCH_REGISTRY", "PPATCH_TOKEN"))
    }
    environment.update(
        HOME=str(home),
        PPATCH_HOME=str(root / ".ppatch"),
        PPATCH_REGISTRY_HOME=str(home / "ppatch-registry"),
        PPATCH_NO_PROGRESS="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
    )
    workspace = DocsWorkspace(root, environment, world.directory, [])
    try:
        yield workspace
    finally:
        for group in workspace.process_groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.parametrize("guide", RUNNABLE_GUIDES)
def test_guide_commands_run(guide: str, workspace: DocsWorkspace) -> None:
    path = DOCS / guide
    assert path.is_file(), f"docs/{guide} is missing"
    runnable = [block for block in blocks_of(path) if block.skip_reason is None]
    script = ["set -euo pipefail"]
    for block in runnable:
        script.append(f"echo '--- {guide}:{block.line}'")
        script.append(block.as_bash())
    text = "\n".join(script)
    if guide == VENDOR_GUIDE:
        # As pasted into a fresh shell: the guide starts the registry and exports its address.
        environment = dict(workspace.environment)
        environment.pop("PPATCH_REGISTRY", None)
        del environment["PPATCH_REGISTRY_HOME"]
        text = vendor_script(text)
    else:
        workspace.ensure_registry()
        workspace.ensure_links()
        environment = dict(workspace.environment)
    process = subprocess.Popen(
        ["bash", "-c", text],
        cwd=workspace.root,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background registry is ended with the workspace
    )
    workspace.process_groups.append(process.pid)
    try:
        stdout, stderr = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert result.returncode == 0, (
        f"a command in docs/{guide} failed (exit {result.returncode}); output up to the failing "
        f"block:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    if guide == VENDOR_GUIDE:
        # The later guides use the registry this one started: its token is saved for its URL.
        workspace.use_port(port_from_log(workspace.root / GUIDE_LOG, lambda: True, timeout=5))
