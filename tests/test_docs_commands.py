"""The commands that reproduce the recorded results are commands of today's CLI: every
`mixsig <command> experiments/<config>.yaml [--set ...] [--space ...]` in experiments/README.md
and on the results pages loads its config with its overrides (and its space, for a sweep),
and no page asks for a script that is no longer in experiments/."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "experiments" / "README.md", *sorted((ROOT / "docs").glob("results-*.md")),
         *(ROOT / "docs" / page for page in ("signoff.md", "transient.md", "edges.md"))]


def _commands(page: Path) -> list[str]:
    """`mixsig ...` in backticks, and `.venv/bin/mixsig ...` lines of code blocks (continued
    lines joined, comments and bracketed placeholders such as `[--limit N]` dropped)."""
    text = page.read_text()
    found = re.findall(r"`(mixsig [^`]+)`", text)
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(".venv/bin/mixsig "):
                found.append(line[len(".venv/bin/"):])
    out = []
    for cmd in found:
        cmd = re.sub(r"\s\[[A-Za-z<-][^\]]*\]", "", cmd)
        out.append(cmd.split(" #", 1)[0].strip())
    return out


def _config_commands():
    for page in PAGES:
        for cmd in _commands(page):
            words = shlex.split(cmd)
            if len(words) > 2 and re.fullmatch(r"experiments/[\w./-]+\.yaml", words[2]):
                yield pytest.param(words, id=f"{page.name}: {cmd[:70]}")


@pytest.mark.parametrize("words", list(_config_commands()))
def test_a_recorded_command_loads_its_config(words):
    config, sets, space = words[2], [], None
    for flag, value in zip(words, words[1:]):
        if flag == "--set" and not re.search(r"=([A-Z]|.*[…<])$", value):   # not a placeholder (=K, =…)
            sets.append(value)
        elif flag == "--space":
            space = value
    cfg = load_config(ROOT / config, sets)
    assert cfg.name
    if words[1] == "sweep":
        from pipeline.config import apply_overrides
        from pipeline.sweep.space import check_space, parse_space
        assert space, f"{' '.join(words)}: a sweep needs --space"
        raw = apply_overrides(yaml.safe_load((ROOT / config).read_text()), sets)
        check_space(parse_space(ROOT / space), raw)


def test_the_commands_were_found():
    n = len(list(_config_commands()))
    assert n >= 30, n


@pytest.mark.parametrize("page", PAGES + [ROOT / "docs" / "index.md"], ids=lambda p: p.name)
def test_no_page_runs_a_script_that_is_gone(page):
    for script in re.findall(r"python (experiments/[\w/]+\.py)", page.read_text()):
        assert (ROOT / script).exists(), f"{page.name} runs {script}, which is not in the tree"
