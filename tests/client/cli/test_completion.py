"""`ppatch completion SHELL`: scripts generated from the parser, checked by running bash's."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from ppatch.cli.completion import words_by_path


def _script(ppatch: Any, shell: str) -> str:
    result = ppatch("completion", shell)
    assert result.code == 0, result.err
    return str(result.out)


def _complete(script: str, line: str) -> list[str]:
    """What bash offers after typing `line` (a trailing space means a new, empty word)."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(word) for word in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_ppatch\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ppatch ins", ["inspect", "install"]),
        ("ppatch install --mo", ["--model"]),
        ("ppatch miniature ", ["build", "-h", "--help"]),
        ("ppatch miniature build --d", ["--dir"]),
        ("ppatch config s", ["set"]),
        ("ppatch completion ", ["bash", "zsh", "fish", "-h", "--help"]),
        ("ppatch -q outd", ["outdated"]),
        ("ppatch outdated --model ./m --j", ["--json"]),
    ],
)
def test_bash_completes_commands_actions_and_flags(
    ppatch: Any, line: str, expected: list[str]
) -> None:
    assert sorted(_complete(_script(ppatch, "bash"), line)) == sorted(expected)


def test_the_table_covers_every_command_and_flag() -> None:
    from ppatch.cli.main import build_parser

    table = words_by_path(build_parser())
    assert "install" in table[""] and "--version" in table[""]
    assert {"--model", "--registry", "--json", "--dry-run", "-r"} <= set(table["install"])
    assert table["config"][:3] == ["list", "get", "set"]


def test_zsh_loads_the_bash_function_through_bashcompinit(ppatch: Any) -> None:
    script = _script(ppatch, "zsh")
    assert "bashcompinit" in script and "complete -o default -F _ppatch ppatch" in script


def test_fish_script_has_a_line_per_command_and_flag(ppatch: Any) -> None:
    script = _script(ppatch, "fish")
    assert (
        "complete -c ppatch -f -n '__fish_use_subcommand' -a 'install' "
        "-d 'install patches for a model'" in script
    )
    assert (
        "complete -c ppatch -n '__fish_seen_subcommand_from miniature; and "
        "__fish_seen_subcommand_from build' -l dir" in script
    )
    assert (
        "complete -c ppatch -f -n '__fish_seen_subcommand_from config; and not "
        "__fish_seen_subcommand_from list get set' -a 'get'" in script
    )


def test_an_unknown_shell_is_a_usage_error(ppatch: Any) -> None:
    result = ppatch("completion", "tcsh")
    assert result.code == 2
    assert "invalid choice: 'tcsh'" in result.err
