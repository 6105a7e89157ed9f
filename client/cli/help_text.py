"""What `ppatch COMMAND --help` shows below the flags: the exit codes and a few examples.

Kept apart from the command modules so that one table shows every command's help at a glance
and a test can check that no command was left without (tests/client/cli/test_help_text.py).
`decorate` walks a finished parser and attaches these, with argparse's raw formatter so the
examples keep their line breaks.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from ppatch.errors import ExitCode

__all__ = ["EPILOGS", "Epilog", "HelpFormatter", "decorate", "walk"]

_MEANINGS: dict[int, str] = {
    0: "success",
    1: "an update is available or an installed version is yanked",
    2: "usage error (bad flag, spec, version, file or configuration)",
    3: "verification failed (hash, signature, key pin, fingerprint, malformed file)",
    4: "not found (package, version, model, file, installed patch)",
    5: "conflict (already exists, or other bytes under a published version)",
    6: "network (registry unreachable, timed out, 5xx, or PPATCH_OFFLINE)",
    7: "permission (no token, bad token, missing scope)",
    8: "anything else that went wrong",
    130: "interrupted (Ctrl-C)",
}

_LOCAL = (0, 2, 3, 4, 8)
_REGISTRY = (0, 2, 3, 4, 6, 8)
_WRITE = (0, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class Epilog:
    """The exit codes a command can end with (130 is added to all) and its examples."""

    codes: tuple[int, ...]
    examples: tuple[str, ...]

    def render(self) -> str:
        lines = ["exit codes:"]
        for code in (*self.codes, int(ExitCode.INTERRUPTED)):
            lines.append(f"  {code:<4}{_MEANINGS[code]}")
        lines += ["", "examples:"]
        lines += [f"  {example}" for example in self.examples]
        return "\n".join(lines)


# Keyed by the command path after `ppatch`; "miniature build" is a nested action.
EPILOGS: dict[str, Epilog] = {
    "keygen": Epilog(
        (0, 2, 4, 5, 8),
        ("ppatch keygen -o acme.key", "ppatch keygen -o acme.key --force   # replace a key"),
    ),
    "pack": Epilog(
        _LOCAL,
        (
            "ppatch pack --weights prefix.safetensors --manifest manifest.toml -o tox.ppatch",
            "ppatch pack --weights w.safetensors --manifest m.json --model ./base-model "
            "--key acme.key -o tox.ppatch",
        ),
    ),
    "sign": Epilog(
        _LOCAL,
        (
            "ppatch sign toxicity-1.0.0.ppatch --key acme.key",
            "ppatch sign unsigned.ppatch --key acme.key -o signed.ppatch",
        ),
    ),
    "inspect": Epilog(_LOCAL, ("ppatch inspect tox.ppatch", "ppatch inspect tox.ppatch --json")),
    "verify": Epilog(
        _LOCAL,
        (
            "ppatch verify tox.ppatch",
            "ppatch verify tox.ppatch --public-key acme.key.pub --model ./base-model",
        ),
    ),
    "fingerprint": Epilog(
        _LOCAL,
        (
            "ppatch fingerprint ./base-model",
            "ppatch fingerprint HuggingFaceTB/SmolLM2-135M-Instruct --json",
            "ppatch fingerprint HuggingFaceTB/SmolLM2-135M-Instruct@main",
        ),
    ),
    "search": Epilog(
        _REGISTRY,
        (
            "ppatch search toxicity",
            "ppatch search --domain harm --model ./base-model",
            "ppatch search --json | jq '.packages[].name'",
        ),
    ),
    "info": Epilog(_REGISTRY, ("ppatch info acme/toxicity", "ppatch info acme/toxicity --json")),
    "install": Epilog(
        _REGISTRY,
        (
            "ppatch install acme/toxicity --model ./base-model          # newest release",
            "ppatch install acme/toxicity@1.2 --model ./base-model      # >=1.2.0 <1.3.0",
            "ppatch install 'toxicity@^1.2' bias@1.0.3 --model ./base-model --dry-run",
            "ppatch install -r ppatch.lock --model ./base-model",
        ),
    ),
    "remove": Epilog(
        _LOCAL,
        (
            "ppatch remove acme/toxicity --model ./base-model",
            "ppatch remove toxicity --model ./base-model",
        ),
    ),
    "list": Epilog(
        _LOCAL, ("ppatch list --model ./base-model", "ppatch list --model ./base-model --json")
    ),
    "freeze": Epilog(
        _LOCAL,
        ("ppatch freeze --model ./base-model", "ppatch freeze --model ./base-model -o ppatch.lock"),
    ),
    "outdated": Epilog(
        (0, 1, 2, 3, 4, 6, 8),
        (
            "ppatch outdated --model ./base-model",
            "ppatch outdated --model ./base-model --json   # a cron job: exit 1 needs attention",
        ),
    ),
    "upgrade": Epilog(
        _REGISTRY,
        (
            "ppatch upgrade --model ./base-model",
            "ppatch upgrade acme/toxicity --model ./base-model --dry-run",
        ),
    ),
    "publish": Epilog(
        _WRITE,
        (
            "ppatch publish toxicity-1.0.0.ppatch",
            "ppatch publish toxicity-1.0.0.ppatch --registry https://registry.example.org --json",
        ),
    ),
    "yank": Epilog(
        _WRITE,
        (
            "ppatch yank acme/toxicity@1.3.0 --reason 'refuses too little'",
            "ppatch yank acme/toxicity@1.3.0 --reason 'broken' --json",
        ),
    ),
    "unyank": Epilog(
        _WRITE, ("ppatch unyank acme/toxicity@1.3.0", "ppatch unyank acme/toxicity@1.3.0 --json")
    ),
    "login": Epilog(
        (0, 2, 6, 7, 8),
        (
            "ppatch login --registry http://127.0.0.1:8080          # asks for the token",
            'echo "$TOKEN" | ppatch login --registry https://registry.example.org --check',
        ),
    ),
    "trust": Epilog(
        _REGISTRY,
        ("ppatch trust acme", "ppatch trust acme --public-key acme.key.pub"),
    ),
    "generate": Epilog(
        _LOCAL,
        (
            "ppatch generate --model ./base-model 'How do I'",
            "ppatch generate --model ./base-model --patch tox.ppatch 'How do I'",
            "ppatch generate --model ./base-model --no-patches --sample --seed 1 'Hello'",
        ),
    ),
    "import-peft": Epilog(
        _LOCAL,
        (
            "ppatch import-peft ./adapter --name acme/toxicity --version 1.0.0 "
            "--domain toxicity --model ./base-model -o tox.ppatch",
            "ppatch import-peft ./adapter --name acme/tox --version 1.0.0 --domain toxicity "
            "--key acme.key -o tox.ppatch",
        ),
    ),
    "export-peft": Epilog(
        _LOCAL,
        ("ppatch export-peft tox.ppatch ./adapter", "ppatch export-peft tox.ppatch out/peft"),
    ),
    "train": Epilog(
        _LOCAL,
        (
            "ppatch train --base ./base-model --reference ./reference-model "
            "--prompts toxicity-train.jsonl --name acme/toxicity --version 1.0.0 "
            "--domain toxicity --key acme.key -o toxicity-1.0.0.ppatch",
            "ppatch train --base ./base-model --pairs pairs.jsonl --name acme/toxicity "
            "--version 1.0.1 --domain toxicity --stages sft -o tox.ppatch",
        ),
    ),
    "eval": Epilog(
        _LOCAL,
        (
            "ppatch eval --suite toxicity --prompts eval.jsonl --model ./base-model "
            "--model ./base-model --patch tox.ppatch -o report",
            "ppatch eval --suite harm --prompts eval.jsonl --compare ./m ./m+acme/harm -o report",
        ),
    ),
    "miniature": Epilog(
        _LOCAL,
        ("ppatch miniature build --dir world", "ppatch miniature build --dir world --seed 1"),
    ),
    "miniature build": Epilog(
        (0, 2, 4, 5, 8),
        (
            "ppatch miniature build --dir world",
            "ppatch miniature build --dir ~/ppatch-world --link .   # ./base-model etc.",
            "ppatch miniature build --dir world --seed 1",
        ),
    ),
    "demo": Epilog(_LOCAL, ("ppatch demo", "ppatch demo --dir demo-workspace")),
    "serve": Epilog(
        (0, 2, 3, 4, 8),
        (
            "ppatch serve --model ./base-model",
            "ppatch serve --model ./base-model --port 8000 --auto-upgrade 300",
            "ppatch serve --model HuggingFaceTB/SmolLM2-135M-Instruct --dtype bfloat16",
        ),
    ),
    "config": Epilog(
        (0, 2, 8),
        (
            "ppatch config list",
            "ppatch config set default_registry https://registry.example.org",
            "ppatch config get registries.local",
        ),
    ),
    "config list": Epilog((0, 2, 8), ("ppatch config list", "ppatch config list --json")),
    "config get": Epilog(
        (0, 2, 4, 8), ("ppatch config get default_registry", "ppatch config get registries.local")
    ),
    "config set": Epilog(
        (0, 2, 8),
        (
            "ppatch config set default_registry local",
            "ppatch config set registries.local http://127.0.0.1:8080",
        ),
    ),
    "completion": Epilog(
        (0, 2),
        (
            'eval "$(ppatch completion bash)"                # in ~/.bashrc',
            'eval "$(ppatch completion zsh)"                 # in ~/.zshrc',
            "ppatch completion fish > ~/.config/fish/completions/ppatch.fish",
        ),
    ),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps text that has line breaks (the epilogs) as written and wraps one-paragraph text
    (the descriptions, written as single long strings) to the terminal's width."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every sub-command parser under `parser`: its path, parser and one-line help."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            yield (*path, name), child, helps.get(name)
            yield from walk(child, (*path, name))


def decorate(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command a description, exit codes and examples, laid out as written."""
    for path, child, one_line in walk(parser):
        if not child.description and one_line:
            child.description = one_line[0].upper() + one_line[1:] + "."
        epilog = EPILOGS.get(" ".join(path))
        if epilog is not None:
            child.epilog = epilog.render()
            child.formatter_class = HelpFormatter
