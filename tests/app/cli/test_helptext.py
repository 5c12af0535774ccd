"""Every sub-command and option has help, and each option's --help text states its default."""

from __future__ import annotations

import argparse
import re

import pytest

from app.cli import build_parser, main
from app.cli.helptext import has_default


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the root and every sub-command, aliases once."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _parsers(sub, (*path, name))


def _blocks(text: str) -> list[str]:
    """Each action's entry in a --help text (invocation + help), whitespace collapsed."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if re.match(r"^  \S", line):
            current = [line]
            blocks.append(current)
        elif current is not None and line.startswith("   "):
            current.append(line)
        else:
            current = None
    return [" ".join(" ".join(b).split()) for b in blocks]


def _entry(blocks: list[str], action: argparse.Action) -> str:
    if action.option_strings:
        starts = [re.escape(o) for o in action.option_strings]
    else:
        name = action.metavar or ("{" + ",".join(action.choices) + "}" if action.choices else action.dest)
        starts = [re.escape(name)]
    found = [b for b in blocks if re.match(rf"^(?:{'|'.join(starts)})(?:[ ,]|$)", b)]
    assert found, f"{action.option_strings or action.dest} not found in the help text"
    return found[0]


PARSERS = list(_parsers(build_parser()))


def test_the_walk_reaches_nested_commands():
    paths = {p for p, _ in PARSERS}
    assert {("run",), ("samples",), ("models",), ("bench", "pipeline")} <= paths


@pytest.mark.parametrize("path,parser", PARSERS, ids=[" ".join(p) or "facestream" for p, _ in PARSERS])
def test_every_option_has_help_stating_its_default(path, parser, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    blocks = _blocks(capsys.readouterr().out)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        where = f"facestream {' '.join(path)} {action.option_strings or action.dest}"
        assert action.help and action.help is not argparse.SUPPRESS, f"{where} has no help text"
        if isinstance(action, argparse._SubParsersAction):
            helped = {id(action.choices[c.dest]) for c in action._choices_actions if c.help}
            missing = [n for n, p in action.choices.items() if id(p) not in helped]
            assert not missing, f"{where}: sub-commands without help: {missing}"
            continue
        if has_default(action):
            entry = _entry(blocks, action)
            assert "default" in entry and str(action.default) in entry, f"{where}: help does not state its default"
