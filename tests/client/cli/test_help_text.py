"""Every `ppatch` sub-command's --help has a description, its exit codes and examples that parse."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from ppatch.cli.help_text import EPILOGS, walk
from ppatch.cli.main import build_parser

PARSER = build_parser()
COMMANDS = {" ".join(path): child for path, child, _help in walk(PARSER)}
# The `ppatch ...` part of an example: up to a pipe, a comment, a redirection or a `$(...)`'s end.
EXAMPLE = re.compile(r"ppatch [^|#>)]*")


def _examples(help_text: str) -> list[str]:
    _head, _marker, tail = help_text.partition("\nexamples:\n")
    return [line.strip() for line in tail.splitlines() if line.strip()]


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_has_a_description_exit_codes_and_examples(path: str) -> None:
    child = COMMANDS[path]
    assert child.description, f"'ppatch {path}' has no description"
    text = child.format_help()
    assert "\nexit codes:\n  0   success" in text
    assert "130 interrupted" in text
    examples = _examples(text)
    assert 2 <= len(examples) <= 4, examples
    assert all(f"ppatch {path.split()[0]}" in example for example in examples)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_example_is_a_valid_command_line(path: str) -> None:
    for example in _examples(COMMANDS[path].format_help()):
        match = EXAMPLE.search(example)
        assert match is not None, example
        argv = shlex.split(match.group(0).replace("$TOKEN", "x"))[1:]
        try:
            parsed = build_parser(argv[0]).parse_args(argv)
        except SystemExit as exit_:  # a usage error inside an example
            pytest.fail(f"example {example!r} does not parse (exit {exit_.code})")
        assert callable(parsed.handler)


def test_no_table_entry_names_a_command_that_does_not_exist() -> None:
    assert set(EPILOGS) <= set(COMMANDS)


def test_install_help_shows_the_range_syntax_and_outdated_its_exit_one() -> None:
    assert ">=1.2.0 <1.3.0" in COMMANDS["install"].format_help()
    assert "1   an update is available" in COMMANDS["outdated"].format_help()


def test_descriptions_are_wrapped_and_examples_kept_as_written() -> None:
    text = COMMANDS["pack"].format_help()
    assert max(len(line) for line in text.partition("exit codes:")[0].splitlines()) <= 100
    assert "\n  ppatch pack --weights prefix.safetensors" in text


def test_top_level_help_points_to_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "ppatch COMMAND --help" in capsys.readouterr().out


def test_walk_reaches_nested_actions() -> None:
    assert {"miniature build", "config get", "config list", "config set"} <= set(COMMANDS)
    assert all(isinstance(child, argparse.ArgumentParser) for child in COMMANDS.values())
