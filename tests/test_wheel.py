"""The package as a user installs it: a wheel built from the repository, installed into a
fresh virtual environment outside it, runs the CLI from a folder outside it.

The dependencies (TensorFlow, MLflow, Ray, ...) are borrowed from the environment running
the tests rather than installed: a fresh install of them takes many minutes and the
network. They are borrowed through a `.pth` file in the new environment that lists the
running environment's site-packages as a plain path. Python processes the `.pth` files of
its own site-packages only, so the editable install of the repository that lives in the
borrowed folder (a `.pth` file with its import hook) is not loaded: `analog`, `digital` and
`pipeline` can only come from the wheel, which the test checks by their `__file__`.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a checkout holds that a build must not see (local runs, earlier builds, caches)
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    "runs", "mlruns", "mlartifacts", "mlflow.db*", ".mixsig-locks")
PACKAGES = ("analog", "analog.hardware", "analog.ngspice", "digital", "pipeline", "pipeline.commands",
            "pipeline.config", "pipeline.stages", "pipeline.sweep")


def _run(cmd, cwd, env, timeout=180):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


def _source_packages(root: Path) -> set:
    """Every folder under the three top-level packages that holds an __init__.py, dotted."""
    found = set()
    for top in ("analog", "digital", "pipeline"):
        for init in (root / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(root).parts))
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding the wheel, its mixsig script, a clean env, a work folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "MIXSIG_HOME", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"              # no network: the build uses what is installed
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", src, "-w", tmp / "dist"],
         cwd=tmp, env=env)
    wheel, = (tmp / "dist").glob("mixsig-*.whl")
    venv.EnvBuilder(with_pip=False).create(tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel], cwd=tmp, env=env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp, env=env).stdout.strip())
    borrowed = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "mixsig_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in borrowed))
    work = tmp / "work"
    work.mkdir()
    env["MIXSIG_HOME"] = str(work)
    return python, tmp / "venv" / "bin" / "mixsig", env, work, wheel


def test_the_wheel_holds_every_package_of_the_source(installed):
    import zipfile
    *_, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert set(PACKAGES) <= _source_packages(ROOT)
    assert shipped == _source_packages(ROOT)
    assert not any(n.startswith(("tests/", "experiments/", "docs/")) for n in names)


def test_the_packages_import_from_the_new_environment_not_the_repository(installed):
    python, _, env, work, _ = installed
    code = ("import importlib, sys\n"
            f"for name in {PACKAGES!r}:\n"
            "    print(importlib.import_module(name).__file__)\n"
            "print('editable' if any('editable' in type(f).__name__.lower() or 'editable' in str(f)\n"
            "      for f in sys.meta_path) else 'plain')\n")
    lines = _run([python, "-c", code], cwd=work, env=env).stdout.split()
    venv_root = str(python.parent.parent)
    for name, path in zip(PACKAGES, lines):
        assert path.startswith(venv_root + os.sep), (name, path)
        assert not path.startswith(str(ROOT) + os.sep), (name, path)
    assert lines[-1] == "plain"


def test_the_installed_cli_runs_outside_the_repository(installed):
    python, mixsig, env, work, _ = installed
    out = _run([mixsig, "--version"], cwd=work, env=env)
    assert out.stdout.strip().startswith("mixsig ") and "unknown" not in out.stdout
    for name in ("xor.yaml", "smoke_hw.yaml"):
        shutil.copy(ROOT / "experiments" / name, work / name)
    shown = _run([mixsig, "config", "show", "smoke_hw.yaml"], cwd=work, env=env).stdout
    assert "hardware.preset                      = 'pcm'" in shown, shown
    assert "hardware.overrides.device.prog_sigma = 3.0" in shown, shown
    out = _run([mixsig, "verify", "xor.yaml", "-n", "8"], cwd=work, env=env)
    assert "meets the 0.999 target" in out.stdout, out.stdout
    # the hardware smoke: the block programmed onto a simulated PCM chip (analog.hardware)
    out = _run([mixsig, "verify", "xor.yaml", "-n", "8", "--hardware", "pcm"], cwd=work, env=env)
    assert "chip: preset pcm" in out.stdout and "meets the 0.999 target" in out.stdout, out.stdout
    assert not (work / "mlflow.db").exists()     # nothing here records a run
