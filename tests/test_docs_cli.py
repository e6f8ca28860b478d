"""docs/cli.md documents the CLI that exists: every registered command and subcommand has
its section and an example, and the page equals what docs/gen_cli.py makes of today's help
(so an option added, renamed or removed without regenerating the page fails here)."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import click

from pipeline.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _registered(group: click.Group, ctx: click.Context, prefix: str = "") -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"'{prefix}{name}' is listed but cannot be loaded"
        if cmd.hidden:
            continue
        out.append(prefix + name)
        if isinstance(cmd, click.Group):
            out += _registered(cmd, click.Context(cmd, info_name=name, parent=ctx), f"{prefix}{name} ")
    return out


def test_every_registered_command_has_a_section_and_an_example():
    commands = _registered(cli, click.Context(cli, info_name="mixsig"))
    assert {"cotrain", "train-analog", "verify", "bench", "data check"} <= set(commands)
    headings = set(re.findall(r"^#{2,4} mixsig (.+)$", PAGE.read_text(), flags=re.M))
    assert not set(commands) - headings, f"commands missing from docs/cli.md: {sorted(set(commands) - headings)}"
    assert not headings - set(commands), f"docs/cli.md documents commands that do not exist: {sorted(headings - set(commands))}"
    examples = _gen().EXAMPLES
    assert not set(commands) - set(examples), f"no example in docs/gen_cli.py for {sorted(set(commands) - set(examples))}"


def test_installed_entry_point_lists_the_documented_commands():
    """`mixsig --help` from the console script (a separate process), parsed here."""
    exe = Path(sys.executable).with_name("mixsig")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    listed = set(re.findall(r"^  ([a-z][a-z-]+)\s{2,}", res.stdout.split("Stages")[1], flags=re.M))
    documented = set(re.findall(r"^## mixsig (\S+)$", PAGE.read_text(), flags=re.M))
    assert listed and listed == documented, (sorted(listed), sorted(documented))


def test_page_matches_the_generator():
    gen = _gen()
    assert gen.render() == PAGE.read_text(), "docs/cli.md is out of date: run .venv/bin/python docs/gen_cli.py"
