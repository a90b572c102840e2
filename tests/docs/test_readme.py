"""The README stays true: its commands parse, its catalogue is the shipped one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from qcpulse.cli import build_parser
from services.indicators.worker import catalogue_for

README = Path(__file__).resolve().parents[2] / "README.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S)


def qcpulse_invocations() -> list[list[str]]:
    """Every `qcpulse …` command in the README's shell blocks and command table."""
    text = README.read_text(encoding="utf-8")
    found = []
    # A line continued with a backslash is one command.
    lines = [
        line for block in code_blocks(text) for line in block.replace("\\\n", " ").splitlines()
    ]
    lines += re.findall(r"^\| `(qcpulse [^`]*)`", text, flags=re.M)
    for line in lines:
        for part in re.split(r"&&|\|", line):
            # KEY=$(qcpulse …): the command substituted is a command too.
            words = shlex.split(part.replace("$(", " ").replace(")", " "), comments=True)
            for i, word in enumerate(words):
                if "=" not in word and word.rsplit("/", 1)[-1] == "qcpulse":
                    args = [w for w in words[i + 1 :] if w != "\\"]
                    found.append(args)
                    break
    return found


def test_readme_starts_with_the_two_commands():
    blocks = code_blocks(README.read_text(encoding="utf-8"))
    assert "qcpulse demo" in blocks[0]
    assert "pytest" in blocks[1]


@pytest.mark.parametrize("args", qcpulse_invocations(), ids=lambda a: " ".join(a[:2]) or "qcpulse")
def test_every_readme_command_parses(args):
    parser = build_parser()
    # Parse exactly as written (the arguments must be valid)…
    parser.parse_args(args)
    # …and --help works for the subcommand named.
    subcommand = [a for a in args if not a.startswith("-")][:2]
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([*subcommand, "--help"])
    assert exit_info.value.code == 0


def test_readme_catalogue_lists_exactly_the_shipped_indicators():
    text = README.read_text(encoding="utf-8")
    section = text.split("## The indicator catalogue", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| ([A-Z][A-Z0-9-]+) \|", section, flags=re.M)
    shipped = [d.code for d in catalogue_for(None).definitions()]
    assert sorted(listed) == sorted(shipped)
    names = {d.code: d.name.zh for d in catalogue_for(None).definitions()}
    for code in listed:
        assert f"| {code} | {names[code]} |" in section
