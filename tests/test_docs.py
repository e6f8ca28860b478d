"""The docs stay true to the tree: every relative link resolves, the code paths they name
exist, the project points nowhere outside itself, and the engines page's script runs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _links(page: Path):
    text = page.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)            # not inside code blocks
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+://", target):
            yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
            continue
        if anchor and dest.suffix == ".md":
            # GitHub's anchors: headings lowercased, punctuation dropped, spaces → '-'
            heads = re.findall(r"^#+\s+(.*)$", dest.read_text(), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}
            if anchor not in slugs:
                broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_point_nowhere_outside_the_repository(page):
    text = page.read_text()
    for bad in ("/work/shared", "../shared", "DESIGN.md"):
        assert bad not in text, f"{page.name} mentions {bad}"


def test_code_paths_named_in_the_docs_exist():
    """`analog/native.py`-style paths in backticks must be files or folders of the tree."""
    missing = set()
    for page in PAGES:
        for path in re.findall(r"`((?:analog|digital|pipeline|tests|experiments|docs)/[\w./-]*)`", page.read_text()):
            if not (ROOT / path.rstrip("/")).exists():
                missing.add(f"{page.name}: {path}")
    assert not missing, sorted(missing)


def test_engines_page_script_runs_and_the_engines_agree(tmp_path):
    """The ngspice script of docs/engines.md, run as a script (its main guard matters)."""
    text = (ROOT / "docs" / "engines.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if b.startswith("# ngspice_script.py")]
    assert len(blocks) == 1
    script = tmp_path / "ngspice_script.py"
    script.write_text(blocks[0])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "converged: [True, True]" in res.stdout
    dv = float(re.search(r"max \|V_native - V_ngspice\| = (\S+) V", res.stdout).group(1))
    assert dv <= 1e-6, dv


def test_code_points_nowhere_outside_the_repository():
    """Docstrings cite docs/, not a design file outside the repository."""
    hits = []
    for folder in ("analog", "digital", "pipeline", "experiments"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            hits += [f"{path.relative_to(ROOT)}: {bad}" for bad in ("/work/shared", "../shared", "DESIGN.md")
                     if bad in text]
    assert not hits, hits


def test_the_index_names_every_module():
    """docs/index.md says it lists every module: each module of the three packages is named
    there, by its path or (inside a package's or room's row) by its file name."""
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [str(p.relative_to(ROOT)) for pkg in ("analog", "digital", "pipeline")
               for p in sorted((ROOT / pkg).rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py")
               and str(p.relative_to(ROOT)) not in index and f"`{p.name}`" not in index
               and f"{p.parent.relative_to(ROOT)}/{p.name}" not in index]
    assert not missing, missing
