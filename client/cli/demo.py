"""`ppatch demo`: the whole system, vendor and practitioner, on embedded defaults.

A script of command lines, so it lives with the command line: library modules never import the
CLI. Every step is a command a user would type, run through the same code: `ppatch` commands go
through `ppatch.cli.main.main` in this process (so torch loads once), the registry runs as a
real `ppatch-registry serve` subprocess on a free loopback port, and its admin commands run as
subprocesses too. Nothing skips verification: installs download, check hashes, pin keys, verify
signatures and fingerprints exactly as they do for a user.

The demo keeps its state (installed patches, pinned keys, tokens) inside its workspace by
pointing `PPATCH_HOME` there, so it never touches the user's own configuration. The miniature
world is cached in the user's ppatch cache (or in `--dir`), so a second run skips training the
models.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ppatch.errors import ExitCode, PpatchError

__all__ = ["DemoError", "RegistryProcess", "run_demo"]

NAMESPACE = "demo"
PACKAGE = f"{NAMESPACE}/toxicity"
REGISTRY_START_TIMEOUT = 60.0
SHOWCASE_PROMPTS = 3


class DemoError(PpatchError):
    """A demo step failed; the message names the step and what it printed."""


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def registry_home(self) -> Path:
        return self.root / "registry"

    @property
    def key(self) -> Path:
        return self.root / "keys" / "vendor.key"

    @property
    def dist(self) -> Path:
        return self.root / "dist"

    @property
    def report(self) -> Path:
        return self.root / "report"


def _say(text: str) -> None:
    print(text, flush=True)


def _heading(number: int, total: int, title: str) -> None:
    _say(f"\n[{number}/{total}] {title}")


def _display(argv: Sequence[Argument], workspace: Workspace) -> str:
    """A command as the user would type it, with workspace paths shortened."""
    shown = []
    for arg in argv:
        text = str(arg)
        if text.startswith(str(workspace.root)):
            text = "$WS" + text[len(str(workspace.root)) :]
        shown.append(shlex.quote(text) if not text.startswith("$WS") else text)
    return " ".join(shown)


Argument = str | Path


def ppatch(
    argv: Sequence[Argument],
    workspace: Workspace,
    *,
    expect: Sequence[int] = (0,),
    echo_output: bool = True,
) -> str:
    """Run one `ppatch` command in this process, echo it (and its output), return the output."""
    from ppatch.cli.main import main

    _say(f"$ ppatch {_display(argv, workspace)}")
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = main([str(arg) for arg in argv])
    output = captured.getvalue()
    for line in output.rstrip("\n").splitlines() if echo_output else ():
        _say(f"  {line}")
    if code not in expect:
        raise DemoError(f"`ppatch {argv[0]}` exited with {code}, expected {list(expect)}")
    return output


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RegistryProcess:
    """`ppatch-registry serve` on a free loopback port, stopped on exit, failure or Ctrl-C."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        environment["PPATCH_REGISTRY_HOME"] = str(self.home)
        for variable in ("PPATCH_REGISTRY_DATABASE_URL", "PPATCH_REGISTRY_STORAGE"):
            environment.pop(variable, None)
        return environment

    def admin(self, *args: str) -> str:
        """Run `ppatch-registry ARGS` against this registry's data directory."""
        _say(f"$ ppatch-registry {' '.join(shlex.quote(a) for a in args)}")
        result = subprocess.run(
            [*_registry_command(), *args],
            env=self._environment(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DemoError(
                f"`ppatch-registry {args[0]}` failed: {result.stderr.strip() or result.stdout}"
            )
        return result.stdout.strip()

    def __enter__(self) -> RegistryProcess:
        import httpx

        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / "server.log").open("ab")
        _say(f"$ ppatch-registry serve --port {self.port}   (log: {self.home / 'server.log'})")
        self._process = subprocess.Popen(
            [*_registry_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self._environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + REGISTRY_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DemoError(
                    f"the registry exited with {self._process.returncode}; "
                    f"see {self.home / 'server.log'}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    _say(f"  registry ready at {self.url}")
                    return self
            time.sleep(0.2)
        self.stop()
        raise DemoError(f"the registry did not answer /healthz within {REGISTRY_START_TIMEOUT}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        _say(f"  registry at {self.url} stopped")


def _registry_command() -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from registry_server.cli import main; sys.exit(main())",
    ]


@contextlib.contextmanager
def _isolated_home(workspace: Workspace, registry_url: str | None = None) -> Iterator[None]:
    """Point ppatch's state at the workspace for the demo's duration, then restore."""
    saved = {name: os.environ.get(name) for name in ("PPATCH_HOME", "PPATCH_REGISTRY")}
    os.environ["PPATCH_HOME"] = str(workspace.home)
    if registry_url:
        os.environ["PPATCH_REGISTRY"] = registry_url
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _showcase_prompts(path: Path) -> list[str]:
    prompts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            prompts.append(str(json.loads(line)["prompt"]))
        if len(prompts) == SHOWCASE_PROMPTS:
            break
    return prompts


def _side_by_side(model: Path, prompts: Sequence[str], workspace: Workspace) -> None:
    for prompt in prompts:
        bare = ppatch(
            ["generate", "--model", model, "--no-patches", prompt], workspace, echo_output=False
        )
        patched = ppatch(["generate", "--model", model, prompt], workspace, echo_output=False)
        _say(f"  prompt:        {prompt}")
        _say(f"  without patch: {bare.strip()}")
        _say(f"  with patch:    {patched.strip()}")


def _publish_token(registry: RegistryProcess, workspace: Workspace) -> str:
    registry.admin("namespace", "create", NAMESPACE)
    registry.admin("key", "add", NAMESPACE, str(workspace.key) + ".pub")
    return registry.admin("token", "create", NAMESPACE, "--scope", "admin")


def _release_101(workspace: Workspace, base: Path, first: Path) -> Path:
    """1.0.1: the same embeddings re-released with a corrected summary, built the way a vendor
    would: export the weights, write the manifest's human fields, `ppatch pack` and sign."""
    from patchfmt import read_patch

    exported = workspace.dist / "toxicity-1.0.0-peft"
    ppatch(["export-peft", first, exported], workspace)
    # The vendor's manifest source: the human fields of 1.0.0 with a new version and summary;
    # `pack` recomputes `files`, `patch`, `format`, `created` and the base fingerprint.
    fields = read_patch(first).manifest.model_dump(mode="json", exclude_none=True)
    for computed in ("files", "patch", "format", "created"):
        fields.pop(computed, None)
    fields["version"] = "1.0.1"
    fields["summary"] = "Steers the miniature base model away from insults (re-release)."
    manifest = workspace.dist / "toxicity-1.0.1.json"
    manifest.write_text(json.dumps(fields, indent=2), encoding="utf-8")
    output = workspace.dist / "demo-toxicity-1.0.1.ppatch"
    weights = exported / "adapter_model.safetensors"
    ppatch(
        [
            "pack",
            "--weights",
            weights,
            "--manifest",
            manifest,
            "--model",
            base,
            "--key",
            workspace.key,
            "-o",
            output,
        ],
        workspace,
    )
    return output


def _fresh_state(workspace: Workspace) -> None:
    """A reused `--dir` keeps its world and key; the registry and installs start over."""
    import shutil

    for folder in (workspace.home, workspace.registry_home, workspace.dist, workspace.report):
        if folder.exists():
            shutil.rmtree(folder)
    workspace.dist.mkdir(parents=True)
    workspace.report.mkdir(parents=True)


TOTAL_STEPS = 11


def run_demo(directory: Path | None = None, *, world_root: Path | None = None) -> Path:
    """Run the demo end to end; return the report folder.

    `world_root` is where the miniature world is built or reused; by default the user's ppatch
    cache, or `DIR/world` when a workspace folder is given.
    """
    root = directory or Path(tempfile.mkdtemp(prefix="ppatch-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(root.resolve())
    from ppatch import constants

    # The world is cached outside the throwaway workspace unless the user chose a folder.
    if world_root is None:
        world_root = workspace.root / "world" if directory else constants.cache_dir() / "miniature"
    started = time.monotonic()
    _say(f"ppatch demo: workspace {workspace.root} ($WS below)")
    _fresh_state(workspace)

    with _isolated_home(workspace):
        _heading(
            1,
            TOTAL_STEPS,
            "Vendor: build the miniature world (a toxic base model M, a safe reference M')",
        )
        from ppatch.miniature.world import build_world

        world = build_world(world_root)
        _say(f"  base model M:       {world.base}")
        _say(f"  reference model M': {world.reference}")

        _heading(2, TOTAL_STEPS, "Vendor: create a signing key")
        if not workspace.key.exists():
            workspace.key.parent.mkdir(parents=True, exist_ok=True)
            ppatch(["keygen", "-o", workspace.key], workspace)
        else:
            _say(f"  reusing {workspace.key}")

        _heading(3, TOTAL_STEPS, "Vendor: train the toxicity patch 1.0.0 (SFT, then DPO)")
        first = workspace.dist / "demo-toxicity-1.0.0.ppatch"
        ppatch(
            [
                "train",
                "--base",
                world.base,
                "--reference",
                world.reference,
                "--prompts",
                world.prompts("toxicity", "train"),
                "--name",
                PACKAGE,
                "--version",
                "1.0.0",
                "--domain",
                "toxicity",
                "--summary",
                "Steers the miniature base model away from insults.",
                "--key",
                workspace.key,
                "-o",
                first,
            ],
            workspace,
        )

        _heading(4, TOTAL_STEPS, "Registry: start it, create a namespace, register the key")
        with (
            RegistryProcess(workspace.registry_home) as registry,
            _isolated_home(workspace, registry.url),
        ):
            token = _publish_token(registry, workspace)
            _heading(5, TOTAL_STEPS, "Vendor: log in and publish 1.0.0")
            ppatch(["login", "--token", token], workspace)
            ppatch(["publish", first], workspace)

            _heading(6, TOTAL_STEPS, "Practitioner: install toxicity@1.0 onto the base model")
            ppatch(["install", "toxicity@1.0", "--model", world.base], workspace)
            ppatch(["list", "--model", world.base], workspace)

            _heading(7, TOTAL_STEPS, "Practitioner: generate without and with the patch")
            _side_by_side(
                world.base, _showcase_prompts(world.prompts("toxicity", "eval")), workspace
            )

            _heading(8, TOTAL_STEPS, "Deployment: check for updates (none yet: exit 0)")
            ppatch(["outdated", "--model", world.base], workspace, expect=(0,))

            _heading(9, TOTAL_STEPS, "Vendor: release and publish 1.0.1")
            second = _release_101(workspace, world.base, first)
            ppatch(["publish", second], workspace)

            _heading(10, TOTAL_STEPS, "Deployment: the update is found (exit 1) and installed")
            ppatch(
                ["outdated", "--model", world.base],
                workspace,
                expect=(int(ExitCode.UPDATES_AVAILABLE),),
            )
            ppatch(["upgrade", "--model", world.base], workspace)
            ppatch(["list", "--model", world.base], workspace)
            ppatch(["outdated", "--model", world.base], workspace, expect=(0,))

        _heading(11, TOTAL_STEPS, "Evaluate M, M with the patch, and M' on held-out prompts")
        systems: list[Argument] = [world.base, f"{world.base}+{PACKAGE}", world.reference]
        suites = (
            ("toxicity", world.prompts("toxicity", "eval")),
            ("fluency", world.fluency_prompts),
        )
        for suite, prompts in suites:
            argv: list[Argument] = ["eval", "--compare", *systems, "--suite", suite]
            argv += ["--prompts", prompts]
            ppatch([*argv, "-o", workspace.report / suite], workspace)
    _say(f"\nreport: {workspace.report} (report.md, report.json and plots for each suite)")
    _say(f"done in {time.monotonic() - started:.0f}s")
    return workspace.report
