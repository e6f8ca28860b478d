"""The packages and pipeline's rooms depend downwards only (docs/index.md, code layout).

Read from the source with `ast` (every import, module level or inside a function), so a
lazy import that climbs back up is caught too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lower rooms first; a module may import from its own room and from rooms before it
ROOMS = ["errors", "config", "data", "runtime", "flow", "system", "hardware", "serving", "stages", "cotraining",
         "sweep", "commands", "cli"]
SHARED = {"errors", "config"}       # used by every room (config's own errors build on errors)


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS else None


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


def test_rooms_import_only_downwards():
    wrong = []
    for module, path in _modules("pipeline"):
        own = _room(module)
        if own is None:
            continue
        for target in _imports(path):
            other = _room(target)
            if other is None or other == own or other in SHARED:
                continue
            if ROOMS.index(other) > ROOMS.index(own):
                wrong.append(f"{module} imports {target} ({own} → {other})")
    assert not wrong, "\n".join(wrong)


def test_every_pipeline_module_is_in_a_room():
    loose = [m for m, _ in _modules("pipeline") if m.count(".") == 1 and _room(m) is None
             and m not in ("pipeline.__init__", "pipeline.__main__")]
    assert not loose, f"modules outside the rooms: {loose}"


@pytest.mark.parametrize("package,forbidden", [
    ("analog", ("pipeline", "digital", "keras", "tensorflow", "mlflow")),
    ("digital", ("pipeline", "analog", "mlflow")),
])
def test_halves_stay_apart(package, forbidden):
    wrong = [f"{m} imports {t}" for m, path in _modules(package) for t in _imports(path)
             if t.split(".")[0] in forbidden]
    assert not wrong, "\n".join(wrong)
